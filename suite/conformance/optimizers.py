"""Check any optimizer with torch.optim's interface against gradsuite's reference rules.

>>> from suite.conformance import check_optimizer
>>> result = check_optimizer(MyAdam, reference="adam")   # class, factory, 'module:Class', subject
>>> result.passed, result.state, result.frame            # update rule; state_dict; one row a cell
>>> print(result)                                        # verdict, diagnosis, explanation

What is run
-----------
For each hyperparameter configuration (by default :data:`CONFIGS`, chosen so that each common
mistake changes the result by orders of magnitude more than round-off) and each probe of
:mod:`suite.probes` (per-coordinate gradient scales from 1e-8 to 1e3, gradients decaying over
10 decades and growing back, exact zeros and sign flips, and real gradients of a small network),
the NumPy reference runs in float64 and the optimizer under test runs in each requested dtype
for ``steps`` steps on the same gradients. Parameters, and every state entry the optimizer
exposes under torch.optim's names (``exp_avg``, ``square_avg``, ...), are compared at every step
with the running-magnitude relative error of :mod:`suite.trajectory`.

Optimizers as users bring them
------------------------------
The optimizer's signature is read (and, behind ``**kwargs``, construction is tried) to learn
which of the reference's hyperparameters it accepts; ``rename`` maps the reference's names to
the optimizer's (``{"momentum": "beta"}``). A hyperparameter is passed only if the optimizer
accepts it; one it lacks is left out while the configuration wants its default value, and a
configuration that needs a non-default value of a missing option is *not applicable*: not run,
listed in ``result.not_applicable`` with the reason, ``applicable=False`` in the frame. A name
that ``**kwargs`` swallows without keeping it in ``param_groups`` counts as missing (it would be
silently ignored).

Two verdicts
------------
``result.passed``: the parameters agree in every applicable cell (the update rule is the same).
``result.state``: ``"compatible"`` (every state entry exposed under torch.optim's names holds
torch's quantity), ``"different"`` (a name matches but the meaning does not; the entries are
named, with the relation where it is a known one: a constant factor, a factor per step such as
a bias correction, a square root, a narrower dtype), or ``"not exposed"``. With
``strict_state=True`` a state that is not compatible also fails ``passed``.

Explanations
------------
When a cell's parameters disagree, every variant of the reference in the catalogue
(:mod:`suite.optim.variants`) is run on the same cell, and those that reproduce the optimizer's
parameters within the cell's tolerance are named in the frame's ``explained_by`` column and in
``str(result)``. ``lr_scaled``'s factor is fitted on the first step and reported. Variants that
keep state in a narrower dtype are matched within that dtype's tolerance and must be closer to
the optimizer than the reference is.

Tolerances
----------
Derived from the dtype's unit round-off u and the number of steps T, and calibrated on
torch.optim itself: ``tol = max(base, 10 · e_torch)``, where e_torch is the error of
torch.optim's own for-loop implementation against the float64 reference on the same cell and
dtype (cached), and base is 50·u·T for float64 and float32 (1.1e-12 and 6.0e-4 at T = 200: a
faithful implementation accumulates a few ulps per step) and 8·u for bfloat16 and float16,
where 50·u·T exceeds 1 and the calibration on torch.optim decides. A cell in which torch.optim's
own run does not stay finite where the reference does (float16 overflows), or in which the
tolerance would reach 1 (an error of 100 % passing), is not applicable: nothing can be checked
there in that dtype.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from suite import optim
from suite.optim import variants as catalogue
from suite.probes import PROBES
from suite.subjects import OptimizerSubject, load_object, resolve  # noqa: F401 - re-exported
from suite.trajectory import (
    Trajectory,
    compare,
    element_errors,
    finite_horizon,
    replay,
    run_rule,
    run_torch,
)

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
LOW_PRECISION = ("float16", "bfloat16")
DEFAULT_PROBES = ("scaled", "decay", "sparse", "model")
STATES = ("compatible", "different", "not exposed")

#: Conformance configurations per reference: defaults, then non-default values and the
#: combinations where mistakes hide (each chosen so that torch.optim's trajectories are not
#: chaotic, so that free-running comparisons are meaningful). A reference without an entry
#: gets :func:`generic_configs`; adding one is one entry here.
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


def generic_configs(reference: str) -> list[dict[str, Any]]:
    """Configurations for a reference without an entry in :data:`CONFIGS`: the defaults, then
    each boolean option switched on and a weight decay, where the reference accepts them."""
    spec = optim.get_spec(reference)
    out: list[dict[str, Any]] = [{}]
    for key, default in spec.defaults.items():
        if isinstance(default, bool):
            out.append({key: not default})
    if "weight_decay" in spec.defaults:
        out.append({"weight_decay": 0.1})
    valid = []
    for c in out:
        try:
            spec.resolve(**c)
        except (TypeError, ValueError):
            continue
        valid.append(c)
    return valid


def subnormal_floor(dtype: str) -> float:
    """Magnitudes below tiny/u have lost relative precision to subnormals in ``dtype``."""
    tiny = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14,
            "bfloat16": 2.0**-126}[dtype]
    return tiny / UNIT_ROUNDOFF[dtype]


def tolerance(dtype: str, steps: int) -> float:
    """The base tolerance: 50·u·steps (float64, float32), 8·u (bfloat16, float16)."""
    if dtype not in UNIT_ROUNDOFF:
        raise ValueError(f"unsupported dtype {dtype!r}; expected one of "
                         f"{', '.join(UNIT_ROUNDOFF)}")
    if dtype in LOW_PRECISION:
        return 8.0 * UNIT_ROUNDOFF[dtype]
    return 50.0 * UNIT_ROUNDOFF[dtype] * max(steps, 1)


def format_pair(reference: float, got: float) -> tuple[str, str]:
    """Both values with the fewest significant digits (at least 6) that tell them apart."""
    for digits in range(6, 18):
        a, b = f"{reference:.{digits}g}", f"{got:.{digits}g}"
        if a != b:
            return a, b
    return f"{reference!r}", f"{got!r}"


@dataclass(frozen=True)
class Failure:
    """Where a configuration first goes wrong: the step, the element and its values.

    ``error`` is the error of that element at that step (the step's largest), so the values
    shown are the ones the error was measured on.
    """

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
    explained_by: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.message and self.reference_value is None:
            return f"{self.config} [{self.probe}, {self.dtype}]: {self.message}"
        where = f"{self.quantity}{list(self.index) if self.index else ''}"
        vals = ""
        if self.reference_value is not None and self.got_value is not None:
            r, g = format_pair(self.reference_value, self.got_value)
            diff = abs(self.got_value - self.reference_value)
            vals = f": reference {r}, got {g} (|diff| {diff:.3g}, "
        else:
            vals = " ("
        return (f"{self.config} [{self.probe}, {self.dtype}]: {where} first differs at step "
                f"{self.step}{vals}error {self.error:.3g} > tol {self.tol:.2g})")


@dataclass(frozen=True)
class NotApplicable:
    """A configuration that was not run, and why."""

    config: str
    hyper: dict[str, Any]
    missing: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{self.config}: {self.reason}"


@dataclass
class ConformanceResult:
    """The verdicts of :func:`check_optimizer`.

    ``frame`` has one row per configuration x probe x dtype: ``config, probe, dtype, steps,
    applicable, reason, tol, torch_error, hp_*`` (the reference's hyperparameters), ``passed``
    (parameters agree; None where not applicable), ``state_agrees``, ``max_error_param``,
    ``max_error_state``, ``first_bad_step``, ``quantity``, ``compared_steps``,
    ``state_compared``, ``state_differs`` (entries), ``error`` (an exception), ``explained_by``
    (comma-separated variant names), ``lr_factor`` (fitted, where ``lr_scaled`` explains).
    """

    reference: str
    optimizer: str
    frame: pd.DataFrame
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_applicable: list[NotApplicable] = field(default_factory=list)
    state: str = "not exposed"
    state_differences: list[str] = field(default_factory=list)
    strict_state: bool = False

    @property
    def applicable(self) -> pd.DataFrame:
        return self.frame[self.frame["applicable"]] if len(self.frame) else self.frame

    @property
    def params_agree(self) -> bool:
        """Parameters agree in every applicable cell (and at least one cell was run)."""
        app = self.applicable
        return bool(len(app)) and bool(app["passed"].astype(bool).all())

    @property
    def passed(self) -> bool:
        ok = self.params_agree
        if self.strict_state:
            ok = ok and self.state == "compatible"
        return ok

    def __bool__(self) -> bool:
        return self.passed

    def explained(self) -> dict[str, list[str]]:
        """Variant names -> the failing cells (config [probe, dtype]) each one explains."""
        out: dict[str, list[str]] = {}
        for f in self.failures:
            for name in f.explained_by:
                out.setdefault(name.split(" (")[0], []).append(
                    f"{f.config} [{f.probe}, {f.dtype}]")
        return out

    def __str__(self) -> str:
        app = self.applicable
        n = len(app)
        agree = int(app["passed"].astype(bool).sum()) if n else 0
        n_na = len(self.not_applicable)
        if n:
            counts = f"{agree}/{n} applicable cells agree"
            if n_na:
                counts += f"; {n_na} configuration{'s' if n_na > 1 else ''} not applicable"
        else:
            counts = "nothing checked: no configuration is applicable"
        head = (f"{self.optimizer} vs reference {self.reference!r}: "
                f"{'PASS' if self.passed else 'FAIL'} ({counts}); state: {self.state}"
                + (" (strict)" if self.strict_state else ""))
        lines = [head, *self.notes]
        lines.extend(f"  not applicable: {na}" for na in self.not_applicable)
        lines.extend(f"  state: {diff}" for diff in self.state_differences)
        by_config: dict[str, list[Failure]] = {}
        for f in self.failures:
            by_config.setdefault(f.config, []).append(f)
        for cfg, fails in by_config.items():
            first = min(fails, key=lambda f: (f.step is None, f.step or 0))
            lines.append(f"  - {first}")
            if len(fails) > 1:
                lines.append(f"    ({len(fails) - 1} more failing probe/dtype cells for {cfg})")
            common = _common_explanations(fails)
            if common:
                lines.append(f"    consistent with: {'; '.join(common)}")
            elif any(f.explained_by for f in fails):
                some = sorted({e.split(" (")[0] for f in fails for e in f.explained_by})
                lines.append(f"    consistent in some cells with: {', '.join(some)}")
            elif not first.message or first.reference_value is not None:
                lines.append("    no catalogued variant reproduces it")
        return "\n".join(lines)


def _common_explanations(fails: list[Failure]) -> list[str]:
    """Variants (with their labels) that explain every failure of a configuration; a pair
    ``a + b`` is left out where ``a`` alone explains them all."""
    names = [{e.split(" (")[0]: e for e in f.explained_by} for f in fails]
    if not names or any(not n for n in names):
        return []
    common = set(names[0]).intersection(*names[1:])
    common = {k for k in common if " + " not in k or k.split(" + ")[0] not in common}
    return [names[0][k] for k in names[0] if k in common]


def _cfg_id(reference: str, hyper: Mapping[str, Any]) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in hyper.items())
    return f"{reference}({inner})"


# ---- what the optimizer accepts -----------------------------------------------------------


def accepted_hyperparameters(subject: OptimizerSubject, names: Mapping[str, Any]
                             ) -> dict[str, str]:
    """For each reference hyperparameter (torch.optim's name -> default value): ``accepted``,
    ``not accepted`` (not in the signature, or construction raises TypeError), or ``ignored``
    (``**kwargs`` takes it but it is not kept in ``defaults``/``param_groups``)."""
    try:
        params = dict(inspect.signature(subject.factory).parameters)
    except (TypeError, ValueError):
        params = None
    named = {} if params is None else {
        k: p for k, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = params is None or any(p.kind is p.VAR_KEYWORD for p in params.values())
    out: dict[str, str] = {}
    for key, default in names.items():
        name = subject.rename.get(key, key)
        if name in named or name in subject.hyper:
            out[key] = "accepted"
        elif not var_kw:
            out[key] = "not accepted"
        else:
            out[key] = _try_construction(subject, name, default)
    return out


def _try_construction(subject: OptimizerSubject, name: str, value: Any) -> str:
    import torch

    p = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    try:
        opt = subject.factory(p, **{**subject.hyper, name: value})
    except TypeError:
        return "not accepted"
    except Exception:  # noqa: BLE001 - any other error: the name was understood
        return "accepted"
    groups = getattr(opt, "param_groups", None)
    if isinstance(groups, list) and groups and isinstance(groups[0], dict):
        kept = name in groups[0] or name in (getattr(opt, "defaults", None) or {})
        return "accepted" if kept else "ignored"
    return "accepted"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) or isinstance(b, tuple | list):
        return tuple(a) == tuple(b)
    return bool(a == b)


# ---- the check ------------------------------------------------------------------------------


def check_optimizer(optimizer: Any, reference: str | None = None,
                    configs: Iterable[Mapping[str, Any]] | None = None, steps: int = 200,
                    dtypes: Sequence[str] = ("float64", "float32"),
                    probes: Sequence[str] = DEFAULT_PROBES, device: str = "cpu",
                    extra_kwargs: Mapping[str, Any] | None = None,
                    rename: Mapping[str, str] | None = None, strict_state: bool = False,
                    explain: bool = True) -> ConformanceResult:
    """Verdicts on whether ``optimizer`` computes the same updates as ``reference``.

    ``optimizer``: anything :func:`suite.subjects.resolve` accepts — a torch.optim.Optimizer
    subclass, a factory ``(params, **hyper)``, an import path ``'module:Class'`` or an
    :class:`~suite.subjects.OptimizerSubject` (whose ``reference`` is used when ``reference``
    is None). ``configs`` replaces the default configurations (torch.optim's names; omitted
    hyperparameters take the reference's defaults). ``extra_kwargs`` are fixed arguments passed
    to the optimizer only (``foreach=False``); ``rename`` maps the reference's hyperparameter
    names to the optimizer's (``{"momentum": "beta"}``). ``strict_state``: the state must be
    ``"compatible"`` for ``passed``. ``explain``: run the catalogue of variants on failing
    cells. Raises ValueError for bad arguments (unknown reference, dtype, probe, configuration
    key, steps < 1).
    """
    subject = resolve(optimizer, reference=reference, **dict(extra_kwargs or {}))
    if rename:
        subject = replace(subject, rename={**subject.rename, **dict(rename)})
    ref_name = reference if reference is not None else subject.reference
    if ref_name is None:
        raise ValueError("reference= is required: the gradsuite rule to compare with "
                         f"(one of {', '.join(optim.OPTIMIZERS)})")
    spec = optim.get_spec(ref_name)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    if not dtypes:
        raise ValueError("dtypes is empty: nothing to check")
    for d in dtypes:
        tolerance(d, steps)
    if isinstance(probes, str):
        probes = (probes,)
    if not probes:
        raise ValueError("probes is empty: nothing to check")
    for p in probes:
        if p not in PROBES:
            raise ValueError(f"unknown probe {p!r}; expected some of {', '.join(PROBES)}")
    unknown = sorted(set(subject.rename) - set(spec.defaults))
    if unknown:
        raise ValueError(f"rename maps {', '.join(map(repr, unknown))}, which {spec.name} does "
                         f"not have; its hyperparameters: {', '.join(spec.defaults)}")
    base = CONFIGS.get(spec.name) or generic_configs(spec.name)
    cfgs = [dict(c) for c in (base if configs is None else configs)]
    if not cfgs:
        raise ValueError("configs is empty: nothing to check")
    fulls = []
    for i, hyper in enumerate(cfgs):
        try:
            fulls.append(spec.resolve(**hyper))  # the reference validates, and fills defaults
        except (TypeError, ValueError) as exc:
            raise ValueError(f"configs[{i}] = {hyper!r}: {exc}") from None

    status = accepted_hyperparameters(subject, spec.defaults)
    notes: list[str] = []
    ignored = [k for k, s in status.items() if s == "ignored"]
    if ignored:
        notes.append(f"  note: {', '.join(ignored)} accepted through **kwargs but not kept in "
                     "param_groups (treated as unsupported)")
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    not_applicable: list[NotApplicable] = []
    # (entry, config, kind, description, whether the cell's parameters agree)
    state_rows: list[tuple[str, str, str, str, bool]] = []
    exposed_any = False
    name = subject.name

    for hyper, full in zip(cfgs, fulls, strict=True):
        cid = _cfg_id(spec.name, hyper)
        missing = tuple(k for k, v in full.items()
                        if status[k] != "accepted" and not _same(v, spec.defaults[k]))
        hp_cols = {f"hp_{k}": str(v) for k, v in full.items()}
        if missing:
            what = ", ".join(f"{k}={full[k]}" for k in missing)
            lacks = ", ".join(repr(subject.rename.get(k, k)) for k in missing)
            reason = f"needs {what}; {name} does not accept {lacks}"
            not_applicable.append(NotApplicable(cid, full, missing, reason))
            rows.extend({"config": cid, "probe": probe_name, "dtype": dtype, "steps": steps,
                         "applicable": False, "reason": reason, **hp_cols, "passed": None}
                        for probe_name in probes for dtype in dtypes)
            continue
        kwargs = {k: v for k, v in full.items() if status[k] == "accepted"}

        def factory(params: Any, _kw: dict[str, Any] = kwargs) -> Any:
            return subject.make(params, **_kw)

        items = tuple(sorted(full.items()))
        for probe_name in probes:
            probe = PROBES[probe_name]
            ref = _reference(spec.name, items, probe_name, steps)
            if "model" in probe.tags:
                probe = replay(probe, ref)
            for dtype in dtypes:
                row: dict[str, Any] = {"config": cid, "probe": probe_name, "dtype": dtype,
                                       "steps": steps, "applicable": True, "reason": "",
                                       **hp_cols}
                torch_err = _torch_noise(spec.name, items, probe_name, steps, dtype, device)
                if not np.isfinite(torch_err):
                    reason = (f"torch.optim's own {dtype} run does not stay finite where the "
                              "float64 reference does")
                    rows.append({**row, "applicable": False, "reason": reason,
                                 "torch_error": torch_err, "passed": None})
                    continue
                tol = max(tolerance(dtype, steps), 10.0 * torch_err)
                if tol >= 1.0:
                    reason = (f"torch.optim's own {dtype} error here is {torch_err:.2g}; a "
                              "tolerance of 10 times that checks nothing")
                    rows.append({**row, "applicable": False, "reason": reason, "tol": tol,
                                 "torch_error": torch_err, "passed": None})
                    continue
                row.update({"tol": tol, "torch_error": torch_err})
                got = run_torch(factory, {}, probe, steps, dtype, device)
                if got.error is not None:
                    msg = (f"raised at step {got.error_step}: {got.error}" if got.error_step
                           else got.error)
                    failures.append(Failure(cid, full, probe_name, dtype, got.error_step,
                                            "", np.inf, tol, message=msg))
                    rows.append({**row, "passed": False, "state_agrees": None, "error": msg,
                                 "explained_by": ""})
                    continue
                floor = subnormal_floor(dtype)
                results = compare(got, ref, tol, require_state=False, floor=floor,
                                  skip_initial_state=True)
                params = [r for r in results if r.quantity.startswith("param[")]
                state = [r for r in results if not r.quantity.startswith("param[")
                         and r.note != "state not exposed"]
                arrays = [r for r in state if not r.quantity.startswith("step[")]
                exposed_any = exposed_any or bool(arrays)
                bad_p = [r for r in params if r.first_bad_step is not None]
                bad_s = [r for r in state if r.first_bad_step is not None]
                first = min(bad_p, key=lambda r: r.first_bad_step) if bad_p else None
                row.update({
                    "passed": not bad_p, "state_agrees": not bad_s if state else None,
                    "max_error_param": max((r.max_error for r in params), default=np.nan),
                    "max_error_state": max((r.max_error for r in arrays), default=np.nan),
                    "first_bad_step": first.first_bad_step if first else None,
                    "quantity": first.quantity if first else "",
                    "compared_steps": min(steps, finite_horizon(ref)),
                    "state_compared": len(arrays),
                    "state_differs": ", ".join(sorted({_entry(r.quantity) for r in bad_s})),
                    "error": "", "explained_by": "", "lr_factor": np.nan})
                for r in bad_s:
                    kind, desc = _state_relation(got, ref, r, tol, floor, dtype, full,
                                                 params_agree=not bad_p)
                    state_rows.append((_entry(r.quantity), cid, kind, desc, not bad_p))
                if first is not None:
                    step = int(first.first_bad_step)
                    rv, gv, idx, err = _worst_element(got, ref, first.quantity, step, floor)
                    explained: tuple[str, ...] = ()
                    if explain:
                        explained, factor = _explain(spec.name, items, probe_name, steps, dtype,
                                                     device, got, ref, tol, floor)
                        row["explained_by"] = ", ".join(e.split(" (")[0] for e in explained)
                        row["lr_factor"] = factor
                    failures.append(Failure(cid, full, probe_name, dtype, step, first.quantity,
                                            err, tol, rv, gv, idx, first.note, explained))
                rows.append(row)

    frame = pd.DataFrame(rows)
    app = frame[frame["applicable"]] if len(frame) else frame
    ran = app[app["state_agrees"].notna()] if "state_agrees" in app else app.iloc[0:0]
    judged = ran[ran["passed"].astype(bool)]   # the state means something where params agree
    if len(judged):
        ran = judged
        state_rows = [r for r in state_rows if r[4] or r[2] == "dtype"]
    if not exposed_any:
        state_verdict = "not exposed"
        if len(app):
            notes.append("  note: the optimizer exposes no state under torch.optim's names; "
                         "only parameters were compared")
    elif len(ran) and ran["state_agrees"].astype(bool).all() and not state_rows:
        state_verdict = "compatible"
    else:
        state_verdict = "different"
    differences = _summarise_state([r[:4] for r in state_rows])
    result = ConformanceResult(spec.name, name, frame, failures, notes, not_applicable,
                               state_verdict, differences, strict_state)
    if not len(app):
        result.notes.append("  nothing was checked: no configuration is applicable to "
                            f"{name} (see the reasons below)")
    return result


def _entry(quantity: str) -> str:
    return quantity.split("[")[0]


def _worst_element(test: Trajectory, ref: Trajectory, quantity: str, step: int, floor: float
                   ) -> tuple[float | None, float | None, tuple[int, ...], float]:
    """The element with the largest error at ``step``: reference value, value, index, error."""
    if quantity not in test.values or quantity not in ref.values:
        return None, None, (), np.inf
    tv, rv = test.values[quantity][: step + 1], ref.values[quantity][: step + 1]
    err = element_errors(tv, rv, floor)[step]
    flat = int(np.argmax(np.ravel(err))) if np.ndim(err) else 0
    shape = np.shape(rv[step])
    idx = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
    return (float(np.ravel(rv[step])[flat]), float(np.ravel(tv[step])[flat]), idx,
            float(np.ravel(err)[flat]))


# ---- explanations ---------------------------------------------------------------------------


def _explain(name: str, items: tuple[tuple[str, Any], ...], probe: str, steps: int,
             dtype: str, device: str, got: Trajectory, ref: Trajectory, tol: float,
             floor: float) -> tuple[tuple[str, ...], float]:
    """Catalogued variants that reproduce ``got``'s parameters (labels), and the fitted lr
    factor (NaN unless ``lr_scaled`` explains)."""
    hyper = dict(items)
    pnames = [q for q in ref.values if q.startswith("param[")]
    ref_err: list[float] = []   # computed once, when a narrow-state variant needs it
    out: list[str] = []
    factor = np.nan
    for v in catalogue.variants_for(name):
        if not v.changes(name, hyper):
            continue
        c = 1.0
        vtol = tol
        seen: set[str] = set()
        if v.state_dtype is not None:
            if np.dtype(_np_dtype(v.state_dtype)).itemsize >= np.dtype(
                    _np_dtype(dtype)).itemsize:
                continue  # the run's own dtype is no wider than the variant's state
            seen = {d for q, d in got.dtypes.items() if not q.startswith("param[")}
            if seen and seen != {v.state_dtype}:
                continue  # the state is exposed, in another dtype
            # exposed in this dtype: observed, and the trajectory must agree within its
            # tolerance (roundings of a narrow state differ with the order of operations)
            vtol = max(tol, tolerance(v.state_dtype, steps),
                       10.0 * _torch_noise(name, items, probe, steps, v.state_dtype, device))
        if v.fitted == "lr_factor":
            fit = catalogue.fit_lr_factor([got.values[q] for q in pnames],
                                          [ref.values[q] for q in pnames])
            if fit is None or abs(fit - 1.0) <= tol:
                continue
            c = float(fit)
        vt = _variant(name, items, probe, steps, v.name, c)
        res = compare(got, vt, vtol, require_state=False, floor=floor, skip_initial_state=True)
        if any(r.first_bad_step is not None for r in res if r.quantity.startswith("param[")):
            continue
        if v.state_dtype is not None and not seen:
            # state not exposed: the variant must at least come closer than the rule
            ref_err = ref_err or [_param_error(got, ref, floor)]
            if not _param_error(got, vt, floor) < ref_err[0]:
                continue
        out.append(v.label(c if v.fitted else None))
        if v.fitted == "lr_factor":
            factor = c
    # two changes at once: a counter convention with one formula change (tried with every
    # formula change if none explains alone, else with those that do, so that a summary over
    # probes with and without missing gradients can name the pair that fits them all)
    singles = {e.split(" (")[0] for e in out}
    counters = [v for v in catalogue.variants_for(name)
                if v.counter != "param" and v.changes(name, hyper)]
    for cv in counters:
        for v in catalogue.variants_for(name):
            if v is cv or v.counter != "param" or v.fitted or v.state_dtype \
                    or not v.changes(name, hyper) or (singles and v.name not in singles):
                continue
            vt = _variant(name, items, probe, steps, f"{v.name}+{cv.name}", 1.0)
            res = compare(got, vt, tol, require_state=False, floor=floor,
                          skip_initial_state=True)
            if all(r.first_bad_step is None for r in res if r.quantity.startswith("param[")):
                out.append(f"{v.name} + {cv.name} ({v.description}; {cv.description})")
    return tuple(out), factor


def _np_dtype(dtype: str) -> str:
    return "float16" if dtype == "bfloat16" else dtype


def _param_error(test: Trajectory, ref: Trajectory, floor: float) -> float:
    res = compare(test, ref, np.inf, require_state=False, floor=floor, skip_initial_state=True)
    return max((r.max_error for r in res if r.quantity.startswith("param[")), default=0.0)


@functools.lru_cache(maxsize=512)
def _variant(name: str, items: tuple[tuple[str, Any], ...], probe: str, steps: int,
             variant: str, factor: float) -> Trajectory:
    """A variant's float64 trajectory on the reference's gradients (cached)."""
    ref = _reference(name, items, probe, steps)
    pr = replay(PROBES[probe], ref) if "model" in PROBES[probe].tags else PROBES[probe]
    rule = catalogue.variant_rule(name, variant, factor, **dict(items))
    return run_rule(rule, pr, steps, "float64", record_state=False)


# ---- state relations ------------------------------------------------------------------------


def _state_relation(got: Trajectory, ref: Trajectory, r: Any, tol: float, floor: float,
                    dtype: str, hyper: Mapping[str, Any], params_agree: bool
                    ) -> tuple[str, str]:
    """What a differing state entry holds relative to torch's: (kind, description)."""
    q = r.quantity
    entry = _entry(q)
    if q.startswith("step["):
        return "counter", "the step counter differs from torch.optim's"
    if r.note:
        return "presence", f"{r.note}"
    stored = got.dtypes.get(q)
    if stored and stored != dtype and np.dtype(_np_dtype(stored)).itemsize < np.dtype(
            _np_dtype(dtype)).itemsize:
        return "dtype", f"kept in {stored} (parameters in {dtype})"
    if not params_agree:
        return "with parameters", "differs along with the parameters"
    a, b = got.values[q], ref.values[q]
    both = got.present[q] & ref.present[q]
    both[0] = False
    ts = np.flatnonzero(both)
    if not ts.size:
        return "other", "differs"
    aa = a[ts].reshape(len(ts), -1)
    bb = b[ts].reshape(len(ts), -1)
    with np.errstate(all="ignore"):
        den = np.einsum("ij,ij->i", bb, bb)
        c = np.where(den > 0, np.einsum("ij,ij->i", aa, bb) / den, np.nan)
        fits = bool(np.isfinite(c).any())
        if fits:
            scaled = np.where(np.isfinite(c)[:, None], c[:, None] * bb, bb)
            fits = bool(element_errors(aa, scaled, floor).max(initial=0.0) <= tol)
        if fits:
            cs = c[np.isfinite(c)]
            if np.all(np.abs(cs - cs[0]) <= tol * np.abs(cs[0]) * 10):
                return "factor", f"{_fmt(cs[0])} x torch.optim's at every step (a constant factor)"
            t = ts[np.isfinite(c)].astype(float)
            for hname, beta in _betas(hyper):
                for form, expect in ((f"divided by 1 - {hname}^t (bias-corrected)",
                                      1.0 / (1.0 - beta**t)),
                                     (f"times 1 - {hname}^t", 1.0 - beta**t)):
                    if np.all(np.abs(cs - expect) <= tol * np.abs(expect) * 10):
                        return "factor per step", f"torch.optim's {form}"
            return "factor per step", (f"a factor per step times torch.optim's "
                                       f"({_fmt(cs[0])} at step {int(t[0])}, {_fmt(cs[-1])} at "
                                       f"step {int(t[-1])})")
        for form, fb in (("the square root of", np.sqrt(np.abs(bb))), ("the square of", bb * bb)):
            if element_errors(aa, fb, floor).max(initial=0.0) <= tol:
                return "transform", f"{form} torch.optim's"
    return "other", f"differs from torch.optim's {entry} (first at step {r.first_bad_step})"


def _betas(hyper: Mapping[str, Any]) -> list[tuple[str, float]]:
    out = []
    if "betas" in hyper:
        out += [("beta1", float(hyper["betas"][0])), ("beta2", float(hyper["betas"][1]))]
    for k in ("alpha", "momentum"):
        if k in hyper and 0 < float(hyper[k]) < 1:
            out.append((k, float(hyper[k])))
    return out


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _summarise_state(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """One line per differing entry: its relation to torch's, per configuration if it varies."""
    out = []
    entries: dict[str, list[tuple[str, str, str]]] = {}
    for entry, cid, kind, desc in rows:
        entries.setdefault(entry, []).append((cid, kind, desc))
    along = [e for e, items in entries.items()
             if all(k == "with parameters" for _, k, _ in items)]
    if along:
        out.append(f"{', '.join(along)} differ{'s' if len(along) == 1 else ''} along with the "
                   "parameters")
    for entry, items in entries.items():
        if entry in along:
            continue
        informative = [(c, d) for c, k, d in items if k != "with parameters"] or \
            [(c, d) for c, _, d in items]
        descs: dict[str, list[str]] = {}
        for cid, desc in informative:
            descs.setdefault(desc, [])
            if cid not in descs[desc]:
                descs[desc].append(cid)
        if len(descs) == 1:
            out.append(f"{entry}: {next(iter(descs))}")
        else:  # the relation depends on the configuration (a factor 1/(1 - beta1), say)
            (d0, c0), (d1, c1) = list(descs.items())[:2]
            more = f" (and {len(descs) - 2} other relations)" if len(descs) > 2 else ""
            out.append(f"{entry}: {d0} in {c0[0]}; {d1} in {c1[0]}{more}")
    return out


# ---- references and calibration (cached) ----------------------------------------------------


@functools.lru_cache(maxsize=512)
def _reference(name: str, items: tuple[tuple[str, Any], ...], probe: str, steps: int
               ) -> Trajectory:
    """The float64 NumPy reference trajectory (cached: it depends on nothing else)."""
    rule = optim.get(name, backend="numpy", **dict(items))
    return run_rule(rule, PROBES[probe], steps, "float64")


@functools.lru_cache(maxsize=1024)
def _torch_noise(name: str, items: tuple[tuple[str, Any], ...], probe: str, steps: int,
                 dtype: str, device: str) -> float:
    """How far torch.optim's own for-loop implementation is from the reference on this cell
    (parameters and state; inf if its run leaves the finite range where the reference stays)."""
    spec = optim.get_spec(name)
    hyper = dict(items)
    ref = _reference(name, items, probe, steps)
    pr = replay(PROBES[probe], ref) if "model" in PROBES[probe].tags else PROBES[probe]
    got = run_torch(lambda p: spec.torch_class()(p, foreach=False, **hyper), {}, pr, steps,
                    dtype, device)
    res = compare(got, ref, np.inf, require_state=False, floor=subnormal_floor(dtype),
                  skip_initial_state=True)
    if dtype in LOW_PRECISION:
        errs = [r.max_error for r in res if not np.isnan(r.max_error)]
        return float(max(errs, default=0.0))
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
