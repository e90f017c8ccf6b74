"""Run an optimizer over a probe, record every parameter and state entry at every step, compare.

Two recorders produce the same :class:`Trajectory`: :func:`run_rule` for gradsuite's own rules
(any backend) and :func:`run_torch` for anything with torch.optim's interface (a
``torch.optim.Optimizer`` subclass, or a factory ``(params, **hyper) -> optimizer``). The
comparison is the same whichever side is the reference.

The error measure
-----------------
For a quantity ``x`` (a parameter or a state entry) with reference values ``r_t`` and tested
values ``a_t`` at steps t = 0..T, the error at step t is, elementwise,

    e_t = |a_t - r_t| / max_{s <= t} |r_s|

the difference relative to the largest magnitude that element has had so far. Round-off is
relative to the operands' magnitudes, which this running maximum bounds, so ``e_t`` stays at a few
ulps for a faithful implementation even where a quantity crosses zero (momentum, a centred mean,
a parameter passing through 0), where a plain relative error would blow up; and unlike a normwise
error it is per element, so a wrong update of a coordinate with gradients of 1e-8 is not hidden
by coordinates with gradients of 1e3. NaN against NaN counts as agreement; NaN against a number,
or a difference where the reference has always been 0, is an infinite error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from suite.probes import Probe

TORCH_DTYPES = {"float32": "float32", "float64": "float64", "float16": "float16",
                "bfloat16": "bfloat16"}


@dataclass
class Trajectory:
    """Values of every quantity after every step (index 0 = before the first step).

    ``values[q]`` is a float64 array of shape ``(steps + 1, *shape)``; rows where the quantity
    did not exist yet (lazily created state) are NaN and ``present[q]`` is False there.
    ``counters`` holds the ``step`` state entry per parameter, ``error`` an exception text if
    the run raised (the trajectory then ends early).
    """

    values: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict[str, np.ndarray] = field(default_factory=dict)
    steps: int = 0
    error: str | None = None
    error_step: int | None = None
    grads: list[list[np.ndarray | None]] = field(default_factory=list)
    dtypes: dict[str, str] = field(default_factory=dict)  # dtype each quantity was stored in


class _Recorder:
    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.rows: dict[str, dict[int, np.ndarray]] = {}
        self.counters: dict[str, dict[int, float]] = {}
        self.grads: list[list[np.ndarray | None]] = []
        self.dtypes: dict[str, str] = {}

    def add(self, t: int, name: str, value: Any) -> None:
        self.rows.setdefault(name, {})[t] = _as_float64(value)
        if name not in self.dtypes:
            dtype = getattr(value, "dtype", None)
            if dtype is not None:
                self.dtypes[name] = str(dtype).removeprefix("torch.")

    def count(self, t: int, name: str, value: Any) -> None:
        self.counters.setdefault(name, {})[t] = float(value)

    def finish(self, error: str | None = None, error_step: int | None = None) -> Trajectory:
        traj = Trajectory(steps=self.steps, error=error, error_step=error_step,
                          grads=self.grads, dtypes=dict(self.dtypes))
        n = self.steps + 1
        for name, rows in self.rows.items():
            shape = next(iter(rows.values())).shape
            arr = np.full((n, *shape), np.nan)
            mask = np.zeros(n, dtype=bool)
            for t, v in rows.items():
                arr[t] = v
                mask[t] = True
            traj.values[name] = arr
            traj.present[name] = mask
        for name, c in self.counters.items():
            col = np.full(n, np.nan)
            for t, v in c.items():
                col[t] = v
            traj.counters[name] = col
        return traj


def _as_float64(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value.astype(np.float64, copy=True)
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy().copy()
    return np.asarray(value, dtype=np.float64)


def _converter(backend: str, dtype: str, device: str) -> Callable[[np.ndarray], Any]:
    """float64 NumPy values -> the backend's arrays in ``dtype`` (tensors on ``device``)."""
    if backend == "torch":
        import torch

        tdt = getattr(torch, dtype)
        return lambda a: torch.tensor(a, dtype=tdt, device=device)

    def conv(a: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # float64 values beyond float32 become inf
            return np.array(a, dtype=dtype, order="C")

    return conv


def run_rule(rule: Any, probe: Probe, steps: int, dtype: str = "float64",
             device: str = "cpu", record_state: bool = True) -> Trajectory:
    """Run a gradsuite rule (any backend) over ``probe`` for ``steps`` steps and record it.

    With ``record_state=False`` only the parameters are recorded (faster, for comparisons of
    parameters alone).
    """
    rec = _Recorder(steps)
    p64 = probe.initial_params()
    conv = _converter(rule.backend, dtype, device)
    params = [conv(p) for p in p64]
    state = rule.init(params)
    record = _record if record_state else _record_params
    record(rec, 0, params, state)
    for t in range(steps):
        grads = probe.grad_at(t, [_as_float64(p) for p in params])
        rec.grads.append(grads)
        try:
            rule.step(params, [None if g is None else conv(g) for g in grads], state)
        except Exception as exc:  # noqa: BLE001 - the run's failure is part of the result
            return rec.finish(f"{type(exc).__name__}: {exc}", t + 1)
        record(rec, t + 1, params, state)
    return rec.finish()


def _record_params(rec: _Recorder, t: int, params: list[Any], state: list[dict[str, Any]]
                   ) -> None:
    for i, p in enumerate(params):
        rec.add(t, f"param[{i}]", p)


def run_rule_lockstep(rule: Any, ref: Trajectory, dtype: str = "float64",
                      device: str = "cpu") -> Trajectory:
    """One-step predictions along a reference trajectory.

    At every step t the rule starts from the reference's parameters and state at t (including
    the ``step`` counter), takes the gradient the reference took, and its result is recorded at
    t + 1. Comparing this with the reference measures the rule's own error per step, without
    the amplification that chaotic dynamics (normalised updates with weight decay near p = 0,
    for instance) apply to round-off in a free-running comparison.
    """
    rec = _Recorder(ref.steps)
    n = sum(q.startswith("param[") for q in ref.values)
    conv = _converter(rule.backend, dtype, device)

    keyed: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    for q in ref.values:
        if not q.startswith("param["):
            key, idx = q[:-1].split("[")
            keyed[int(idx)].append((key, q))
    for i in range(n):
        rec.add(0, f"param[{i}]", ref.values[f"param[{i}]"][0])
        for _key, q in keyed[i]:
            if ref.present[q][0]:
                rec.add(0, q, ref.values[q][0])
    steps = min(ref.steps, len(ref.grads))
    own = _state_dtypes(rule, ref, conv, n) if steps else [{} for _ in range(n)]
    for t in range(steps):
        params = [conv(ref.values[f"param[{i}]"][t]) for i in range(n)]
        state: list[dict[str, Any]] = []
        for i in range(n):
            st: dict[str, Any] = {key: _as(conv(ref.values[q][t]), own[i].get(key))
                                  for key, q in keyed[i] if ref.present[q][t]}
            count = ref.counters.get(f"step[{i}]")
            if count is not None and not np.isnan(count[t]):
                st["step"] = float(count[t])
            state.append(st)
        grads = [None if g is None else conv(g) for g in ref.grads[t]]
        try:
            rule.step(params, grads, state)
        except Exception as exc:  # noqa: BLE001 - the run's failure is part of the result
            return rec.finish(f"{type(exc).__name__}: {exc}", t + 1)
        _record(rec, t + 1, params, state)
    return rec.finish()


def _state_dtypes(rule: Any, ref: Trajectory, conv: Callable[[np.ndarray], Any], n: int
                  ) -> list[dict[str, Any]]:
    """The dtype the rule itself gives each state entry, from one step of a fresh state on
    the reference's first parameters and gradients: scalar state that torch keeps in its own
    scalar dtype (NAdam's ``mu_product``: float32 beside float64 parameters) must keep that
    dtype when the lockstep run loads the reference's values, or its next product is rounded
    differently from torch's. Empty where that step fails (the lockstep run reports it)."""
    params = [conv(ref.values[f"param[{i}]"][0]) for i in range(n)]
    grads = [None if g is None else conv(g) for g in ref.grads[0]]
    try:
        state = rule.init(params)
        rule.step(params, grads, state)
    except Exception:  # noqa: BLE001 - the lockstep run itself meets the same failure
        return [{} for _ in range(n)]
    return [{k: v.dtype for k, v in st.items() if hasattr(v, "dtype")} for st in state]


def _as(value: Any, dtype: Any) -> Any:
    """``value`` (a converted reference value) in ``dtype`` when that differs."""
    if dtype is None or value.dtype == dtype:
        return value
    return value.to(dtype) if hasattr(value, "to") else value.astype(dtype)


def _record(rec: _Recorder, t: int, params: list[Any], state: list[dict[str, Any]]) -> None:
    for i, (p, st) in enumerate(zip(params, state, strict=True)):
        rec.add(t, f"param[{i}]", p)
        for key, value in st.items():
            if key == "step":
                rec.count(t, f"step[{i}]", value)
            elif value is not None and hasattr(value, "shape"):
                rec.add(t, f"{key}[{i}]", value)


def replay(probe: Probe, reference: Trajectory) -> Probe:
    """``probe`` with the gradients a reference run saw, step for step.

    For probes whose gradients depend on the parameters (``model``), every tested run is fed
    the reference run's gradient sequence, so that what is compared is the update rule alone:
    near a minimum, normalised rules such as RMSprop enter limit cycles in which round-off
    differences in the iterates grow chaotically, and feeding each run its own gradients would
    measure that amplification instead of the rule.
    """
    recorded = reference.grads

    def grads(step: int, params: Any, rng: np.random.Generator) -> list[np.ndarray | None]:
        if step >= len(recorded):
            raise ValueError(f"the reference run recorded {len(recorded)} steps; step {step} "
                             "was asked for")
        return recorded[step]

    return replace(probe, grads=grads, name=f"{probe.name}")


OptimizerFactory = Callable[..., Any]


def run_torch(factory: OptimizerFactory, hyper: dict[str, Any], probe: Probe, steps: int,
              dtype: str = "float64", device: str = "cpu",
              tensor_lr: bool = False) -> Trajectory:
    """Run a torch.optim-style optimizer over ``probe`` and record it.

    ``factory(params, **hyper)`` builds the optimizer; an exception there or in ``step`` ends
    the trajectory and is stored in ``error``. With ``tensor_lr`` the learning rate is passed
    as a 0-dim tensor, as in one of PyTorch's own test configurations.
    """
    import torch

    rec = _Recorder(steps)
    tdt = getattr(torch, dtype)
    params = [torch.nn.Parameter(torch.tensor(p, dtype=tdt, device=device))
              for p in probe.initial_params()]
    kwargs = dict(hyper)
    if tensor_lr and "lr" in kwargs:
        kwargs["lr"] = torch.tensor(kwargs["lr"])
    try:
        opt = factory(params, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a failing constructor is part of the result
        return rec.finish(f"construction failed: {type(exc).__name__}: {exc}", 0)
    _record_torch(rec, 0, params, opt)
    for t in range(steps):
        grads = probe.grad_at(t, [p.detach().cpu().double().numpy() for p in params])
        rec.grads.append(grads)
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else torch.tensor(g, dtype=tdt, device=device)
        try:
            opt.step()
        except Exception as exc:  # noqa: BLE001 - the run's failure is part of the result
            return rec.finish(f"{type(exc).__name__}: {exc}", t + 1)
        _record_torch(rec, t + 1, params, opt)
    return rec.finish()


def _record_torch(rec: _Recorder, t: int, params: list[Any], opt: Any) -> None:
    import torch

    for i, p in enumerate(params):
        rec.add(t, f"param[{i}]", p)
        st = getattr(opt, "state", {}).get(p, {}) if hasattr(opt, "state") else {}
        for key, value in st.items():
            if key == "step":
                rec.count(t, f"step[{i}]", value)
            elif isinstance(value, torch.Tensor):  # any shape: 0-dim scalars, factored rows
                rec.add(t, f"{key}[{i}]", value)


def quantity_errors(test: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Per-step maximum of the running-magnitude relative error (see module docstring).

    ``floor`` is a lower bound for the scale: for float32 runs, values that have never left the
    subnormal range carry no relative precision, and their errors are measured against it.
    """
    err = element_errors(test, ref, floor)
    return err.reshape(err.shape[0], -1).max(axis=1, initial=0.0)


def element_errors(test: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """The running-magnitude relative error of every element at every step (same shape).

    :func:`quantity_errors` is its maximum per step; this is where a report finds the element
    (and its values) that a step's error belongs to.
    """
    scale = np.fmax.accumulate(np.abs(ref), axis=0)
    if floor:
        scale = np.maximum(scale, floor)
    diff = np.abs(test - ref)
    both_nan = np.isnan(test) & np.isnan(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(diff == 0, 0.0, diff / scale)
    err = np.where(both_nan, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)  # NaN vs number, or 0/0 with a difference


@dataclass(frozen=True)
class QuantityResult:
    quantity: str
    max_error: float
    first_bad_step: int | None   # first step whose error exceeds the tolerance
    worst_step: int
    note: str = ""


def compare(test: Trajectory, ref: Trajectory, tol: float | np.ndarray,
            require_state: bool = True, floor: float = 0.0,
            skip_initial_state: bool = False) -> list[QuantityResult]:
    """Compare ``test`` with ``ref`` quantity by quantity, step by step.

    ``tol`` is a number, or one tolerance per step (index 0 = initial values). ``floor`` is
    passed to :func:`quantity_errors`. With ``skip_initial_state`` the state before the first
    step is not compared (whether an optimizer creates its state eagerly or lazily is not part
    of its update rule).

    Every quantity of the reference is checked. A reference state entry that the tested run
    does not have is a failure when ``require_state``; otherwise it is reported as not exposed
    (a user's optimizer may keep its state under other names) and only what it exposes under
    torch.optim's names is compared; parameters must always agree.
    """
    out: list[QuantityResult] = []
    n = min(test.steps, ref.steps, finite_horizon(ref)) + 1
    tols = np.broadcast_to(np.asarray(tol, dtype=np.float64), (ref.steps + 1,))[:n]
    for q, rv in ref.values.items():
        if q not in test.values:
            if q.startswith("param[") or require_state:
                out.append(QuantityResult(q, np.inf, _first(ref.present[q]), 0,
                                          "missing from the tested run"))
            else:
                out.append(QuantityResult(q, np.nan, None, 0, "state not exposed"))
            continue
        tv = test.values[q]
        rp, tp = ref.present[q][:n], test.present[q][:n]
        err = quantity_errors(tv[:n], rv[:n], floor)
        mismatch = rp != tp
        if skip_initial_state and not q.startswith("param["):
            mismatch[0] = False
            err[0] = 0.0
        err = np.where(mismatch, np.inf, err)
        bad = np.flatnonzero(err > tols)
        note = ""
        if mismatch.any():
            t = int(np.flatnonzero(mismatch)[0])
            note = ("exists" if tp[t] else "missing") + f" at step {t} unlike the reference"
        out.append(QuantityResult(q, float(err.max(initial=0.0)),
                                  int(bad[0]) if bad.size else None,
                                  int(np.argmax(err)) if err.size else 0, note))
    for q, rc in ref.counters.items():
        tc = test.counters.get(q)
        if tc is None:
            continue
        if skip_initial_state:
            tc, rc = tc[1:], rc[1:]
        m = n - (1 if skip_initial_state else 0)
        diff = np.flatnonzero(~((tc[:m] == rc[:m]) | (np.isnan(tc[:m]) & np.isnan(rc[:m]))))
        off = 1 if skip_initial_state else 0
        out.append(QuantityResult(q, 0.0 if not diff.size else np.inf,
                                  int(diff[0]) + off if diff.size else None,
                                  int(diff[0]) + off if diff.size else 0,
                                  "step counter differs" if diff.size else ""))
    return out


def finite_horizon(ref: Trajectory) -> int:
    """The last step before any reference quantity becomes non-finite (``ref.steps`` if none).

    Once a run has overflowed, where each implementation's inf and NaN appear depends on the
    precision of its intermediates, not on its update rule; comparisons stop there.
    """
    last = ref.steps
    for v in ref.values.values():
        bad = ~np.isfinite(v.reshape(v.shape[0], -1)).all(axis=1)
        # rows where the quantity does not exist yet are NaN by construction: skip them
        idx = [t for t in np.flatnonzero(bad) if not np.isnan(v[t]).all()]
        if idx:
            last = min(last, int(idx[0]) - 1)
    return max(last, 0)


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None
