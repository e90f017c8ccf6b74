"""Speed of the batched convergence runners on a basin map, side by side in one process.

``python -m suite.studies.convergence_speed --threads 1 --grid 200 --steps 2000`` runs
``convergence.run`` on an n x n grid of Himmelblau starts (Adam, lr 0.01) with

- ``numba``: the vectorised runner (``_convergence_numba.run_blocks``, blocks of starts in SIMD
  lanes, threads over blocks),
- ``numba-per-start``: the runner it replaced (``run_batch``, one start at a time, threads over
  starts), same results,
- ``torch``: the reference rule on torch tensors, step by step on the (N, 2) batch,
- ``torch-batched``: ``torch.optim.Adam`` on one (N, 2) parameter (the ``torch-batched`` mode of
  a user's optimizer),

each pinned to the same thread count (Numba and torch, :func:`suite.sweep.set_threads`),
interleaved, best of ``repeats``, after one untimed run each that also checks the results
(the two Numba runners equal in every column; torch's final values after 50 steps within
1e-9 relative of ours). Prints
seconds, ns per point-step and each time relative to ``torch-batched`` and ``torch``. Numba may
use at most ``NUMBA_NUM_THREADS`` threads: set it in the environment to measure more than one.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

IMPLS = ("numba", "numba-per-start", "torch", "torch-batched")


@contextlib.contextmanager
def per_start_runner() -> Iterator[None]:
    """Within the block, ``convergence.run`` (numba backend) runs the per-start runner."""
    from suite.studies import _convergence_numba as K

    blocks = K.run_blocks

    def per_start(*args: Any) -> None:
        K.run_batch(*args[:-1])  # all but the block size

    K.run_blocks = per_start
    try:
        yield
    finally:
        K.run_blocks = blocks


def basin_map_call(impl: str, grid: int = 200, steps: int = 2000, lr: float = 0.01,
                   problem: str = "himmelblau", optimizer: str = "adam"):
    """A no-argument callable running one basin map with ``impl`` (one of :data:`IMPLS`)."""
    import torch

    from suite import problems
    from suite.studies import convergence as C

    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}; expected one of {IMPLS}")
    p = problems.get(problem)
    g = C.grid_starts(p, grid)
    if impl == "torch-batched":
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
               "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}[optimizer]
        return lambda: C.run(p, cls, g, steps, lr=lr)
    if impl == "numba-per-start":
        def run() -> pd.DataFrame:
            with per_start_runner():
                return C.run(p, optimizer, g, steps, backend="numba", lr=lr)
        return run
    return lambda: C.run(p, optimizer, g, steps, backend=impl, lr=lr)


def measure(threads: int = 1, grid: int = 200, steps: int = 2000, repeats: int = 3,
            impls: tuple[str, ...] = IMPLS, **kw: Any) -> pd.DataFrame:
    """One row per implementation: best time of ``repeats`` interleaved runs and ratios."""
    from suite.sweep import set_threads

    got = set_threads(threads)
    calls = {impl: basin_map_call(impl, grid, steps, **kw) for impl in impls}
    frames = {impl: fn() for impl, fn in calls.items()}  # compiles; results checked below
    if "numba" in frames and "numba-per-start" in frames:
        pd.testing.assert_frame_equal(frames["numba"], frames["numba-per-start"],
                                      check_exact=True)
    # torch against ours over a short horizon: over thousands of steps, rounding differences
    # (torch's own pow, sqrt and foreach kernels) grow where Adam oscillates about a minimum
    short = {impl: basin_map_call(impl, grid, 50, **kw)() for impl in impls}
    for impl in ("torch", "torch-batched"):
        if "numba" in short and impl in short:
            np.testing.assert_allclose(short[impl]["final_value"], short["numba"]["final_value"],
                                       rtol=1e-9, atol=1e-12)
    best = dict.fromkeys(calls, np.inf)
    for _ in range(repeats):
        for impl, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[impl] = min(best[impl], time.perf_counter() - t0)
    rows = []
    for impl, sec in best.items():
        row = {"impl": impl, "seconds": sec, "ns_per_point_step": sec / (grid * grid * steps)
               * 1e9, "grid": grid, "steps": steps, **got}
        for ref in ("torch-batched", "torch"):
            if ref in best:
                row[f"speedup_vs_{ref}"] = best[ref] / sec
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    df = measure(a.threads, a.grid, a.steps, a.repeats)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
