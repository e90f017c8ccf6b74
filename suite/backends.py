"""Backend names, the checks every kernel applies to its inputs, and conversion to tensors.

Three backends implement every kernel in gradsuite:

``numpy``  the readable reference, NumPy arrays, float32 or float64.
``numba``  compiled loops over the same arrays (no fastmath where results are cross-validated).
``torch``  the same formulas on tensors, on any device torch has (``cpu``, ``cuda``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BACKENDS: tuple[str, ...] = ("numpy", "numba", "torch")


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is known, else raise ValueError listing the valid names."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def to_torch(x: Any, device: str = "cpu") -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(device)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def check_array(x: Any, backend: str, what: str,
                numpy_dtypes: Sequence[str] = ("float32", "float64")) -> None:
    """``x`` is an array of ``backend``'s kind with a floating dtype it supports."""
    if backend == "torch":
        import torch

        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} is a {type(x).__name__}; the torch backend expects "
                            "torch.Tensor")
        if not x.is_floating_point():
            raise TypeError(f"{what} has dtype {x.dtype}; expected a floating dtype")
        return
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} is a {type(x).__name__}; the {backend} backend expects "
                        "numpy.ndarray")
    if x.dtype.name not in numpy_dtypes:
        raise TypeError(f"{what} has dtype {x.dtype}; the {backend} backend supports "
                        f"{', '.join(numpy_dtypes)}")


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
