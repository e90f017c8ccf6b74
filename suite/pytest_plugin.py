"""pytest plugin (entry point ``pytest11``): check your own optimizer in one line.

Registered automatically when gradsuite is installed::

    def test_my_adam(optimizer_conformance):
        optimizer_conformance(MyAdam, reference="adam")

The fixture runs :func:`suite.conformance.check_optimizer` with the same keywords and, if the
optimizer disagrees with the reference, fails the test with the verdict: for each failing
configuration, the probe, dtype, first diverging step, quantity, error and values.

``activation_conformance`` does the same for an activation (a torch callable, an ``nn.Module``,
an ``autograd.Function`` or a NumPy ``(forward, backward)`` pair)::

    def test_my_gelu(activation_conformance):
        activation_conformance(my_gelu, reference="gelu")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def optimizer_conformance() -> Callable[..., Any]:
    """Call with ``(optimizer, reference, **check_optimizer_keywords)``; fails the test on a
    disagreement and returns the :class:`~suite.conformance.ConformanceResult` otherwise."""
    from suite.conformance import check_optimizer

    def check(optimizer: Any, reference: str, **kwargs: Any) -> Any:
        result = check_optimizer(optimizer, reference=reference, **kwargs)
        if not result.passed:
            pytest.fail(str(result), pytrace=False)
        return result

    return check


@pytest.fixture
def activation_conformance() -> Callable[..., Any]:
    """Call with ``(fn, reference, **check_activation_keywords)``; fails the test with the
    diagnosis when ``fn`` is off the exact values by more than torch's own error allows, and
    returns the :class:`~suite.conformance.ActivationResult` otherwise."""
    from suite.conformance import check_activation

    def check(fn: Any, reference: str, **kwargs: Any) -> Any:
        result = check_activation(fn, reference=reference, **kwargs)
        if not result.passed:
            pytest.fail(str(result), pytrace=False)
        return result

    return check
