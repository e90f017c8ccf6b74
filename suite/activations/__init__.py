"""Activation functions with their derivatives, in NumPy, Numba and torch.

>>> act = activations.get("leaky_relu", backend="numba", negative_slope=0.1)
>>> y = act.forward(x)
>>> dx = act.backward(x, dy)          # dL/dx given dL/dy (a vector-Jacobian product)
>>> act.derivative(x)                 # f'(x), elementwise activations only

The NumPy and torch backends run the same formulas (written once, for either namespace); the
Numba backend compiles the same scalar formulas into ufuncs (elementwise) or row loops (softmax,
log_softmax). The formulas are accurate to a few ulps for every finite input, forward and
derivative (:mod:`suite.activations.accuracy` measures it against mpmath): float32 is evaluated
in float64 and rounded once; sigmoid' and tanh' come from e = exp(-|x|) (never from the rounded
output as y(1 - y) or 1 - y², which vanish early); GELU's Φ(x) is ½ erfcx(-x/√2) exp(-x²/2)
below -1 with x² split exactly (1 + erf cancels); gelu-tanh is x s(2u); near the zeros of silu',
gelu' and gelu-tanh' a Taylor series replaces the cancelling closed form; softmax and
log_softmax exclude the maximum from a compensated sum and use log1p. torch's definitions are
kept: softplus returns x above ``threshold``, relu'(0) = 0, elu'(0) = alpha. NaN inputs
propagate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from suite.activations._series import SERIES, WINDOW
from suite.backends import check_array, check_backend

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT1_2 = 0.70710678118654752440
_GELU_BETA = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5  # sqrt(2/pi)
_GELU_KAPPA = 0.044715
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _ns(x: Any) -> Any:
    if isinstance(x, np.ndarray | np.generic):
        return np
    import torch

    return torch


def _is64(x: Any) -> bool:
    return str(x.dtype) in ("float64", "torch.float64")


def _widen(x: Any) -> Any:
    if _is64(x):
        return x
    return x.astype(np.float64) if _ns(x) is np else x.to(_ns(x).float64)


def _narrow(y: Any, like: Any) -> Any:
    if _is64(like):
        return y
    return y.astype(like.dtype) if _ns(y) is np else y.to(like.dtype)


def _through_float64(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Evaluate ``fn`` in float64 and round once to the input's dtype (float32: 1 ulp).

    Every array argument is widened; the result takes the dtype of the first argument."""

    @functools.wraps(fn)
    def wrapper(x: Any, *args: Any, **params: Any) -> Any:
        if _is64(x):
            return fn(x, *args, **params)
        xp = _ns(x)
        wide = [a if not hasattr(a, "dtype") else a.astype(np.float64) if xp is np
                else a.to(xp.float64) for a in (x, *args)]
        out = fn(*wide, **params)
        return out.astype(x.dtype) if xp is np else out.to(x.dtype)

    return wrapper


def _where(xp: Any, c: Any, a: Any, b: Any) -> Any:
    return xp.where(c, a, b)


def _erfc(xp: Any, x: Any) -> Any:
    if xp is np:
        from scipy.special import erfc

        return erfc(x)
    return xp.special.erfc(x)


def _erfcx(xp: Any, x: Any) -> Any:
    """exp(x²) erfc(x), accurate to a few ulps for all x >= 0 (Faddeeva's algorithm)."""
    if xp is np:
        from scipy.special import erfcx

        return erfcx(x)
    return xp.special.erfcx(x)


# ---- error-free transformations (float64, no fused multiply-add needed) -------------------

_SPLITTER = 134217729.0  # 2**27 + 1 (Veltkamp)


def _two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    """p + e == a * b exactly (Dekker), for |a|, |b| < 2**996."""
    p = a * b
    t = _SPLITTER * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLITTER * b
    bh = t - (t - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """s + e == a + b exactly (Knuth), for finite a, b."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _exp_half_square(xp: Any, x: Any) -> Any:
    """exp(-x²/2) to ~1 ulp: x² is split into hi + lo exactly, so the only error is exp's.

    (exp of a rounded -x²/2 would be off by |x²/2| ulps: 700 ulps near the underflow.)"""
    xc = xp.clip(x, -40.0, 40.0)  # exp(-800) is 0 in float64; keeps the split finite
    hi, lo = _two_prod(xc, xc)
    return xp.exp(-0.5 * hi) * (1 - 0.5 * lo)


def _sigmoid_parts(xp: Any, x: Any) -> tuple[Any, Any]:
    """(sigmoid(x), e) with e = exp(-|x|): never exp of a positive number."""
    e = xp.exp(-xp.abs(x))
    return _where(xp, x >= 0, xp.ones_like(e), e) / (1 + e), e


def _sigmoid_prime_e(e: Any) -> Any:
    """s(x) s(-x) = e / (1 + e)² from e = exp(-|x|): no cancellation, no false zeros."""
    return e / ((1 + e) * (1 + e))


def _at_zero(xp: Any, x: Any, key: str, closed: Any) -> Any:
    """``closed`` (a derivative's closed form at x), replaced near the derivative's zero by
    its Taylor series (suite.activations._series), which keeps the relative accuracy there.
    The series is evaluated on the inputs in the window only."""
    x0_hi, x0_lo, c = SERIES[key]
    h = (x - x0_hi) - x0_lo
    near = xp.abs(h) < WINDOW
    if not bool(near.any()):
        return closed
    hn = h[near]
    p = c[-1]
    for ck in c[-2::-1]:
        p = p * hn + ck
    out = closed.copy() if xp is np else closed.clone()
    out[near] = p * hn
    return out


# ---- formulas, written once for NumPy arrays and torch tensors ---------------------------

@_through_float64
def sigmoid(x: Any) -> Any:
    return _sigmoid_parts(_ns(x), x)[0]


@_through_float64
def _sigmoid_d(x: Any) -> Any:
    return _sigmoid_prime_e(_ns(x).exp(-_ns(x).abs(x)))


@_through_float64
def _tanh(x: Any) -> Any:
    return _ns(x).tanh(x)


@_through_float64
def _tanh_d(x: Any) -> Any:
    """1 - tanh² = 4 s(2x) s(-2x), from exp(-2|x|) (1 - t*t is 0 from |x| = 19.1)."""
    xp = _ns(x)
    return 4 * _sigmoid_prime_e(xp.exp(-2 * xp.abs(x)))


# Derivatives select with the comparison torch's backward kernels use, so that a NaN input
# gives the same gradient as in torch (relu: x <= 0 ? 0 : dy, so NaN passes dy through).

def _relu(x: Any) -> Any:
    xp = _ns(x)
    return xp.maximum(x, xp.zeros_like(x))  # propagates NaN; relu(-inf) = 0


def _relu_d(x: Any) -> Any:
    xp = _ns(x)
    return _where(xp, x <= 0, xp.zeros_like(x), xp.ones_like(x))


@_through_float64
def _leaky(x: Any, negative_slope: float) -> Any:
    return _where(_ns(x), x > 0, x, x * negative_slope)


def _leaky_d(x: Any, negative_slope: float) -> Any:
    xp = _ns(x)
    return _where(xp, x > 0, xp.ones_like(x), xp.full_like(x, negative_slope))


@_through_float64
def _elu(x: Any, alpha: float) -> Any:
    xp = _ns(x)
    return _where(xp, x > 0, x, alpha * xp.expm1(xp.minimum(x, xp.zeros_like(x))))


@_through_float64
def _elu_d(x: Any, alpha: float) -> Any:
    xp = _ns(x)
    return _where(xp, x <= 0, alpha * xp.exp(xp.minimum(x, xp.zeros_like(x))), xp.ones_like(x))


@_through_float64
def _selu(x: Any) -> Any:
    return SELU_SCALE * _elu(x, SELU_ALPHA)


@_through_float64
def _selu_d(x: Any) -> Any:
    return SELU_SCALE * _elu_d(x, SELU_ALPHA)


def _softplus(x: Any, beta: float, threshold: float) -> Any:
    """log1p(exp(βx))/β as (max(βx, 0) + log1p(exp(-|βx|)))/β; x itself where βx > threshold
    (torch's definition, compared in the input's dtype)."""
    xp = _ns(x)
    above = x * beta > threshold
    return _where(xp, above, x, _softplus_body(x, beta))


@_through_float64
def _softplus_body(x: Any, beta: float) -> Any:
    xp = _ns(x)
    bx = x * beta
    return (xp.clamp(bx, min=0) if xp is not np else np.maximum(bx, 0)) / beta + \
        xp.log1p(xp.exp(-xp.abs(bx))) / beta


def _softplus_d(x: Any, beta: float, threshold: float) -> Any:
    xp = _ns(x)
    return _where(xp, x * beta > threshold, xp.ones_like(x), _sigmoid_scaled(x, beta))


@_through_float64
def _sigmoid_scaled(x: Any, beta: float) -> Any:
    return _sigmoid_parts(_ns(x), x * beta)[0]


def _ndtr_parts(xp: Any, x: Any) -> tuple[Any, Any]:
    """(Φ(x), φ(x)) to a few ulps for every x (float64).

    x < -1: Φ(x) = ½ erfcx(-x/√2) exp(-x²/2), so the steep factor exp(-x²/2) sees the exact
    x² (``_exp_half_square``) and the rounding of -x/√2 only enters erfcx, whose condition
    number is below 1. (½ erfc(-x/√2) would lose ~x² ulps to that rounding, and 1 + erf
    cancels to 0 from x = -8.3.) x >= -1: Φ(x) = ½ erfc(-x/√2), where that rounding costs
    at most x² <= 1 ulp."""
    e = _exp_half_square(xp, x)
    cdf = 0.5 * _erfc(xp, -x * _SQRT1_2)
    neg = x < -1
    if bool(neg.any()):  # erfcx is the costly one: only where it is needed
        cdf[neg] = 0.5 * _erfcx(xp, -x[neg] * _SQRT1_2) * e[neg]
    return cdf, e * _INV_SQRT_2PI


@_through_float64
def _gelu(x: Any, approximate: str) -> Any:
    xp = _ns(x)
    if approximate == "tanh":
        # 0.5 x (1 + tanh(u)) == x s(2u): no cancellation for x < 0
        u = _GELU_BETA * (x + _GELU_KAPPA * x * x * x)
        return x * _sigmoid_parts(xp, 2 * u)[0]
    return x * _ndtr_parts(xp, x)[0]


@_through_float64
def _gelu_d(x: Any, approximate: str) -> Any:
    xp = _ns(x)
    if approximate == "tanh":
        xc = xp.clip(x, -1e4, 1e4)  # beyond, s(2u) is exactly 0 or 1 and x³ would overflow
        x_sq = xc * xc
        s, e = _sigmoid_parts(xp, 2 * (_GELU_BETA * (xc + _GELU_KAPPA * x_sq * xc)))
        closed = s + xc * (2 * _GELU_BETA * (1 + 3 * _GELU_KAPPA * x_sq)) * _sigmoid_prime_e(e)
        return _at_zero(xp, x, "gelu_tanh", closed)
    cdf, pdf = _ndtr_parts(xp, x)
    return _at_zero(xp, x, "gelu", cdf + x * pdf)


@_through_float64
def _silu(x: Any) -> Any:
    return x * _sigmoid_parts(_ns(x), x)[0]


@_through_float64
def _silu_d(x: Any) -> Any:
    """s(x) (1 + x s(-x)), with s(-x) evaluated itself (1 - s(x) loses it for x > 0)."""
    xp = _ns(x)
    e = xp.exp(-xp.abs(x))
    pos = x >= 0
    one = xp.ones_like(e)
    s = _where(xp, pos, one, e) / (1 + e)
    s_neg = _where(xp, pos, e, one) / (1 + e)  # s(-x) from the same e
    return _at_zero(xp, x, "silu", s * (1 + x * s_neg))


def _amax(xp: Any, x: Any, dim: int) -> Any:
    if xp is np:
        return np.max(x, axis=dim, keepdims=True)
    return x.amax(dim=dim, keepdim=True)


def _sum(xp: Any, x: Any, dim: int) -> Any:
    if xp is np:
        return np.sum(x, axis=dim, keepdims=True)
    return x.sum(dim=dim, keepdim=True)


def _compensated_sum(xp: Any, v: Any, dim: int) -> Any:
    """Σ v along ``dim`` (keepdims) by pairwise two-sums: error ~ u + n u², not log2(n) u.
    The summed axis goes first, so that each level adds two contiguous halves."""
    v = xp.moveaxis(v, dim, 0)
    n = v.shape[0]
    width = 1 << max(0, (n - 1).bit_length())
    pad = xp.zeros((width - n, *v.shape[1:]), dtype=v.dtype)
    v = np.concatenate([v, pad], 0) if xp is np else \
        xp.cat([v, pad.to(v.device)], 0).contiguous()
    comp = None
    while v.shape[0] > 1:
        h = v.shape[0] // 2
        v, e = _two_sum(v[:h], v[h:])
        comp = e if comp is None else comp[:h] + comp[h:] + e
    total = v if comp is None else v + comp
    return xp.moveaxis(total, 0, dim)


def _softmax_parts(x: Any, dim: int, exact: bool) -> tuple[Any, Any, Any]:
    """(d, r, e, others) in float64: x - max = d + r (r its rounding error), e = exp(x - max),
    others = Σ e over the row without the (first) maximum. ``exact`` (float64 inputs): r from
    a two-sum, folded into e (e^(d + r) = e^d (1 + r)), and the sum is compensated; for
    float32 inputs float64 is already exact enough (r = 0)."""
    xp = _ns(x)
    m = _amax(xp, x, dim)
    if exact:
        d, r = _two_sum(x, -m)
        r = _where(xp, xp.isfinite(r), r, xp.zeros_like(r))  # -inf logits: e = 0
        e = xp.exp(d)
        e = e + e * r
    else:
        d = x - m
        r = 0.0
        e = xp.exp(d)
    idx = xp.argmax(x, axis=dim) if xp is np else x.argmax(dim=dim)
    idx = xp.expand_dims(idx, dim) if xp is np else idx.unsqueeze(dim)
    shape = [1] * x.ndim
    shape[dim] = x.shape[dim]
    pos = xp.arange(x.shape[dim]) if xp is np else xp.arange(x.shape[dim], device=x.device)
    rest = _where(xp, pos.reshape(shape) == idx, xp.zeros_like(e), e)
    others = _compensated_sum(xp, rest, dim) if exact else _sum(xp, rest, dim)
    return d, r, e, others


def _softmax(x: Any, dim: int) -> Any:
    _, _, e, others = _softmax_parts(_widen(x), dim, _is64(x))
    return _narrow(e / (1 + others), x)


@_through_float64
def _softmax_vjp(x: Any, dy: Any, dim: int) -> Any:
    xp = _ns(x)
    y = _softmax(x, dim)
    return y * (dy - _sum(xp, dy * y, dim))


def _log_softmax(x: Any, dim: int) -> Any:
    """(x - max) - log1p(Σ others): the dominant logit's -log(1 + tiny) keeps its digits;
    x - max = d + r enters with its rounding error r (added after d - log1p, where it moves
    the result's last bit; d + r alone would round back to d): (d - log1p) = s + t exactly
    (two-sum), then s + (t + r) rounded once."""
    xp = _ns(x)
    d, r, _, others = _softmax_parts(_widen(x), dim, _is64(x))
    s, t = _two_sum(d, -xp.log1p(others))
    t = _where(xp, xp.isfinite(t), t + r, xp.zeros_like(t))  # -inf logits: s = -inf
    return _narrow(s + t, x)


@_through_float64
def _log_softmax_vjp(x: Any, dy: Any, dim: int) -> Any:
    xp = _ns(x)
    return dy - _softmax(x, dim) * _sum(xp, dy, dim)


# ---- specs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ActivationSpec:
    name: str
    forward: Callable[..., Any]
    derivative: Callable[..., Any] | None      # elementwise f'(x); None for softmax-like
    vjp: Callable[..., Any] | None = None      # (x, dy, **params) for softmax-like
    defaults: dict[str, Any] = field(default_factory=dict)
    torch_name: str = ""
    max_derivative: float = 1.0                # sup |f'|, for "saturated" thresholds

    def torch_fn(self, **params: Any) -> Callable[[Any], Any]:
        import torch
        import torch.nn.functional as F

        fn = getattr(F, self.torch_name, None) or getattr(torch, self.torch_name)
        return lambda x: fn(x, **params)


ACTIVATIONS: dict[str, ActivationSpec] = {
    "sigmoid": ActivationSpec("sigmoid", sigmoid, _sigmoid_d, torch_name="sigmoid",
                              max_derivative=0.25),
    "tanh": ActivationSpec("tanh", _tanh, _tanh_d, torch_name="tanh"),
    "relu": ActivationSpec("relu", _relu, _relu_d, torch_name="relu"),
    "leaky_relu": ActivationSpec("leaky_relu", _leaky, _leaky_d,
                                 defaults={"negative_slope": 0.01}, torch_name="leaky_relu"),
    "elu": ActivationSpec("elu", _elu, _elu_d, defaults={"alpha": 1.0}, torch_name="elu"),
    "selu": ActivationSpec("selu", _selu, _selu_d, torch_name="selu",
                           max_derivative=SELU_SCALE * SELU_ALPHA),
    "softplus": ActivationSpec("softplus", _softplus, _softplus_d,
                               defaults={"beta": 1.0, "threshold": 20.0}, torch_name="softplus"),
    "gelu": ActivationSpec("gelu", _gelu, _gelu_d, defaults={"approximate": "none"},
                           torch_name="gelu", max_derivative=1.1289),
    "silu": ActivationSpec("silu", _silu, _silu_d, torch_name="silu", max_derivative=1.0998),
    "softmax": ActivationSpec("softmax", _softmax, None, _softmax_vjp, {"dim": -1}, "softmax"),
    "log_softmax": ActivationSpec("log_softmax", _log_softmax, None, _log_softmax_vjp,
                                  {"dim": -1}, "log_softmax"),
}
NAMES = tuple(ACTIVATIONS)
ELEMENTWISE = tuple(n for n, s in ACTIVATIONS.items() if s.derivative is not None)


def _check_params(spec: ActivationSpec, params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        valid = ", ".join(spec.defaults) or "none"
        raise TypeError(f"{spec.name}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    out = {**spec.defaults, **params}
    if spec.name == "gelu" and out["approximate"] not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate={out['approximate']!r}; expected 'none' or 'tanh'")
    if spec.name == "softplus" and out["beta"] == 0:
        raise ValueError("softplus: beta=0 divides by zero; expected a non-zero beta")
    if "dim" in out and not isinstance(out["dim"], int):
        raise TypeError(f"{spec.name}: dim={out['dim']!r} must be an int")
    return out


def _check_input(x: Any, backend: str, what: str = "input") -> None:
    check_array(x, backend, what)


@dataclass(frozen=True)
class Activation:
    spec: ActivationSpec
    backend: str
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def forward(self, x: Any) -> Any:
        _check_input(x, self.backend)
        with np.errstate(all="ignore"):  # NaN and inf propagate silently, as in torch
            if self.backend == "numba":
                from suite.activations import numba_kernels as activations_numba

                return activations_numba.forward(self.name, x, **self.params)
            return self.spec.forward(x, **self.params)

    def derivative(self, x: Any) -> Any:
        """Elementwise f'(x); ValueError for softmax-like activations (use ``backward``)."""
        if self.spec.derivative is None:
            raise ValueError(f"{self.name} is not elementwise; use backward(x, dy)")
        _check_input(x, self.backend)
        with np.errstate(all="ignore"):
            if self.backend == "numba":
                from suite.activations import numba_kernels as activations_numba

                return activations_numba.derivative(self.name, x, **self.params)
            return self.spec.derivative(x, **self.params)

    def _check_pair(self, x: Any, dy: Any) -> None:
        _check_input(x, self.backend)
        _check_input(dy, self.backend, "dy")
        if tuple(x.shape) != tuple(dy.shape):
            raise ValueError(f"dy has shape {tuple(dy.shape)} but x has shape {tuple(x.shape)}")
        if x.dtype != dy.dtype:
            raise ValueError(f"dy has dtype {dy.dtype} but x has dtype {x.dtype}")

    def forward_backward(self, x: Any, dy: Any) -> tuple[Any, Any]:
        """``(forward(x), backward(x, dy))`` with the same values, in one pass where it pays.

        On the Numba backend one compiled loop evaluates the function once per element and
        writes both outputs (a training step's forward and backward at once; torch's autograd
        gets the same saving by keeping the output). Other backends call the two methods.
        """
        if self.backend != "numba":
            return self.forward(x), self.backward(x, dy)
        self._check_pair(x, dy)
        from suite.activations import numba_kernels as activations_numba

        with np.errstate(all="ignore"):
            return activations_numba.forward_backward(self.name, x, dy, **self.params)

    def backward(self, x: Any, dy: Any) -> Any:
        """dL/dx given dL/dy at input ``x``."""
        self._check_pair(x, dy)
        with np.errstate(all="ignore"):
            if self.backend == "numba":
                from suite.activations import numba_kernels as activations_numba

                return activations_numba.backward(self.name, x, dy, **self.params)
            if self.spec.vjp is not None:
                return self.spec.vjp(x, dy, **self.params)
            return dy * self.spec.derivative(x, **self.params)  # type: ignore[misc]

    def torch_fn(self) -> Callable[[Any], Any]:
        """The torch function this activation mirrors, with the same parameters."""
        return self.spec.torch_fn(**self.params)


def get(name: str, backend: str = "numpy", **params: Any) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(NAMES)}")
    check_backend(backend)
    spec = ACTIVATIONS[name]
    return Activation(spec, backend, _check_params(spec, params))
