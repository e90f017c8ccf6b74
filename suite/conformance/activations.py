"""Check a user's activation function (value and autograd derivative) against the truth.

>>> from suite.conformance import check_activation
>>> result = check_activation(my_gelu, reference="gelu")      # a torch callable
>>> result.passed, result.frame                               # bool, one row per cell
>>> print(result)                                             # verdict with a diagnosis

What it accepts
---------------
``fn`` is anything torch users write an activation as, differentiated by autograd:

- a function ``fn(x, **params)`` on tensors (parameters it names, or ``**kwargs``, are passed);
- an ``nn.Module`` class (built with the parameters it accepts) or instance (used as it is);
- a ``torch.autograd.Function`` subclass (``fn.apply(x, *params)``, in the order its
  ``forward(ctx, x, ...)`` names them);
- a NumPy pair ``(forward, backward)`` with ``forward(x, **params)`` and
  ``backward(x, dy, **params)`` on float arrays.

How it decides
--------------
For every configuration (the given ``params``, or by default :data:`CONFIGS`: the defaults
and non-default values of each parameter the callable accepts, so that an ignored parameter
shows), every dtype and every region of the input line (:data:`REGIONS`), the value f(x) and
the derivative (backward with dy = 1) are compared with the mpmath truth of
:mod:`suite.activations.accuracy` on its grid (±1e-30..1e3, the tails, the derivative zeros),
in ulps. A point fails when

    error(x) > SLACK + κ(x) + 4 · E_torch(region)

where κ(x) is the quantity's condition number (the cost of rounding x itself), SLACK is
:data:`SLACK` ulps, and E_torch is the largest error beyond κ that torch's own function makes
in that region, measured on the same points, dtype and device: an implementation as good as
torch's always passes, even where torch loses every digit (sigmoid' beyond x = 36.75 in
float64, exact GELU below -8.3). inf or NaN where the truth and torch are finite always fails.
Each failure is diagnosed: overflow, false zero, wrong derivative (the value agrees), ignored
parameter (the defaults pass), float32 internals (float64 results with float32 accuracy), or
cancellation (how many times torch's error).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from suite import activations as A
from suite.activations import accuracy

#: extra ulps allowed beyond κ (and beyond torch's own error)
SLACK = {"float32": 8.0, "float64": 16.0}
TORCH_FACTOR = 4.0
#: (name, low, high): x in [low, high)
REGIONS: tuple[tuple[str, float, float], ...] = (
    ("x <= -8", -np.inf, -8.0 + 1e-12), ("-8 < x <= -1e-3", -8.0 + 1e-12, -1e-3 + 1e-18),
    ("|x| < 1e-3", -1e-3 + 1e-18, 1e-3), ("1e-3 <= x < 8", 1e-3, 8.0), ("x >= 8", 8.0, np.inf))
#: the configurations checked by default: defaults, then each parameter moved
CONFIGS: dict[str, list[dict[str, Any]]] = {
    "leaky_relu": [{}, {"negative_slope": 0.2}],
    "elu": [{}, {"alpha": 0.5}, {"alpha": 2.0}],
    "softplus": [{}, {"beta": 2.0}, {"threshold": 5.0}],
    "gelu": [{}, {"approximate": "tanh"}],
}
GRID_POINTS = 120
SHOWN_PER_CONFIG = 3


@dataclass
class ActivationResult:
    reference: str
    activation: str
    frame: pd.DataFrame
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(len(self.frame)) and not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        n = len(self.frame)
        ok = int(self.frame["passed"].sum()) if n else 0
        head = (f"{self.activation} vs reference {self.reference!r}: "
                f"{'PASS' if self.passed else 'FAIL'} ({ok}/{n} cells within bounds)")
        lines = [head, *self.notes]
        shown: dict[str, int] = {}
        for f in self.failures:  # the worst few per configuration
            cfg = f.split("(", 1)[1].split(")", 1)[0] if "(" in f else ""
            shown[cfg] = shown.get(cfg, 0) + 1
            if shown[cfg] <= SHOWN_PER_CONFIG:
                lines.append(f"  - {f}")
        for cfg, n in shown.items():
            if n > SHOWN_PER_CONFIG:
                lines.append(f"    ({n - SHOWN_PER_CONFIG} more failing cells for ({cfg}); "
                             "see result.failures and result.frame)")
        return "\n".join(lines)


def _name(fn: Any) -> str:
    if isinstance(fn, tuple | list):
        return f"({', '.join(_name(f) for f in fn)})"
    target = fn if inspect.isclass(fn) or inspect.isroutine(fn) else type(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(fn))}"


def _accepted(fn: Any, names: dict[str, Any], probe: Any = None) -> list[str]:
    """The parameter names ``fn`` accepts (all of them if it takes ``**kwargs``). A builtin
    without a signature (``torch.nn.functional.gelu``) is asked by calling it on ``probe``
    with each name at its default."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        if probe is None:
            return []
        out = []
        for n, v in names.items():
            try:
                fn(probe, **{n: v})
                out.append(n)
            except TypeError:
                pass
        return out
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return list(names)
    return [n for n in names if n in sig.parameters]


def _kind(fn: Any) -> str:
    import torch

    if isinstance(fn, tuple | list):
        if len(fn) != 2 or not all(callable(f) for f in fn):
            raise TypeError("a NumPy activation is a pair (forward, backward) of callables")
        return "numpy"
    if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function):
        return "function"
    if inspect.isclass(fn) and issubclass(fn, torch.nn.Module):
        return "module_class"
    if isinstance(fn, torch.nn.Module):
        return "module"
    if callable(fn):
        return "callable"
    raise TypeError(f"fn must be a callable on tensors, an nn.Module, an autograd.Function or "
                    f"a (forward, backward) pair, got {type(fn).__name__}")


def _param_names(fn: Any, kind: str, names: dict[str, Any]) -> list[str]:
    if kind == "numpy":
        return _accepted(fn[0], names)
    if kind == "function":
        sig = list(inspect.signature(fn.forward).parameters)[2:]  # ctx, x
        return [n for n in sig if n in names]
    if kind == "module_class":
        return _accepted(fn.__init__, names)
    if kind == "module":
        return []
    import torch

    return _accepted(fn, names, probe=torch.zeros(1, dtype=torch.float64))


def _evaluate(fn: Any, kind: str, params: dict[str, Any], x: np.ndarray, device: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) of the user's activation in x's dtype, or raise with what went wrong."""
    if kind == "numpy":
        y = np.asarray(fn[0](x.copy(), **params))
        d = np.asarray(fn[1](x.copy(), np.ones_like(x), **params))
    else:
        import torch

        tx = torch.tensor(x, device=device, requires_grad=True)
        if kind == "function":
            call = lambda t: fn.apply(t, *params.values())
        elif kind == "module_class":
            module = fn(**params)
            call = module
        else:
            call = (lambda t: fn(t, **params)) if kind == "callable" else fn
        ty = call(tx)
        if not isinstance(ty, torch.Tensor):
            raise TypeError(f"returned {type(ty).__name__}, not a tensor")
        if not ty.requires_grad:
            raise TypeError("autograd gives no gradient for x (is the result detached, or "
                            "computed outside torch?)")
        ty.backward(torch.ones_like(ty))
        if tx.grad is None:
            raise TypeError("autograd gives no gradient for x (is the result detached?)")
        y, d = ty.detach().cpu().numpy(), tx.grad.cpu().numpy()
    for what, v in (("value", y), ("derivative", d)):
        if v.shape != x.shape:
            raise ValueError(f"{what} has shape {v.shape} for an input of shape {x.shape}")
        if v.dtype != x.dtype:
            raise TypeError(f"{what} has dtype {v.dtype} for {x.dtype} input")
    return y, d


def _torch_reference(reference: str, params: dict[str, Any], x: np.ndarray, device: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    tx = torch.tensor(x, device=device, requires_grad=True)
    ty = A.ACTIVATIONS[reference].torch_fn(**params)(tx)
    ty.backward(torch.ones_like(ty))
    return ty.detach().cpu().numpy(), tx.grad.cpu().numpy()  # type: ignore[union-attr]


def _cfg_id(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def check_activation(fn: Any, reference: str, dtypes: Sequence[str] = ("float64", "float32"),
                     device: str = "cpu", configs: Sequence[dict[str, Any]] | None = None,
                     points: int = GRID_POINTS, **params: Any) -> ActivationResult:
    """Check ``fn`` against the built-in ``reference`` (see the module docstring).

    ``params`` fixes one configuration (passed to ``fn`` where it accepts them, and always to
    the reference); ``configs`` gives several; neither: :data:`CONFIGS` (those whose moved
    parameters ``fn`` accepts). ``points`` sets the grid's density."""
    if reference not in A.ACTIVATIONS:
        raise ValueError(f"unknown reference {reference!r}; expected one of "
                         f"{', '.join(A.ELEMENTWISE)}")
    spec = A.ACTIVATIONS[reference]
    if spec.derivative is None:
        raise ValueError(f"check_activation compares elementwise activations; {reference!r} "
                         f"is not (expected one of {', '.join(A.ELEMENTWISE)})")
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad or not dtypes:
        raise ValueError(f"dtypes={list(dtypes)}; expected float32 and/or float64")
    kind = _kind(fn)
    accepted = _param_names(fn, kind, dict(spec.defaults))
    notes: list[str] = []
    if params and configs is not None:
        raise TypeError("give either configs= or parameters as keywords, not both")
    if params:
        A._check_params(spec, params)
        todo = [dict(params)]
    elif configs is not None:
        todo = [dict(c) for c in configs]
        for c in todo:
            A._check_params(spec, c)
    else:
        todo = []
        for c in CONFIGS.get(reference, [{}]):
            missing = [k for k in c if k not in accepted]
            if missing:
                notes.append(f"  note: {_name(fn)} takes no {', '.join(missing)}; "
                             f"not checked with {_cfg_id(c)}")
            else:
                todo.append(c)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for cfg in todo:
        full = A._check_params(spec, cfg)
        passed_to_fn = {k: full[k] for k in accepted}  # in the order fn names them
        for dtype in dtypes:
            x, hi_f, lo_f, k_f = accuracy._cached_truth(reference, tuple(sorted(full.items())),
                                                        dtype, points, "forward")
            _, hi_d, lo_d, k_d = accuracy._cached_truth(reference, tuple(sorted(full.items())),
                                                        dtype, points, "derivative")
            try:
                y, d = _evaluate(fn, kind, passed_to_fn, x, device)
            except Exception as exc:  # noqa: BLE001 - the user's code: report, don't crash
                msg = f"{_cfg_id(cfg)} {dtype}: raised {type(exc).__name__}: {exc}"
                failures.append(msg)
                rows.append({"config": _cfg_id(cfg), "dtype": dtype, "region": "all",
                             "quantity": "both", "passed": False, "error": msg})
                continue
            ty, td = _torch_reference(reference, full, x, device)
            for quantity, got, tgot, hi, lo, kap in (("forward", y, ty, hi_f, lo_f, k_f),
                                                     ("derivative", d, td, hi_d, lo_d, k_d)):
                err = accuracy.ulp_error(got, hi, lo, dtype)
                terr = accuracy.ulp_error(tgot, hi, lo, dtype)
                for region, low, high in REGIONS:
                    m = (x >= low) & (x < high)
                    if not m.any():
                        continue
                    rows.append(_cell(cfg, dtype, region, quantity, x[m], got[m], hi[m],
                                      lo[m], kap[m], err[m], terr[m]))
    frame = pd.DataFrame(rows)
    if len(frame) and "error" not in frame:
        frame["error"] = None
    failures += _diagnose(frame, reference)
    return ActivationResult(reference, _name(fn), frame, failures, notes)


def _cell(cfg: dict[str, Any], dtype: str, region: str, quantity: str, x: np.ndarray,
          got: np.ndarray, hi: np.ndarray, lo: np.ndarray, kappa: np.ndarray, err: np.ndarray,
          terr: np.ndarray) -> dict[str, Any]:
    tfinite = np.isfinite(terr)
    torch_excess = float(np.max(np.maximum(terr[tfinite] - kappa[tfinite], 0.0),
                                initial=0.0))
    allowed = SLACK[dtype] + kappa + TORCH_FACTOR * torch_excess
    # inf/NaN where torch is finite always fails; where torch is also non-finite it is torch's
    over = np.where(np.isinf(err) & ~tfinite, 0.0, err - allowed)
    k = int(np.argmax(over))
    g = np.asarray(got, np.float64)
    return {
        "config": _cfg_id(cfg), "dtype": dtype, "region": region, "quantity": quantity,
        "points": int(x.size), "max_ulp": float(np.max(np.where(tfinite | np.isfinite(err),
                                                                err, 0.0))),
        "worst_x": float(x[k]), "expected": float(hi[k]), "got": float(g[k]),
        "error_ulp": float(err[k]), "allowed_ulp": float(allowed[k]), "kappa": float(kappa[k]),
        "torch_max_ulp": float(np.max(terr, initial=0.0)), "torch_excess": torch_excess,
        "nonfinite": int(np.sum(~np.isfinite(g) & np.isfinite(hi) & tfinite)),
        "false_zeros": int(np.sum((g == 0) & (np.abs(hi) >= np.finfo(dtype).tiny))),
        "passed": bool(over[k] <= 0),
    }


def _diagnose(frame: pd.DataFrame, reference: str) -> list[str]:
    out: list[str] = []
    if not len(frame) or "max_ulp" not in frame:
        return out
    bad = frame[~frame["passed"] & frame["max_ulp"].notna()]
    bad = bad.assign(_order=bad["config"].map({c: i for i, c in
                                               enumerate(dict.fromkeys(bad["config"]))}))
    bad = bad.sort_values(["_order", "error_ulp"], ascending=[True, False])
    for _, r in bad.iterrows():
        where = (f"{r['quantity']} {r['region']} ({r['dtype']}, {r['config']}): "
                 f"{r['error_ulp']:.3g} ulps at x={r['worst_x']!r} (expected "
                 f"{r['expected']!r}, got {r['got']!r}; allowed {r['allowed_ulp']:.3g}, "
                 f"torch's worst here {r['torch_max_ulp']:.3g})")
        out.append(f"{where}: {_why(frame, r)}")
    return out


def _why(frame: pd.DataFrame, r: pd.Series) -> str:
    same = (frame["dtype"] == r["dtype"]) & (frame["region"] == r["region"]) & \
        (frame["quantity"] == r["quantity"])
    if not np.isfinite(r["got"]):
        return "overflow: inf or NaN where the exact value is finite"
    if r["got"] == 0 and r["expected"] != 0:
        return "false zero: the result underflows or cancels to 0 where the exact value is not"
    if r["config"] != "defaults":
        base = frame[same & (frame["config"] == "defaults")]
        if len(base) and bool(base["passed"].all()):
            return (f"the defaults pass here: is a parameter of {r['config']} ignored or "
                    "mis-scaled?")
    if r["quantity"] == "derivative":
        fwd = frame[(frame["dtype"] == r["dtype"]) & (frame["region"] == r["region"])
                    & (frame["config"] == r["config"]) & (frame["quantity"] == "forward")]
        if len(fwd) and bool(fwd["passed"].all()) and r["error_ulp"] > 1e6:
            return "wrong derivative: the value agrees, its derivative does not"
    rel = r["error_ulp"] * np.finfo(r["dtype"]).eps
    if r["dtype"] == "float64" and 1e-9 < rel < 1e-5:
        f32 = frame[(frame["dtype"] == "float32") & (frame["config"] == r["config"])]
        hint = " (float32 passes)" if len(f32) and bool(f32["passed"].all()) else ""
        return (f"float64 results with about float32 accuracy (relative error {rel:.2g})"
                f"{hint}: low-precision internals?")
    if r["dtype"] == "float32" and 1e-5 < rel < 1e-1:
        return (f"relative error {rel:.2g}: half-precision internals, or a coarse "
                "approximation?")
    if r["error_ulp"] > 1e6 and rel > 1e-2 and r["torch_max_ulp"] < 1e3:
        return "wrong formula: a relative error of order one where torch is accurate"
    ratio = r["error_ulp"] / max(r["torch_max_ulp"], 1.0)
    return (f"loses digits: {ratio:.3g}x torch's error in this region (cancellation or an "
            "inaccurate formula)")
