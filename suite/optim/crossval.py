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

Two comparisons. ``free``: our rule and torch each run the whole trajectory on their own; if
that agrees within the tolerance the cell passes. Where it does not, the cell is judged in
``lockstep``: at every step our rule starts from torch's parameters and state and must
reproduce torch's next step within the tolerance. Some configurations are chaotic: in torch
itself, perturbing the initial parameters by one ulp changes RMSprop(alpha=0.3, momentum=0.5,
weight_decay=0.1) by 100 % after 200 steps, so free-running trajectories of two faithful
implementations that round differently cannot agree to 1e-12 there. The free-running error is
kept in ``free_run_error``. Steps after the reference overflows are not compared
(``compared_steps``).

Where torch's own implementations disagree with one another, a foreach (or fused) cell that
fails the free comparison is judged by the ``spread`` mode: per quantity, our error against
that implementation may exceed the error of torch's own for-loop against it by at most the
tolerance (``torch_spread`` is the for-loop's error). The one case in the table: torch's
foreach ASGD computes ``eta = lr / (1 + lambd·lr·t)^alpha`` with the float32 ``step`` tensor in
the arithmetic (float32 operations), its for-loop in double precision from ``step.item()``; the
two ``eta`` differ by ~1.5e-7 relative in float64 runs. Our rules follow the for-loop.

Frame schema (one row per optimizer x config x probe x dtype x backend x torch_impl):
``optimizer, config, source, probe, dtype, backend, torch_impl, steps, compared_steps, mode,
max_error_param, max_error_state, worst_quantity, first_bad_step, tol, condition, passed, error,
free_run_error, torch_spread``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from suite.backends import BACKENDS
from suite.optim import get
from suite.optim.configs import CONFIGS, Config
from suite.optim.spec import OPTIMIZERS
from suite.probes import PROBES
from suite.sweep import run_cells
from suite.trajectory import (
    Trajectory,
    compare,
    finite_horizon,
    replay,
    run_rule,
    run_rule_lockstep,
    run_torch,
)

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
            row = _row(config, probe, dtype, backend, impl, steps, ours, ref, "free")
            if not row["passed"] and not row["error"] and impl != "forloop" \
                    and "forloop" in torch_runs:
                # torch's implementations disagree with one another: judge against the spread
                spread = _row(config, probe, dtype, backend, impl, steps, ours, ref, "spread",
                              spread=torch_runs["forloop"])
                if spread["passed"]:
                    row = spread
            if not row["passed"] and not row["error"]:
                # chaotic dynamics amplify round-off: judge the rule by its one-step error
                free_error = max(row["max_error_param"], row["max_error_state"])
                row = _row(config, probe, dtype, backend, impl, steps,
                           run_rule_lockstep(rule, ref, dtype), ref, "lockstep",
                           condition=centred_condition(ref))
                row["free_run_error"] = free_error
            rows.append(row)
    return rows


def _row(config: Config, probe: str, dtype: str, backend: str, impl: str, steps: int,
         ours: Trajectory, ref: Trajectory, mode: str,
         condition: np.ndarray | None = None, spread: Trajectory | None = None
         ) -> dict[str, Any]:
    tol = TOLERANCE[dtype]
    tols = tol if condition is None else tol * condition
    error = ours.error or ref.error
    results = compare(ours, ref, tols, require_state=True) if error is None else []
    torch_spread = np.nan
    if spread is not None and error is None:
        # per quantity: our error may exceed torch's own for-loop's error by at most tol
        theirs = {r.quantity: r.max_error for r in compare(spread, ref, np.inf)}
        torch_spread = max(theirs.values(), default=0.0)
        results = [replace(r, first_bad_step=None)
                   if r.max_error <= theirs.get(r.quantity, 0.0) + tol else r for r in results]
    params = [r.max_error for r in results if r.quantity.startswith("param[")]
    states = [r.max_error for r in results if not r.quantity.startswith("param[")]
    worst = max(results, key=lambda r: r.max_error, default=None)
    bad = [r.first_bad_step for r in results if r.first_bad_step is not None]
    return {
        "optimizer": config.optimizer, "config": config.id, "source": config.source,
        "probe": probe, "dtype": dtype, "backend": backend, "torch_impl": impl,
        "steps": steps, "compared_steps": min(steps, finite_horizon(ref)), "mode": mode,
        "max_error_param": max(params, default=np.nan),
        "max_error_state": max(states, default=np.nan),
        "worst_quantity": worst.quantity if worst else "",
        "first_bad_step": min(bad) if bad else None,
        "tol": tol,
        "condition": 1.0 if condition is None else float(np.max(condition)),
        "passed": error is None and not bad,
        "error": error or "",
        "free_run_error": max(params + states, default=np.nan) if mode == "free" else np.nan,
        "torch_spread": torch_spread,
    }


def _cell(args: tuple[Config, str, str, int, tuple[str, ...]]) -> list[dict[str, Any]]:
    config, probe, dtype, steps, backends = args
    return crossval_cell(config, probe, dtype, steps, backends)


def centred_condition(ref: Trajectory) -> np.ndarray:
    """Per step, the conditioning of centred RMSprop's variance, max_i v_i / (v_i - ḡ_i²).

    ``sqrt(v - ḡ²)`` cancels when the gradient is nearly constant: an error of one ulp in v or
    ḡ becomes a relative error of κ ulps in the denominator. In lockstep mode the tolerance of
    a step is multiplied by this κ (at least 1), the factor by which the maths itself magnifies
    round-off; it is 1 for every other rule. The largest κ is reported in ``condition``.
    """
    kappa = np.ones(ref.steps + 1)
    for q, v in ref.values.items():
        if not q.startswith("square_avg["):
            continue
        ga = ref.values.get(q.replace("square_avg", "grad_avg"))
        if ga is None:
            continue
        with np.errstate(all="ignore"):
            k = np.abs(v) / np.abs(v - ga * ga)
        k = np.where(np.isfinite(k), k, 1.0).reshape(k.shape[0], -1).max(axis=1, initial=1.0)
        # the step into t is computed from the state at t - 1 and t: use the larger
        kappa = np.maximum(kappa, np.maximum(k, np.concatenate([[1.0], k[:-1]])))
    return kappa


def run_table(configs: Iterable[Config] = CONFIGS, probes: Sequence[str] = DEFAULT_PROBES,
              dtypes: Sequence[str] = ("float64", "float32"), steps: int = 200,
              backends: Sequence[str] = BACKENDS, jobs: int = 1, dask: str | None = None,
              progress: bool = False, checkpoint: Any = None) -> pd.DataFrame:
    """The agreement table for ``configs`` x ``probes`` x ``dtypes`` x backends x torch impls."""
    cells = [(c, p, d, steps, tuple(backends)) for c in configs for p in probes for d in dtypes]
    rows = run_cells(_cell, cells, jobs=jobs, dask=dask,
                     progress="cross-validation" if progress else None, checkpoint=checkpoint)
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Worst errors per optimizer x dtype x backend x torch impl, with counts."""
    g = frame.groupby(["optimizer", "dtype", "backend", "torch_impl"], sort=False)
    return g.agg(configs=("config", "nunique"), cells=("passed", "size"),
                 failed=("passed", lambda s: int((~s).sum())),
                 max_error_param=("max_error_param", "max"),
                 max_error_state=("max_error_state", "max")).reset_index()
