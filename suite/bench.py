"""The roofline: how close each optimizer step runs to the machine's streaming bandwidth.

``roofline(size, threads)`` measures, in one process and one run:

1. the STREAM triad ``a = b + s·c`` (compiled with Numba, the same thread count). STREAM counts
   3 arrays x itemsize bytes per element; but ``a`` is only written, so the cache first reads
   each of its lines (write-allocate) and the memory actually moves 4 arrays. The roofline
   uses the bytes actually moved (``triad_GB_per_s``) and also reports STREAM's figure
   (``triad_stream_GB_per_s``). As a cross-check it measures an in-place update ``a = a + s·b``
   (``update_GB_per_s``: 3 arrays, no write-allocate since every written line was read), which
   is the access pattern of an optimizer step; the two agree to within a few per cent here.
2. for each optimizer, a step of one large tensor (``size`` elements, far beyond the caches) by
   each implementation: ours (``numba``, ``numpy``, ``torch`` backend) and torch.optim's
   ``forloop``, ``foreach`` and (where it exists) ``fused``.

For each it reports the bytes a step must move (every parameter, gradient and state array read
once, and parameter and state written once; in-place, so no write-allocate traffic), the
achieved GB/s, the fraction of the triad bandwidth, the speedup over torch's fastest CPU
implementation of the same step, and the peak memory a step allocates beyond what exists before
it, in units of the parameter's size (``temporaries``: 0 for a fused loop, 1 per full-size
temporary array; measured from the kernel's peak-RSS counter after the timings, see
:func:`peak_extra_bytes`). Timings are medians of ``repeats`` after a warm-up; the thread counts
are set and recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from suite import optim
from suite.sweep import set_threads, thread_counts

#: arrays read and written per element by one step (beyond p and g), by configuration
BENCH_HYPER: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 1e-3, "momentum": 0.9},
    "adagrad": {"lr": 1e-2},
    "rmsprop": {"lr": 1e-3},
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3},
}


def bytes_per_element(name: str, hyper: dict[str, Any], itemsize: int) -> int:
    """Reads: p, g and every state array; writes: p and every state array."""
    spec = optim.get_spec(name)
    n_state = len([s for s in spec.state_names(spec.resolve(**hyper)) if s != "step"])
    return (2 + n_state + 1 + n_state) * itemsize


@njit(parallel=True, cache=True)
def _triad(a, b, c, s):  # pragma: no cover - compiled
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, cache=True)
def _update(a, b, s):  # pragma: no cover - compiled
    for i in prange(a.size):
        a[i] = a[i] + s * b[i]


def _median_time(fn: Callable[[], Any], repeats: int, min_time: float = 0.02) -> float:
    return float(np.median(_time_samples(fn, repeats, min_time)))


def _time_samples(fn: Callable[[], Any], repeats: int, min_time: float = 0.02) -> list[float]:
    """Seconds per call, one sample per repeat (each of at least ``min_time``)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, int(min_time / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def triad_bandwidth(size: int, dtype: str = "float32", repeats: int = 7) -> dict[str, float]:
    """Bytes per second of the triad and of the in-place update (see the module docstring).

    Keys: ``triad`` (4 arrays moved: b, c read, a write-allocated and written), ``triad_stream``
    (STREAM's convention, 3 arrays), ``update`` (a read and written, b read: 3 arrays).
    """
    a, b, c = (np.ones(size, dtype=dtype) for _ in range(3))
    s = np.dtype(dtype).type(1.0001)
    t_triad = _median_time(lambda: _triad(a, b, c, s), repeats)
    t_update = _median_time(lambda: _update(a, b, np.dtype(dtype).type(1e-30)), repeats)
    nbytes = a.itemsize * size
    return {"triad": 4 * nbytes / t_triad, "triad_stream": 3 * nbytes / t_triad,
            "update": 3 * nbytes / t_update}


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def peak_extra_bytes(fn: Callable[[], Any]) -> float:
    """Peak resident memory ``fn()`` adds beyond what is resident before it (bytes; NaN where
    Linux's counters are unavailable).

    Resets the kernel's peak-RSS mark (``/proc/self/clear_refs``, "5"), runs ``fn`` and reads
    ``VmHWM - VmRSS(before)``. This sees every allocator (NumPy's, torch's, Numba's), because
    glibc is first told to serve every block of 64 KiB or more with a fresh ``mmap`` (fixed
    ``M_MMAP_THRESHOLD``): otherwise a temporary freed by an earlier step is recycled from the
    heap without touching new pages and would go unseen. That setting stays for the rest of
    the process (glibc offers no way back), so call this after any timing.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 16)

        def status(key: str) -> int:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
            raise OSError(key)

        fn()  # state created lazily on a first step is not a temporary
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS:")
        fn()
        return float(status("VmHWM:") - before)
    except OSError:
        return float("nan")


def _step_fns(name: str, size: int, dtype: str) -> dict[str, Callable[[], Any]]:
    import torch

    hyper = BENCH_HYPER[name]
    rng = np.random.default_rng(0)
    fns: dict[str, Callable[[], Any]] = {}
    for backend in ("numba", "numpy"):
        rule = optim.get(name, backend=backend, **hyper)
        p = [rng.standard_normal(size).astype(dtype)]
        g = [(rng.standard_normal(size) * 1e-3).astype(dtype)]
        st = rule.init(p)
        rule.step(p, g, st)
        fns[backend] = lambda rule=rule, p=p, g=g, st=st: rule.step(p, g, st)
    rule = optim.get(name, backend="torch", **hyper)
    tp = [torch.randn(size, dtype=getattr(torch, dtype))]
    tg = [torch.randn(size, dtype=getattr(torch, dtype)) * 1e-3]
    tst = rule.init(tp)
    rule.step(tp, tg, tst)
    fns["torch-backend"] = lambda: rule.step(tp, tg, tst)
    spec = optim.get_spec(name)
    for impl in spec.torch_impls():
        param = torch.nn.Parameter(torch.randn(size, dtype=getattr(torch, dtype)))
        param.grad = torch.randn(size, dtype=getattr(torch, dtype)) * 1e-3
        opt = spec.torch_optimizer([param], impl, **hyper)
        opt.step()
        fns[f"torch.optim-{impl}"] = opt.step
    return fns


def roofline(size: int = 1 << 23, threads: int = 1, dtype: str = "float32",
             optimizers: Sequence[str] = tuple(BENCH_HYPER), repeats: int = 7,
             progress: bool = False) -> pd.DataFrame:
    """The roofline table (see the module docstring); ``threads`` for torch and Numba."""
    got = set_threads(threads)
    bw = triad_bandwidth(size, dtype, repeats)
    rows = []
    it: Any = optimizers
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(optimizers, desc="roofline", unit="optimizer")
    itemsize = np.dtype(dtype).itemsize
    steps = {}
    for name in it:
        nbytes = bytes_per_element(name, BENCH_HYPER[name], itemsize) * size
        fns = _step_fns(name, size, dtype)
        steps[name] = fns
        samples = {impl: _time_samples(fn, repeats) for impl, fn in fns.items()}
        times = {impl: float(np.median(v)) for impl, v in samples.items()}
        best_torch = min(t for k, t in times.items() if k.startswith("torch.optim"))
        for impl, t in times.items():
            rows.append({"optimizer": name, "implementation": impl, "dtype": dtype,
                         "size": size, "seconds": t, "seconds_min": min(samples[impl]),
                         "seconds_max": max(samples[impl]), "bytes": nbytes,
                         "GB_per_s": nbytes / t / 1e9, "triad_GB_per_s": bw["triad"] / 1e9,
                         "triad_stream_GB_per_s": bw["triad_stream"] / 1e9,
                         "update_GB_per_s": bw["update"] / 1e9,
                         "fraction_of_triad": nbytes / t / bw["triad"],
                         "speedup_vs_best_torch": best_torch / t, **got})
    after = thread_counts()
    if any(after.get(k) != v for k, v in got.items()):
        raise RuntimeError(f"thread counts changed during the measurement: set {got}, "
                           f"now {after}; the timings are not for {threads} thread(s)")
    frame = pd.DataFrame(rows)
    # memory last: peak_extra_bytes changes the allocator's policy for the rest of the process
    frame["temporaries"] = [peak_extra_bytes(steps[r.optimizer][r.implementation])
                            / (size * itemsize) for r in frame.itertuples()]
    return frame
