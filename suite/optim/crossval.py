"""Cross-validation of gradsuite's rules against torch.optim, step by step -> tidy frame.

For each configuration of :mod:`suite.optim.configs`, each probe and each dtype, torch.optim's
for-loop, foreach and (where torch has one) fused implementations are run once, each of our
backends is run once, and every (backend, implementation) pair is compared on every parameter and
state entry at every step (:func:`suite.trajectory.compare`).

Tolerances (the error measure is defined in :mod:`suite.trajectory`):

- float64: 1e-12. A faithful implementation in torch's order of operations measures a few ulps
  (<= ~5e-15 over 200 steps), so this leaves a wide margin for round-off while any formula
  difference (eps placement, bias correction, decay coupling) is orders of magnitude above it.
- float32: 2e-4 over 200 steps. Our float32 kernels round differently from torch's (the Numba
  kernels keep float64 intermediates, torch rounds every operation to float32); the measured
  worst case is reported by ``gradsuite check-references`` and quoted in the README.

Frame schema (one row per optimizer x config x probe x dtype x backend x torch_impl):
``optimizer, config, source, probe, dtype, backend, torch_impl, steps, max_error_param,
max_error_state, worst_quantity, first_bad_step, tol, passed, error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from suite.backends import BACKENDS
from suite.optim import get
from suite.optim.configs import CONFIGS, Config
from suite.optim.spec import OPTIMIZERS
from suite.probes import PROBES
from suite.sweep import run_cells
from suite.trajectory import Trajectory, compare, replay, run_rule, run_torch

TOLERANCE = {"float64": 1e-12, "float32": 2e-4}
DEFAULT_PROBES = ("scaled", "model")


def _torch_factory(config: Config, impl: str) -> Any:
    spec = OPTIMIZERS[config.optimizer]
    flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True},
             "fused": {"fused": True}}[impl]

    def make(params: Any, **hyper: Any) -> Any:
        return spec.torch_class()(params, **hyper, **flags)

    return make


def crossval_cell(config: Config, probe: str, dtype: str = "float64", steps: int = 200,
                  backends: Sequence[str] = BACKENDS, impls: Sequence[str] | None = None
                  ) -> list[dict[str, Any]]:
    """All comparisons for one configuration, probe and dtype, as frame rows."""
    spec = OPTIMIZERS[config.optimizer]
    pr = PROBES[probe]
    impls = spec.torch_impls() if impls is None else impls
    hyper = spec.resolve(**config.hyper)
    ours_hyper = dict(config.hyper)
    if config.tensor_lr:  # torch then uses the float32-rounded learning rate
        import torch

        ours_hyper["lr"] = float(torch.tensor(hyper["lr"]))
    torch_runs: dict[str, Trajectory] = {}
    if "model" in pr.tags:  # feed every run the gradients the for-loop fp64 run saw
        first = run_torch(_torch_factory(config, "forloop"), hyper, pr, steps, "float64",
                          tensor_lr=config.tensor_lr)
        pr = replay(pr, first)
        if dtype == "float64":
            torch_runs["forloop"] = first
    for impl in impls:
        if impl not in torch_runs:
            torch_runs[impl] = run_torch(_torch_factory(config, impl), hyper, pr, steps, dtype,
                                         tensor_lr=config.tensor_lr)
    rows: list[dict[str, Any]] = []
    for backend in backends:
        rule = get(config.optimizer, backend=backend, **ours_hyper)
        ours = run_rule(rule, pr, steps, dtype)
        for impl, ref in torch_runs.items():
            rows.append(_row(config, probe, dtype, backend, impl, steps, ours, ref))
    return rows


def _row(config: Config, probe: str, dtype: str, backend: str, impl: str, steps: int,
         ours: Trajectory, ref: Trajectory) -> dict[str, Any]:
    tol = TOLERANCE[dtype]
    error = ours.error or ref.error
    results = compare(ours, ref, tol, require_state=True) if error is None else []
    params = [r.max_error for r in results if r.quantity.startswith("param[")]
    states = [r.max_error for r in results if not r.quantity.startswith("param[")]
    worst = max(results, key=lambda r: r.max_error, default=None)
    bad = [r.first_bad_step for r in results if r.first_bad_step is not None]
    return {
        "optimizer": config.optimizer, "config": config.id, "source": config.source,
        "probe": probe, "dtype": dtype, "backend": backend, "torch_impl": impl,
        "steps": steps,
        "max_error_param": max(params, default=np.nan),
        "max_error_state": max(states, default=np.nan),
        "worst_quantity": worst.quantity if worst else "",
        "first_bad_step": min(bad) if bad else None,
        "tol": tol,
        "passed": error is None and not bad,
        "error": error or "",
    }


def _cell(args: tuple[Config, str, str, int, tuple[str, ...]]) -> list[dict[str, Any]]:
    config, probe, dtype, steps, backends = args
    return crossval_cell(config, probe, dtype, steps, backends)


def run_table(configs: Iterable[Config] = CONFIGS, probes: Sequence[str] = DEFAULT_PROBES,
              dtypes: Sequence[str] = ("float64", "float32"), steps: int = 200,
              backends: Sequence[str] = BACKENDS, jobs: int = 1, dask: str | None = None,
              progress: bool = False) -> pd.DataFrame:
    """The agreement table for ``configs`` x ``probes`` x ``dtypes`` x backends x torch impls."""
    cells = [(c, p, d, steps, tuple(backends)) for c in configs for p in probes for d in dtypes]
    rows = run_cells(_cell, cells, jobs=jobs, dask=dask,
                     progress="cross-validation" if progress else None)
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Worst errors per optimizer x dtype x backend x torch impl, with counts."""
    g = frame.groupby(["optimizer", "dtype", "backend", "torch_impl"], sort=False)
    return g.agg(configs=("config", "nunique"), cells=("passed", "size"),
                 failed=("passed", lambda s: int((~s).sum())),
                 max_error_param=("max_error_param", "max"),
                 max_error_state=("max_error_state", "max")).reset_index()
