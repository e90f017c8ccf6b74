"""Numba backend of :mod:`suite.activations`: the same scalar formulas compiled into ufuncs.

Each elementwise activation has three ufuncs (float32 and float64 loops, no fastmath, cached):
``f(x)``, ``f'(x)`` and the fused vector-Jacobian product ``dy * f'(x)`` (one pass, no
temporary). Softmax and log_softmax run one compiled loop per row of the reduced axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, vectorize

# float32 loops first: a ufunc takes the first loop its inputs cast to safely.
_SIG1 = ["float32(float32)", "float64(float64)"]
_SIG2 = ["float32(float32, float32)", "float64(float64, float64)"]
_SIG3 = ["float32(float32, float32, float32)", "float64(float64, float64, float64)"]
_SIG4 = ["float32(float32, float32, float32, float32)",
         "float64(float64, float64, float64, float64)"]
_OPTS: dict[str, Any] = {"cache": True, "nopython": True}
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_BETA = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5
_KAPPA = 0.044715
_SQRT1_2 = 0.70710678118654752440
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True, inline="always")
def _sig(x):  # pragma: no cover - compiled
    e = math.exp(-abs(x))
    return 1 / (1 + e) if x >= 0 else e / (1 + e)


# sigmoid
@vectorize(_SIG1, **_OPTS)
def sigmoid_f(x):  # pragma: no cover - compiled
    return _sig(x)


@vectorize(_SIG1, **_OPTS)
def sigmoid_d(x):  # pragma: no cover - compiled
    s = _sig(x)
    return s * (1 - s)


@vectorize(_SIG2, **_OPTS)
def sigmoid_b(x, dy):  # pragma: no cover - compiled
    s = _sig(x)
    return dy * (s * (1 - s))


# tanh
@vectorize(_SIG1, **_OPTS)
def tanh_f(x):  # pragma: no cover - compiled
    return math.tanh(x)


@vectorize(_SIG1, **_OPTS)
def tanh_d(x):  # pragma: no cover - compiled
    t = math.tanh(x)
    return 1 - t * t


@vectorize(_SIG2, **_OPTS)
def tanh_b(x, dy):  # pragma: no cover - compiled
    t = math.tanh(x)
    return dy * (1 - t * t)


# relu
@vectorize(_SIG1, **_OPTS)
def relu_f(x):  # pragma: no cover - compiled
    if x != x:  # noqa: PLR0124 - NaN propagates (math.isnan is not a select)
        return x
    return x if x > 0 else 0.0


@vectorize(_SIG1, **_OPTS)
def relu_d(x):  # pragma: no cover - compiled
    return 0.0 if x <= 0 else 1.0


@vectorize(_SIG2, **_OPTS)
def relu_b(x, dy):  # pragma: no cover - compiled
    return 0.0 if x <= 0 else dy


# leaky_relu(negative_slope)
@vectorize(_SIG2, **_OPTS)
def leaky_relu_f(x, slope):  # pragma: no cover - compiled
    return x if x > 0 else x * slope


@vectorize(_SIG2, **_OPTS)
def leaky_relu_d(x, slope):  # pragma: no cover - compiled
    return 1.0 if x > 0 else slope


@vectorize(_SIG3, **_OPTS)
def leaky_relu_b(x, dy, slope):  # pragma: no cover - compiled
    return dy if x > 0 else dy * slope


# elu(alpha), selu
@vectorize(_SIG2, **_OPTS)
def elu_f(x, alpha):  # pragma: no cover - compiled
    return x if x > 0 else alpha * math.expm1(min(x, 0.0))


@vectorize(_SIG2, **_OPTS)
def elu_d(x, alpha):  # pragma: no cover - compiled
    return alpha * math.exp(min(x, 0.0)) if x <= 0 else 1.0


@vectorize(_SIG3, **_OPTS)
def elu_b(x, dy, alpha):  # pragma: no cover - compiled
    return dy * (alpha * math.exp(min(x, 0.0))) if x <= 0 else dy


# softplus(beta, threshold)
@vectorize(_SIG3, **_OPTS)
def softplus_f(x, beta, threshold):  # pragma: no cover - compiled
    bx = x * beta
    return x if bx > threshold else math.log1p(math.exp(min(bx, threshold))) / beta


@vectorize(_SIG3, **_OPTS)
def softplus_d(x, beta, threshold):  # pragma: no cover - compiled
    bx = x * beta
    return 1.0 if bx > threshold else _sig(bx)


@vectorize(_SIG4, **_OPTS)
def softplus_b(x, dy, beta, threshold):  # pragma: no cover - compiled
    bx = x * beta
    return dy if bx > threshold else dy * _sig(bx)


# gelu (exact) and gelu (tanh)
@vectorize(_SIG1, **_OPTS)
def gelu_f(x):  # pragma: no cover - compiled
    return x * 0.5 * (1 + math.erf(x * _SQRT1_2))


@vectorize(_SIG1, **_OPTS)
def gelu_d(x):  # pragma: no cover - compiled
    return 0.5 * (1 + math.erf(x * _SQRT1_2)) + x * (math.exp(-0.5 * x * x) * _INV_SQRT_2PI)


@vectorize(_SIG2, **_OPTS)
def gelu_b(x, dy):  # pragma: no cover - compiled
    d = 0.5 * (1 + math.erf(x * _SQRT1_2)) + x * (math.exp(-0.5 * x * x) * _INV_SQRT_2PI)
    return dy * d


@vectorize(_SIG1, **_OPTS)
def gelu_tanh_f(x):  # pragma: no cover - compiled
    return 0.5 * x * (1 + math.tanh(_BETA * (x + _KAPPA * x * x * x)))


@vectorize(_SIG1, **_OPTS)
def gelu_tanh_d(x):  # pragma: no cover - compiled
    x_sq = x * x
    t = math.tanh(_BETA * (x + _KAPPA * x_sq * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _BETA * (1 + 3 * _KAPPA * x_sq)


@vectorize(_SIG2, **_OPTS)
def gelu_tanh_b(x, dy):  # pragma: no cover - compiled
    x_sq = x * x
    t = math.tanh(_BETA * (x + _KAPPA * x_sq * x))
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _BETA * (1 + 3 * _KAPPA * x_sq))


# silu
@vectorize(_SIG1, **_OPTS)
def silu_f(x):  # pragma: no cover - compiled
    return x * _sig(x)


@vectorize(_SIG1, **_OPTS)
def silu_d(x):  # pragma: no cover - compiled
    s = _sig(x)
    return s * (1 + x * (1 - s))


@vectorize(_SIG2, **_OPTS)
def silu_b(x, dy):  # pragma: no cover - compiled
    s = _sig(x)
    return dy * (s * (1 + x * (1 - s)))


# softmax / log_softmax over the last axis of a 2-D C-contiguous array
@njit(cache=True)
def _softmax_rows(x, out, log):  # pragma: no cover - compiled
    n, m = x.shape
    for i in range(n):
        mx = -np.inf
        for j in range(m):
            mx = max(mx, x[i, j])
        s = 0.0
        if log:
            for j in range(m):
                s += math.exp(x[i, j] - mx)
            ls = math.log(s)
            for j in range(m):
                out[i, j] = (x[i, j] - mx) - ls
        else:  # exp once per element (it is a scalar libm call), kept in out, then scaled
            for j in range(m):
                e = math.exp(x[i, j] - mx)
                out[i, j] = e
                s += e
            for j in range(m):
                out[i, j] = out[i, j] / s


# Fused forward + backward: one pass, the function evaluated once per element, both outputs
# written. Each body repeats its forward and VJP ufuncs above expression for expression, so
# the results are the same bits (tests/test_activations_losses.py checks it). elu, selu and
# gelu(tanh) are not fused: their forward and backward evaluate different expressions.
# Plain loops over flat arrays, not scalar-core gufuncs: the gufunc machinery's per-element
# call made relu's fused pass 4x slower than its two vectorised ufuncs.
_FB_OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy"}


@njit(**_FB_OPTS)
def sigmoid_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        s = _sig(x[i])
        y[i] = s
        dx[i] = dy[i] * (s * (1 - s))


@njit(**_FB_OPTS)
def tanh_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        t = math.tanh(x[i])
        y[i] = t
        dx[i] = dy[i] * (1 - t * t)


@njit(**_FB_OPTS)
def relu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        if xi != xi:  # noqa: PLR0124 - NaN propagates
            y[i] = xi
        else:
            y[i] = xi if xi > 0 else 0.0
        dx[i] = 0.0 if xi <= 0 else dy[i]


@njit(**_FB_OPTS)
def leaky_relu_fb(x, dy, y, dx, slope):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        y[i] = xi if xi > 0 else xi * slope
        dx[i] = dy[i] if xi > 0 else dy[i] * slope


@njit(**_FB_OPTS)
def softplus_fb(x, dy, y, dx, beta, threshold):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        bx = xi * beta
        y[i] = xi if bx > threshold else math.log1p(math.exp(min(bx, threshold))) / beta
        dx[i] = dy[i] if bx > threshold else dy[i] * _sig(bx)


@njit(**_FB_OPTS)
def gelu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        e = math.erf(xi * _SQRT1_2)
        y[i] = xi * 0.5 * (1 + e)
        dx[i] = dy[i] * (0.5 * (1 + e) + xi * (math.exp(-0.5 * xi * xi) * _INV_SQRT_2PI))


@njit(**_FB_OPTS)
def silu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        s = _sig(xi)
        y[i] = xi * s
        dx[i] = dy[i] * (s * (1 + xi * (1 - s)))


@njit(cache=True)
def _softmax_fb_rows(x, dy, y, dx, log):  # pragma: no cover - compiled
    n, m = x.shape
    _softmax_rows(x, y, log)
    for i in range(n):
        s = 0.0
        if log:
            for j in range(m):
                s += dy[i, j]
            for j in range(m):
                dx[i, j] = dy[i, j] - math.exp(y[i, j]) * s
        else:
            for j in range(m):
                s += dy[i, j] * y[i, j]
            for j in range(m):
                dx[i, j] = y[i, j] * (dy[i, j] - s)


_FUSED = {"sigmoid", "tanh", "relu", "leaky_relu", "softplus", "gelu", "silu"}


def _rows(x: np.ndarray, dim: int) -> tuple[np.ndarray, Any]:
    moved = np.moveaxis(x, dim, -1)
    shape = moved.shape
    flat = np.ascontiguousarray(moved).reshape(-1, shape[-1] if shape else 1)
    return flat, lambda r: np.moveaxis(r.reshape(shape), -1, dim)


def _ufuncs(name: str, params: dict[str, Any]) -> tuple[Any, Any, Any, tuple[Any, ...]]:
    g = globals()
    if name == "selu":
        return None, None, None, ()
    key = "gelu_tanh" if name == "gelu" and params.get("approximate") == "tanh" else name
    extra: tuple[Any, ...] = {
        "leaky_relu": lambda p: (p["negative_slope"],), "elu": lambda p: (p["alpha"],),
        "softplus": lambda p: (p["beta"], p["threshold"]),
    }.get(name, lambda p: ())(params)
    return g[f"{key}_f"], g[f"{key}_d"], g[f"{key}_b"], extra


def forward(name: str, x: np.ndarray, **params: Any) -> np.ndarray:
    if name in ("softmax", "log_softmax"):
        rows, back = _rows(x, params["dim"])
        out = np.empty_like(rows)
        _softmax_rows(rows, out, name == "log_softmax")
        return np.ascontiguousarray(back(out))
    if name == "selu":
        return SELU_SCALE * elu_f(x, x.dtype.type(SELU_ALPHA))
    f, _, _, extra = _ufuncs(name, params)
    return f(x, *(x.dtype.type(e) for e in extra))


def derivative(name: str, x: np.ndarray, **params: Any) -> np.ndarray:
    if name == "selu":
        return SELU_SCALE * elu_d(x, x.dtype.type(SELU_ALPHA))
    _, d, _, extra = _ufuncs(name, params)
    return d(x, *(x.dtype.type(e) for e in extra))


def backward(name: str, x: np.ndarray, dy: np.ndarray, **params: Any) -> np.ndarray:
    if name in ("softmax", "log_softmax"):
        rows, back = _rows(x, params["dim"])
        drows, _ = _rows(dy, params["dim"])
        out = np.empty_like(rows)
        # the fused kernel with y and dx in one array: each element of y is read before its
        # dx overwrites it
        _softmax_fb_rows(rows, drows, out, out, name == "log_softmax")
        return np.ascontiguousarray(back(out))
    if name == "selu":
        return elu_b(x, dy * x.dtype.type(SELU_SCALE), x.dtype.type(SELU_ALPHA))
    _, _, b, extra = _ufuncs(name, params)
    return b(x, dy, *(x.dtype.type(e) for e in extra))


def forward_backward(name: str, x: np.ndarray, dy: np.ndarray, **params: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(forward(...), backward(...))``, fused where the two share their work (see above)."""
    if name in ("softmax", "log_softmax"):
        rows, back = _rows(x, params["dim"])
        drows, _ = _rows(dy, params["dim"])
        y, dx = np.empty_like(rows), np.empty_like(rows)
        _softmax_fb_rows(rows, drows, y, dx, name == "log_softmax")
        return np.ascontiguousarray(back(y)), np.ascontiguousarray(back(dx))
    if name not in _FUSED or (name == "gelu" and params.get("approximate") == "tanh"):
        return forward(name, x, **params), backward(name, x, dy, **params)
    _, _, _, extra = _ufuncs(name, params)
    xf = np.ascontiguousarray(x).reshape(-1)
    dyf = np.ascontiguousarray(dy).reshape(-1)
    y, dx = np.empty_like(xf), np.empty_like(xf)
    globals()[f"{name}_fb"](xf, dyf, y, dx, *(x.dtype.type(e) for e in extra))
    return y.reshape(x.shape), dx.reshape(x.shape)
