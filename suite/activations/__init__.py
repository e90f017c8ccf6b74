"""Activation functions with their derivatives, in NumPy, Numba and torch.

>>> act = activations.get("leaky_relu", backend="numba", negative_slope=0.1)
>>> y = act.forward(x)
>>> dx = act.backward(x, dy)          # dL/dx given dL/dy (a vector-Jacobian product)
>>> act.derivative(x)                 # f'(x), elementwise activations only

The NumPy and torch backends run the same formulas (written once, for either namespace); the
Numba backend compiles the same scalar formulas into ufuncs (elementwise) or row loops (softmax,
log_softmax). Formulas are the numerically stable forms torch uses: sigmoid never evaluates
exp of a positive number, softplus switches to the identity above ``threshold``, elu and selu use
expm1, softmax subtracts the row maximum, log_softmax uses log-sum-exp. NaN inputs propagate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


def _erf(xp: Any, x: Any) -> Any:
    if xp is np:
        from scipy.special import erf

        return erf(x)
    return xp.special.erf(x)


def _where(xp: Any, c: Any, a: Any, b: Any) -> Any:
    return xp.where(c, a, b)


# ---- formulas, written once for NumPy arrays and torch tensors ---------------------------

def sigmoid(x: Any) -> Any:
    xp = _ns(x)
    e = xp.exp(-xp.abs(x))  # never exp of a positive number
    return _where(xp, x >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_d(x: Any) -> Any:
    s = sigmoid(x)
    return s * (1 - s)


def _tanh(x: Any) -> Any:
    return _ns(x).tanh(x)


def _tanh_d(x: Any) -> Any:
    t = _ns(x).tanh(x)
    return 1 - t * t


# Derivatives select with the comparison torch's backward kernels use, so that a NaN input
# gives the same gradient as in torch (relu: x <= 0 ? 0 : dy, so NaN passes dy through).

def _relu(x: Any) -> Any:
    xp = _ns(x)
    return xp.maximum(x, xp.zeros_like(x))  # propagates NaN; relu(-inf) = 0


def _relu_d(x: Any) -> Any:
    xp = _ns(x)
    return _where(xp, x <= 0, xp.zeros_like(x), xp.ones_like(x))


def _leaky(x: Any, negative_slope: float) -> Any:
    return _where(_ns(x), x > 0, x, x * negative_slope)


def _leaky_d(x: Any, negative_slope: float) -> Any:
    xp = _ns(x)
    return _where(xp, x > 0, xp.ones_like(x), xp.full_like(x, negative_slope))


def _elu(x: Any, alpha: float) -> Any:
    xp = _ns(x)
    return _where(xp, x > 0, x, alpha * xp.expm1(xp.minimum(x, xp.zeros_like(x))))


def _elu_d(x: Any, alpha: float) -> Any:
    xp = _ns(x)
    return _where(xp, x <= 0, alpha * xp.exp(xp.minimum(x, xp.zeros_like(x))), xp.ones_like(x))


def _selu(x: Any) -> Any:
    return SELU_SCALE * _elu(x, SELU_ALPHA)


def _selu_d(x: Any) -> Any:
    return SELU_SCALE * _elu_d(x, SELU_ALPHA)


def _softplus(x: Any, beta: float, threshold: float) -> Any:
    xp = _ns(x)
    bx = x * beta
    safe = xp.minimum(bx, xp.full_like(x, threshold))
    return _where(xp, bx > threshold, x, xp.log1p(xp.exp(safe)) / beta)


def _softplus_d(x: Any, beta: float, threshold: float) -> Any:
    xp = _ns(x)
    bx = x * beta
    return _where(xp, bx > threshold, xp.ones_like(x), sigmoid(bx))


def _gelu(x: Any, approximate: str) -> Any:
    xp = _ns(x)
    if approximate == "tanh":
        inner = _GELU_BETA * (x + _GELU_KAPPA * x * x * x)
        return 0.5 * x * (1 + xp.tanh(inner))
    return x * 0.5 * (1 + _erf(xp, x * _SQRT1_2))


def _gelu_d(x: Any, approximate: str) -> Any:
    xp = _ns(x)
    if approximate == "tanh":
        x_sq = x * x
        t = xp.tanh(_GELU_BETA * (x + _GELU_KAPPA * x_sq * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_BETA * (1 + 3 * _GELU_KAPPA * x_sq)
    cdf = 0.5 * (1 + _erf(xp, x * _SQRT1_2))
    pdf = xp.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return cdf + x * pdf


def _silu(x: Any) -> Any:
    return x * sigmoid(x)


def _silu_d(x: Any) -> Any:
    s = sigmoid(x)
    return s * (1 + x * (1 - s))


def _amax(xp: Any, x: Any, dim: int) -> Any:
    if xp is np:
        return np.max(x, axis=dim, keepdims=True)
    return x.amax(dim=dim, keepdim=True)


def _sum(xp: Any, x: Any, dim: int) -> Any:
    if xp is np:
        return np.sum(x, axis=dim, keepdims=True)
    return x.sum(dim=dim, keepdim=True)


def _softmax(x: Any, dim: int) -> Any:
    xp = _ns(x)
    e = xp.exp(x - _amax(xp, x, dim))
    return e / _sum(xp, e, dim)


def _softmax_vjp(x: Any, dy: Any, dim: int) -> Any:
    xp = _ns(x)
    y = _softmax(x, dim)
    return y * (dy - _sum(xp, dy * y, dim))


def _log_softmax(x: Any, dim: int) -> Any:
    xp = _ns(x)
    shifted = x - _amax(xp, x, dim)
    return shifted - xp.log(_sum(xp, xp.exp(shifted), dim))


def _log_softmax_vjp(x: Any, dy: Any, dim: int) -> Any:
    xp = _ns(x)
    return dy - xp.exp(_log_softmax(x, dim)) * _sum(xp, dy, dim)


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
