"""Backend names, availability and conversion between NumPy arrays and torch tensors.

Three backends implement every kernel in gradsuite:

``numpy``  the readable reference, NumPy arrays, float32 or float64.
``numba``  compiled loops over the same arrays (no fastmath where results are cross-validated).
``torch``  the same formulas on tensors, on any device torch has (``cpu``, ``cuda``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

BACKENDS: tuple[str, ...] = ("numpy", "numba", "torch")
FLOAT_DTYPES_NUMPY = (np.dtype(np.float32), np.dtype(np.float64))


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is known, else raise ValueError listing the valid names."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def devices() -> list[str]:
    """Devices the torch backend can run on here."""
    return ["cpu", "cuda"] if cuda_available() else ["cpu"]


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy (or view, on CPU) of an array or tensor."""
    if isinstance(x, np.ndarray):
        return x
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_torch(x: Any, device: str = "cpu") -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(device)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def check_hyper_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name} value: {value} (expected a finite number)")


def describe(x: Any) -> str:
    shape = tuple(getattr(x, "shape", ()))
    return f"{type(x).__name__}(shape={shape}, dtype={getattr(x, 'dtype', '?')})"


def check_pairs(params: Sequence[Any], grads: Sequence[Any]) -> None:
    """Params and grads: same count, and each grad has its parameter's shape and dtype."""
    if len(params) != len(grads):
        raise ValueError(f"got {len(params)} parameters but {len(grads)} gradients")
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if g is None:
            continue
        if tuple(p.shape) != tuple(g.shape):
            raise ValueError(
                f"gradient {i} has shape {tuple(g.shape)} but its parameter has shape "
                f"{tuple(p.shape)}"
            )
        if p.dtype != g.dtype:
            raise ValueError(
                f"gradient {i} has dtype {g.dtype} but its parameter has dtype {p.dtype}"
            )
        if type(p) is not type(g):
            raise TypeError(
                f"gradient {i} is a {type(g).__name__} but its parameter is a {type(p).__name__}"
            )
