"""Check any optimizer with torch.optim's interface against gradsuite's reference rules.

>>> from suite.conformance import check_optimizer
>>> result = check_optimizer(MyAdam, reference="adam")   # a class, or (params, **hyper) -> opt
>>> result.passed, result.frame                          # bool, one row per config x probe x dtype
>>> print(result)                                        # verdict with a diagnosis per failure

How it decides
--------------
For each hyperparameter configuration (by default :data:`CONFIGS`, chosen so that each common
mistake changes the result by orders of magnitude more than round-off) and each probe of
:mod:`suite.probes` (per-coordinate gradient scales from 1e-8 to 1e3, gradients decaying over
10 decades and growing back, exact zeros and sign flips, and real gradients of a small network),
the NumPy reference runs in float64 and the optimizer under test runs in each requested dtype
for ``steps`` steps on the same gradients. Parameters, and every state entry the optimizer
exposes under torch.optim's names (``exp_avg``, ``square_avg``, ...), are compared at every step
with the running-magnitude relative error of :mod:`suite.trajectory`.

Tolerances are derived from the dtype's unit round-off u and the number of steps T, and
calibrated on torch.optim itself: ``tol = max(50 · u · T, 10 · e_torch)``, where e_torch is the
error of torch.optim's own for-loop implementation against the reference on the same cell and
dtype (cached). 50·u·T is 1.1e-12 for float64 and 6.0e-4 for float32 at T = 200: a faithful
implementation accumulates a few ulps per step. The calibration matters where the maths
magnifies round-off: near a stationary point with weight decay, g + λp cancels, and in float32
RMSprop turns that cancellation into parameter errors of ~1e-3 in torch.optim as well. The
mistakes listed in the tests produce errors of 1e-6 to 1 within the first steps. float32 runs
are compared with the float64 reference; both ``tol`` and ``torch_error`` are in the frame.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from suite import optim
from suite.probes import PROBES
from suite.subjects import load_object  # noqa: F401 - re-exported
from suite.trajectory import Trajectory, compare, finite_horizon, replay, run_rule, run_torch

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
DEFAULT_PROBES = ("scaled", "decay", "sparse", "model")

#: Conformance configurations per reference: defaults, then non-default values and the
#: combinations where mistakes hide (each chosen so that torch.optim's trajectories are not
#: chaotic, so that free-running comparisons are meaningful).
CONFIGS: dict[str, list[dict[str, Any]]] = {
    "sgd": [
        {"lr": 0.01},
        {"lr": 0.01, "momentum": 0.9},
        {"lr": 0.01, "momentum": 0.9, "dampening": 0.5},
        {"lr": 0.01, "momentum": 0.9, "nesterov": True},
        {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.1, "nesterov": True, "maximize": True},
        {"lr": 0.01, "weight_decay": 0.2},
        {"lr": 0.01, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05},
    ],
    "adagrad": [
        {},
        {"lr": 0.1, "lr_decay": 0.05},
        {"lr": 0.1, "initial_accumulator_value": 0.5},
        {"lr": 0.05, "eps": 1e-3},
        {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.1,
         "maximize": True},
    ],
    "rmsprop": [
        {"lr": 1e-3},
        {"lr": 1e-3, "alpha": 0.9, "eps": 1e-3},
        {"lr": 1e-3, "centered": True},
        {"lr": 1e-3, "momentum": 0.9},
        {"lr": 1e-3, "alpha": 0.95, "momentum": 0.5, "centered": True, "maximize": True},
        {"lr": 1e-3, "weight_decay": 0.01},
    ],
    "adam": [
        {},
        {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6},
        {"lr": 1e-3, "amsgrad": True},
        {"lr": 1e-3, "weight_decay": 0.1},
        {"lr": 1e-3, "maximize": True},
        {"lr": 1e-3, "amsgrad": True, "weight_decay": 0.05, "eps": 1e-4, "maximize": True},
    ],
}
CONFIGS["adamw"] = [dict(c) for c in CONFIGS["adam"]] + [{"lr": 0.01, "weight_decay": 0.5}]

# NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD, Adafactor: defaults, then the options where their
# classic mistakes show (the momentum-decay schedule, the rectification switch, eps placement,
# lr, the sign rule, the averaging start inside the run, factored and clipped updates).
CONFIGS.update({
    "nadam": [
        {},
        {"lr": 0.01, "momentum_decay": 0.0},
        {"lr": 0.01, "momentum_decay": 0.05, "betas": (0.8, 0.99)},
        {"lr": 2e-3, "weight_decay": 0.1},
        {"lr": 2e-3, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
    ],
    "radam": [
        {},
        {"lr": 0.01, "betas": (0.9, 0.99)},
        {"lr": 1e-3, "betas": (0.8, 0.6)},  # rho_inf = 4: never rectified
        {"lr": 1e-3, "weight_decay": 0.1},
        {"lr": 1e-3, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
    ],
    "adamax": [
        {},
        {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-3},
        {"lr": 2e-3, "weight_decay": 0.1, "maximize": True},
    ],
    "adadelta": [
        {},
        {"lr": 0.1, "rho": 0.5},
        {"lr": 0.5, "eps": 1e-3, "weight_decay": 0.1, "maximize": True},
    ],
    "rprop": [
        {"lr": 1e-3},
        {"lr": 1e-3, "etas": (0.3, 1.5), "step_sizes": (1e-5, 0.01)},
        {"lr": 1e-3, "maximize": True},
    ],
    "asgd": [
        {},
        {"lr": 0.01, "t0": 20.0, "lambd": 0.01},
        {"lr": 0.01, "t0": 0.0, "alpha": 1.0, "weight_decay": 0.1, "maximize": True},
    ],
    "adafactor": [
        {},
        {"lr": 0.02, "beta2_decay": -0.5, "eps": (1e-6, 1e-2)},
        {"lr": 0.01, "d": 5.0, "weight_decay": 0.1, "maximize": True},
    ],
})


def subnormal_floor(dtype: str) -> float:
    """Magnitudes below tiny/u have lost relative precision to subnormals in ``dtype``."""
    tiny = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14,
            "bfloat16": 2.0**-126}[dtype]
    return tiny / UNIT_ROUNDOFF[dtype]


def tolerance(dtype: str, steps: int) -> float:
    """50 · u · steps: a few ulps per step of accumulated round-off, with headroom."""
    if dtype not in UNIT_ROUNDOFF:
        raise ValueError(f"unsupported dtype {dtype!r}; expected one of "
                         f"{', '.join(UNIT_ROUNDOFF)}")
    return 50.0 * UNIT_ROUNDOFF[dtype] * max(steps, 1)


@dataclass(frozen=True)
class Failure:
    """Where a configuration first goes wrong."""

    config: str
    hyper: dict[str, Any]
    probe: str
    dtype: str
    step: int | None
    quantity: str
    error: float
    tol: float
    reference_value: float | None = None
    got_value: float | None = None
    index: tuple[int, ...] = ()
    message: str = ""

    def __str__(self) -> str:
        if self.message:
            return f"{self.config} [{self.probe}, {self.dtype}]: {self.message}"
        where = f"{self.quantity}{list(self.index) if self.index else ''}"
        vals = ""
        if self.reference_value is not None:
            vals = f"; reference {self.reference_value:.6g}, got {self.got_value:.6g}"
        return (f"{self.config} [{self.probe}, {self.dtype}]: {where} first differs at step "
                f"{self.step} (error {self.error:.3g} > tol {self.tol:.2g}{vals})")


@dataclass
class ConformanceResult:
    reference: str
    optimizer: str
    frame: pd.DataFrame
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(len(self.frame)) and not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        n = len(self.frame)
        head = (f"{self.optimizer} vs reference {self.reference!r}: "
                f"{'PASS' if self.passed else 'FAIL'} "
                f"({n - int((~self.frame['passed']).sum()) if n else 0}/{n} cells agree)")
        lines = [head, *self.notes]
        by_config: dict[str, list[Failure]] = {}
        for f in self.failures:
            by_config.setdefault(f.config, []).append(f)
        for cfg, fails in by_config.items():
            first = min(fails, key=lambda f: (f.step is None, f.step or 0))
            lines.append(f"  - {first}")
            if len(fails) > 1:
                lines.append(f"    ({len(fails) - 1} more failing probe/dtype cells for {cfg})")
        return "\n".join(lines)


def _name(optimizer: Any) -> str:
    return getattr(optimizer, "__qualname__", None) or type(optimizer).__name__


def _cfg_id(reference: str, hyper: Mapping[str, Any]) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in hyper.items())
    return f"{reference}({inner})"


def _first_values(test: Trajectory, ref: Trajectory, quantity: str, step: int
                  ) -> tuple[float | None, float | None, tuple[int, ...]]:
    if quantity not in test.values or quantity not in ref.values:
        return None, None, ()
    a, r = test.values[quantity][step], ref.values[quantity][step]
    diff = np.abs(np.atleast_1d(a - r))
    diff = np.where(np.isnan(diff), np.inf, diff)
    flat = int(np.argmax(diff))
    idx = np.unravel_index(flat, np.shape(r)) if np.ndim(r) else ()
    return float(np.atleast_1d(r).ravel()[flat]), float(np.atleast_1d(a).ravel()[flat]), \
        tuple(int(i) for i in idx)


def check_optimizer(optimizer: Callable[..., Any], reference: str,
                    configs: Iterable[Mapping[str, Any]] | None = None, steps: int = 200,
                    dtypes: Sequence[str] = ("float64", "float32"),
                    probes: Sequence[str] = DEFAULT_PROBES, device: str = "cpu",
                    extra_kwargs: Mapping[str, Any] | None = None) -> ConformanceResult:
    """Verdict on whether ``optimizer`` computes the same updates as ``reference``.

    ``optimizer`` is a torch.optim.Optimizer subclass or any factory ``(params, **hyper)``
    returning an object with ``step()`` (and, optionally, torch.optim's ``state``).
    ``configs`` replaces the default configurations (hyperparameters by torch.optim's names;
    omitted ones take the reference's defaults, which are passed explicitly);
    ``extra_kwargs`` are passed to the optimizer only (e.g. ``foreach=False``).
    """
    spec = optim.get_spec(reference)
    if not callable(optimizer):
        raise TypeError(f"optimizer must be a class or factory, got {type(optimizer).__name__}")
    for d in dtypes:
        tolerance(d, steps)
    for p in probes:
        if p not in PROBES:
            raise ValueError(f"unknown probe {p!r}; expected some of {', '.join(PROBES)}")
    cfgs = [dict(c) for c in (CONFIGS[spec.name] if configs is None else configs)]
    if not cfgs:
        raise ValueError("configs is empty: nothing to check")
    extra = dict(extra_kwargs or {})
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    notes: list[str] = []
    exposed_any = False
    for hyper in cfgs:
        full = spec.resolve(**hyper)  # the reference validates, and fills defaults
        cid = _cfg_id(spec.name, hyper)

        def factory(params: Any, _full: dict[str, Any] = full) -> Any:
            return optimizer(params, **_full, **extra)

        for probe_name in probes:
            probe = PROBES[probe_name]
            ref = _reference(spec.name, tuple(sorted(full.items())), probe_name, steps)
            if "model" in probe.tags:
                probe = replay(probe, ref)
            for dtype in dtypes:
                torch_err = _torch_noise(spec.name, tuple(sorted(full.items())), probe_name,
                                         steps, dtype, device)
                tol = max(tolerance(dtype, steps), 10.0 * torch_err)
                got = run_torch(factory, {}, probe, steps, dtype, device)
                row: dict[str, Any] = {"config": cid, "probe": probe_name, "dtype": dtype,
                                       "steps": steps, "tol": tol, "torch_error": torch_err, **{f"hp_{k}": str(v)
                                                                      for k, v in full.items()}}
                if got.error is not None:
                    msg = (f"raised at step {got.error_step}: {got.error}" if got.error_step
                           else got.error)
                    failures.append(Failure(cid, full, probe_name, dtype, got.error_step,
                                            "", np.inf, tol, message=msg))
                    rows.append({**row, "passed": False, "error": msg})
                    continue
                results = compare(got, ref, tol, require_state=False,
                                  floor=subnormal_floor(dtype), skip_initial_state=True)
                exposed = [r for r in results if not r.quantity.startswith(("param[", "step["))
                           and r.note != "state not exposed"]
                exposed_any = exposed_any or bool(exposed)
                bad = [r for r in results if r.first_bad_step is not None]
                worst_p = max((r.max_error for r in results if r.quantity.startswith("param[")),
                              default=np.nan)
                worst_s = max((r.max_error for r in exposed), default=np.nan)
                first = min(bad, key=lambda r: (r.first_bad_step, not r.quantity.startswith(
                    "param["))) if bad else None
                row.update({"passed": not bad, "max_error_param": worst_p,
                            "max_error_state": worst_s,
                            "first_bad_step": first.first_bad_step if first else None,
                            "quantity": first.quantity if first else "",
                            "compared_steps": min(steps, finite_horizon(ref)),
                            "state_compared": len(exposed), "error": ""})
                rows.append(row)
                if first is not None:
                    rv, gv, idx = _first_values(got, ref, first.quantity, first.first_bad_step)
                    failures.append(Failure(
                        cid, full, probe_name, dtype, first.first_bad_step, first.quantity,
                        first.max_error, tol, rv, gv, idx, first.note))
    if not exposed_any:
        notes.append("  note: the optimizer exposes no state under torch.optim's names; only "
                     "parameters were compared")
    frame = pd.DataFrame(rows)
    return ConformanceResult(spec.name, _name(optimizer), frame, failures, notes)


@functools.lru_cache(maxsize=512)
def _reference(name: str, items: tuple[tuple[str, Any], ...], probe: str, steps: int
               ) -> Trajectory:
    """The float64 NumPy reference trajectory (cached: it depends on nothing else)."""
    rule = optim.get(name, backend="numpy", **dict(items))
    return run_rule(rule, PROBES[probe], steps, "float64")


@functools.lru_cache(maxsize=1024)
def _torch_noise(name: str, items: tuple[tuple[str, Any], ...], probe: str, steps: int,
                 dtype: str, device: str) -> float:
    """How far torch.optim's own for-loop implementation is from the reference on this cell."""
    spec = optim.get_spec(name)
    hyper = dict(items)
    ref = _reference(name, items, probe, steps)
    pr = replay(PROBES[probe], ref) if "model" in PROBES[probe].tags else PROBES[probe]
    got = run_torch(lambda p: spec.torch_class()(p, foreach=False, **hyper), {}, pr, steps,
                    dtype, device)
    res = compare(got, ref, np.inf, require_state=False, floor=subnormal_floor(dtype),
                  skip_initial_state=True)
    errs = [r.max_error for r in res if np.isfinite(r.max_error)]
    return float(max(errs, default=0.0))


def signature_supports(optimizer: Any, names: Iterable[str]) -> bool:
    """Whether ``optimizer`` accepts every keyword in ``names`` (or **kwargs)."""
    try:
        params = inspect.signature(optimizer).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(n in params for n in names)
