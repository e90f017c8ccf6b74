"""The roofline: how close each optimizer step runs to the machine's streaming bandwidth.

``roofline(size, threads)`` measures, in one process and one run:

1. the STREAM triad ``a = b + s·c`` (compiled with Numba, the same thread count), counting
   3 arrays x itemsize bytes per element, as STREAM does;
2. for each optimizer, a step of one large tensor (``size`` elements, far beyond the caches) by
   each implementation: ours (``numba``, ``numpy``, ``torch`` backend) and torch.optim's
   ``forloop``, ``foreach`` and (where it exists) ``fused``.

For each it reports the bytes a step must move (every parameter, gradient and state array read
once, and parameter and state written once), the achieved GB/s, the fraction of the triad
bandwidth, and the speedup over torch's fastest CPU implementation of the same step.
Timings are medians of ``repeats`` after a warm-up; the thread counts are set and recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from suite import optim
from suite.sweep import set_threads

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


def _median_time(fn: Callable[[], Any], repeats: int, min_time: float = 0.02) -> float:
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
    return float(np.median(samples))


def triad_bandwidth(size: int, dtype: str = "float32", repeats: int = 7) -> float:
    """Bytes per second of the triad (3 · itemsize bytes per element)."""
    a, b, c = (np.ones(size, dtype=dtype) for _ in range(3))
    s = np.dtype(dtype).type(1.0001)
    t = _median_time(lambda: _triad(a, b, c, s), repeats)
    return 3 * a.itemsize * size / t


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
    for name in it:
        nbytes = bytes_per_element(name, BENCH_HYPER[name], itemsize) * size
        times = {impl: _median_time(fn, repeats) for impl, fn in _step_fns(name, size,
                                                                            dtype).items()}
        best_torch = min(t for k, t in times.items() if k.startswith("torch.optim"))
        for impl, t in times.items():
            rows.append({"optimizer": name, "implementation": impl, "dtype": dtype,
                         "size": size, "seconds": t, "bytes": nbytes,
                         "GB_per_s": nbytes / t / 1e9, "triad_GB_per_s": bw / 1e9,
                         "fraction_of_triad": nbytes / t / bw,
                         "speedup_vs_best_torch": best_torch / t, **got})
    return pd.DataFrame(rows)
