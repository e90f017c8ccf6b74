"""Shared test settings: one thread per pool, progress bars safe to fork, and benchmarks run
once unless asked for."""

import threading

import pytest
import torch
import tqdm

torch.set_num_threads(1)

# mutmut forks one child per mutant from a process that has run the tests once. tqdm's
# defaults make that hang: its monitor thread can hold tqdm's lock at the fork (the child then
# waits on a lock no thread of its own will release), and its lock includes a multiprocessing
# lock shared with every later child (one child killed while holding it blocks all the
# others). Measured: every activations.accuracy.table mutant after the first hung until
# mutmut's wall-clock timeout and was counted as killed. No monitor thread, and a lock of this
# process only (tqdm's documented `monitor_interval` and `set_lock`).
tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())

_ASKED = ("benchmark_only", "benchmark_enable", "benchmark_skip", "benchmark_json",
          "benchmark_save", "benchmark_autosave", "benchmark_compare")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    if hasattr(opt, "benchmark_disable") and not any(getattr(opt, a, None) for a in _ASKED):
        opt.benchmark_disable = True  # plain `pytest`: each benchmark body runs once, as a test
