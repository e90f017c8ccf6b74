"""The reference rules on torch tensors, on any device (CPU, CUDA).

These are the functions of :mod:`suite.optim.numpy_ref` themselves, run on tensors under
``torch.no_grad()``: the maths exists once, and the NumPy and torch backends cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import torch

from suite.optim import numpy_ref


def _no_grad(rule: Callable[..., None]) -> Callable[..., None]:
    @wraps(rule)
    def run(p: torch.Tensor, g: torch.Tensor, st: dict[str, Any], **hyper: Any) -> None:
        with torch.no_grad():
            rule(p, g, st, **hyper)

    return run


RULES = {name: _no_grad(rule) for name, rule in numpy_ref.RULES.items()}
