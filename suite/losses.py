"""Losses with their gradients with respect to the input, in NumPy, Numba and torch.

>>> loss = losses.get("cross_entropy", backend="numpy", label_smoothing=0.1)
>>> loss.value(logits, target, reduction="mean")
>>> loss.grad(logits, target, reduction="mean")      # dL/dlogits, same shape as logits

Semantics follow ``torch.nn.functional``: reductions ``mean``, ``sum``, ``none``; cross_entropy
and nll take (N, C) or (C,) inputs and class indices (int, ``ignore_index=-100`` skipped and
excluded from the mean) or, for cross_entropy, class probabilities; binary_cross_entropy clamps
its logs at -100 as torch does and its gradient divides by max(p(1-p), 1e-12); kl_div takes
log-probabilities as input (``log_target`` as torch) and supports ``batchmean``; ``entropy`` is
-Σ p log p over the last axis (0 log 0 = 0), target unused.

The Numba backend runs the NumPy formulas, with its compiled (log-)softmax row kernels for the
softmax-based losses; the torch backend runs the same formulas on tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from suite import activations
from suite.backends import check_array, check_backend

REDUCTIONS = ("mean", "sum", "none")
_BCE_EPS = float(np.float32(1e-12))


def _ns(x: Any) -> Any:
    return np if isinstance(x, np.ndarray | np.generic) else __import__("torch")


def _log_softmax(x: Any, backend: str) -> Any:
    return activations.get("log_softmax", backend=backend, dim=-1).forward(x)


def _size(a: Any) -> Any:
    """The element count of a torch tensor, or of a NumPy array or scalar (a sum over the
    last axis of a 1-d array is a NumPy scalar)."""
    return a.numel() if hasattr(a, "numel") else np.size(a)


def _reduce(per: Any, reduction: str, count: Any = None) -> Any:
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    return total / (_size(per) if count is None else count)


def _scale(reduction: str, n: Any) -> Any:
    return 1.0 / n if reduction == "mean" else 1.0


def _xlogy(xp: Any, x: Any, y: Any) -> Any:
    if xp is np:
        from scipy.special import xlogy

        return xlogy(x, y)
    return xp.special.xlogy(x, y)


def _onehot(xp: Any, target: Any, like: Any) -> Any:
    if xp is np:
        out = np.zeros(like.shape, dtype=like.dtype)
        safe = np.where(target < 0, 0, target)
        np.put_along_axis(out, safe[..., None], 1.0, axis=-1)
        return out
    out = xp.zeros_like(like)
    return out.scatter(-1, target.clamp_min(0)[..., None], 1.0)


def _is_index_target(t: Any) -> bool:
    if isinstance(t, np.ndarray):
        return bool(np.issubdtype(t.dtype, np.integer))
    return not t.is_floating_point()


def _check_indices(input: Any, target: Any, ignore_index: int) -> None:
    c = input.shape[-1]
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise ValueError(f"target has shape {tuple(target.shape)}; expected "
                         f"{tuple(input.shape[:-1])} for input of shape {tuple(input.shape)}")
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= c))
    if bool(bad.any()):
        first = int(target[bad].reshape(-1)[0])
        raise IndexError(f"Target {first} is out of bounds: expected class indices in [0, {c})"
                         f" or ignore_index={ignore_index}")


# ---- value and gradient of each loss ------------------------------------------------------

def _mse(x: Any, t: Any, reduction: str, backend: str) -> tuple[Any, Any]:
    d = x - t
    return _reduce(d * d, reduction), 2 * d * _scale(reduction, _size(d))


def _cross_entropy(x: Any, t: Any, reduction: str, backend: str, *, label_smoothing: float,
                   ignore_index: int) -> tuple[Any, Any]:
    xp = _ns(x)
    c = x.shape[-1]
    lsm = _log_softmax(x, backend)
    sm = xp.exp(lsm)
    eps = label_smoothing
    if _is_index_target(t):
        _check_indices(x, t, ignore_index)
        valid = t != ignore_index
        oh = _onehot(xp, t, x)
        q = oh * (1 - eps) + eps / c
        per = -(q * lsm).sum(-1)
        vf = valid.astype(x.dtype) if xp is np else valid.to(x.dtype)
        per = per * vf
        n = vf.sum()
        value = _reduce(per, reduction, count=n)
        g = (sm - q) * vf[..., None]
        return value, g * _scale(reduction, n)
    if tuple(t.shape) != tuple(x.shape):
        raise ValueError(f"probability target has shape {tuple(t.shape)}; expected "
                         f"{tuple(x.shape)}")
    q = t * (1 - eps) + eps / c
    per = -(q * lsm).sum(-1)
    return _reduce(per, reduction), (sm * q.sum(-1, keepdims=True) - q) * _scale(reduction,
                                                                                _size(per))


def _nll(x: Any, t: Any, reduction: str, backend: str, *, ignore_index: int
         ) -> tuple[Any, Any]:
    xp = _ns(x)
    if not _is_index_target(t):
        raise TypeError("nll target must hold integer class indices")
    _check_indices(x, t, ignore_index)
    valid = t != ignore_index
    oh = _onehot(xp, t, x)
    vf = valid.astype(x.dtype) if xp is np else valid.to(x.dtype)
    per = -(oh * x).sum(-1) * vf
    n = vf.sum()
    return _reduce(per, reduction, count=n), -oh * vf[..., None] * _scale(reduction, n)


def _bce(p: Any, t: Any, reduction: str, backend: str) -> tuple[Any, Any]:
    xp = _ns(p)
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1")
    log_p = xp.log(p)
    log_1mp = xp.log1p(-p)
    lo = -100.0
    log_p = xp.where(log_p < lo, xp.full_like(p, lo), log_p)
    log_1mp = xp.where(log_1mp < lo, xp.full_like(p, lo), log_1mp)
    per = -(t * log_p + (1 - t) * log_1mp)
    denom = (1 - p) * p
    eps = _BCE_EPS  # torch's EPSILON is the float 1e-12f
    denom = xp.where(denom < eps, xp.full_like(p, eps), denom)
    return _reduce(per, reduction), (p - t) / denom * _scale(reduction, _size(per))


def _bce_logits(x: Any, t: Any, reduction: str, backend: str) -> tuple[Any, Any]:
    xp = _ns(x)
    # (1 - t) x + log(1 + e^{-x}), written so that no exp overflows
    per = (1 - t) * x + xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, xp.zeros_like(x))
    return _reduce(per, reduction), (activations.sigmoid(x) - t) * _scale(reduction, _size(per))


def _kl_div(x: Any, t: Any, reduction: str, backend: str, *, log_target: bool
            ) -> tuple[Any, Any]:
    xp = _ns(x)
    if log_target:
        et = xp.exp(t)
        per, g = et * (t - x), -et
    else:
        per, g = _xlogy(xp, t, t) - t * x, -t
    if reduction == "batchmean":
        b = x.shape[0] if x.ndim > 0 else 1  # torch: input.size(0) unless 0-dim
        return per.sum() / b, g / b
    return _reduce(per, reduction), g * _scale(reduction, _size(per))


def _entropy(p: Any, t: Any, reduction: str, backend: str) -> tuple[Any, Any]:
    xp = _ns(p)
    per = -_xlogy(xp, p, p)
    per = per.sum(-1)
    g = -(xp.log(p) + 1)  # +inf at p = 0, silently: Loss._run ignores floating-point errors
    return _reduce(per, reduction), g * _scale(reduction, _size(per))


@dataclass(frozen=True)
class LossSpec:
    name: str
    fn: Callable[..., tuple[Any, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)
    reductions: tuple[str, ...] = REDUCTIONS

    def torch_value(self, input: Any, target: Any, reduction: str, **params: Any) -> Any:
        """torch.nn.functional's value of this loss (autograd-able)."""
        import torch
        import torch.nn.functional as F

        if self.name == "mse":
            return F.mse_loss(input, target, reduction=reduction)
        if self.name == "entropy":
            per = -torch.special.xlogy(input, input).sum(-1)
            return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
        fn = getattr(F, self.name)
        with warnings.catch_warnings():  # kl_div's 'mean' is deliberate: it mirrors torch's
            warnings.filterwarnings("ignore", message="reduction: 'mean' divides",
                                    category=UserWarning)
            return fn(input, target, reduction=reduction, **params)


LOSSES: dict[str, LossSpec] = {
    "mse": LossSpec("mse", _mse),
    "cross_entropy": LossSpec("cross_entropy", _cross_entropy,
                              {"label_smoothing": 0.0, "ignore_index": -100}),
    "nll": LossSpec("nll_loss", _nll, {"ignore_index": -100}),
    "binary_cross_entropy": LossSpec("binary_cross_entropy", _bce),
    "binary_cross_entropy_with_logits": LossSpec("binary_cross_entropy_with_logits",
                                                 _bce_logits),
    "kl_div": LossSpec("kl_div", _kl_div, {"log_target": False},
                       (*REDUCTIONS, "batchmean")),
    "entropy": LossSpec("entropy", _entropy),
}
NAMES = tuple(LOSSES)


def _check_pair(input: Any, target: Any, backend: str, name: str) -> None:
    check_array(input, backend, "input")
    if name in ("cross_entropy", "nll", "entropy"):
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: input has shape {tuple(input.shape)}; expected (N, C) "
                             "or (C,)")
        return
    if target is not None and tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{name}: target has shape {tuple(target.shape)} but input has shape "
                         f"{tuple(input.shape)}")
    if target is not None and target.dtype != input.dtype:
        raise ValueError(f"{name}: target has dtype {target.dtype} but input has dtype "
                         f"{input.dtype}")


@dataclass(frozen=True)
class Loss:
    spec: LossSpec
    key: str
    backend: str
    params: dict[str, Any]

    def _run(self, input: Any, target: Any, reduction: str) -> tuple[Any, Any]:
        if reduction not in self.spec.reductions:
            raise ValueError(f"{self.key}: reduction={reduction!r}; expected one of "
                             f"{', '.join(self.spec.reductions)}")
        _check_pair(input, target, self.backend, self.key)
        with np.errstate(all="ignore"):  # NaN propagates like torch, silently
            if self.backend == "torch":
                import torch

                with torch.no_grad():
                    return self.spec.fn(input, target, reduction, self.backend, **self.params)
            return self.spec.fn(input, target, reduction, self.backend, **self.params)

    def value(self, input: Any, target: Any = None, reduction: str = "mean") -> Any:
        return self._run(input, target, reduction)[0]

    def grad(self, input: Any, target: Any = None, reduction: str = "mean") -> Any:
        """dL/dinput (for ``reduction='none'``: the gradient of the sum of the elements)."""
        return self._run(input, target, reduction)[1]

    def torch_value(self, input: Any, target: Any, reduction: str = "mean") -> Any:
        return self.spec.torch_value(input, target, reduction, **self.params)


def get(name: str, backend: str = "numpy", **params: Any) -> Loss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(NAMES)}")
    check_backend(backend)
    spec = LOSSES[name]
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise TypeError(f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(spec.defaults) or 'none'}")
    full = {**spec.defaults, **params}
    if "label_smoothing" in full and not 0.0 <= full["label_smoothing"] <= 1.0:
        raise ValueError(f"label_smoothing={full['label_smoothing']}; expected a value in "
                         "[0, 1]")
    return Loss(spec, name, backend, full)
