"""Shared test settings: one thread per pool, and benchmarks run once unless asked for."""

import pytest
import torch

torch.set_num_threads(1)

_ASKED = ("benchmark_only", "benchmark_enable", "benchmark_skip", "benchmark_json",
          "benchmark_save", "benchmark_autosave", "benchmark_compare")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    if hasattr(opt, "benchmark_disable") and not any(getattr(opt, a, None) for a in _ASKED):
        opt.benchmark_disable = True  # plain `pytest`: each benchmark body runs once, as a test
