"""pytest plugin (entry point ``pytest11``): check your own optimizer in one line.

Registered automatically when gradsuite is installed::

    def test_my_adam(optimizer_conformance):
        optimizer_conformance(MyAdam, reference="adam")
        optimizer_conformance("mypkg.optim:MySGD", "sgd", rename={"momentum": "beta"})

The fixture runs :func:`suite.conformance.check_optimizer` with the same keywords and, if the
optimizer disagrees with the reference, fails the test with the verdict: for each failing
configuration, the probe, dtype, first diverging step, quantity, error and values, and the
catalogued variants consistent with it. ``strict_state=True`` also fails on a state that does
not mean what torch.optim's does.

``activation_conformance`` does the same for an activation (a torch callable, an ``nn.Module``,
an ``autograd.Function`` or a NumPy ``(forward, backward)`` pair)::

    def test_my_gelu(activation_conformance):
        activation_conformance(my_gelu, reference="gelu")

pytest-benchmark (installed beside gradsuite for its own benchmarks) creates its storage
directory ``.benchmarks/`` in the current directory at every pytest start, whether or not
anything is saved. Where that directory did not exist before the session and is still empty
at its end, this plugin removes it again: storage appears in a project only when asked for
(``--benchmark-autosave``, ``--benchmark-save``, ``--benchmark-storage``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_STORAGE_KEY = pytest.StashKey[Path | None]()


def _default_storage(config: pytest.Config) -> Path | None:
    """pytest-benchmark's file storage directory for this session, or None (not installed,
    or not file storage)."""
    try:
        storage = config.getoption("benchmark_storage")
    except ValueError:  # pytest-benchmark is not installed
        return None
    if not isinstance(storage, str):
        return None
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    elif "://" in storage:
        return None
    return Path(storage).expanduser().absolute()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-benchmark creates its storage: note whether it exists already."""
    path = _default_storage(config)
    config.stash[_STORAGE_KEY] = path if path is not None and not path.exists() else None


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the storage pytest-benchmark created if nothing was saved in it."""
    path = config.stash.get(_STORAGE_KEY, None)
    if path is None or not path.is_dir():
        return
    dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    if any(p.is_file() for p in path.rglob("*")):
        return
    for d in [*dirs, path]:
        try:
            d.rmdir()
        except OSError:
            return


@pytest.fixture
def optimizer_conformance() -> Callable[..., Any]:
    """Call with ``(optimizer, reference, **check_optimizer_keywords)`` (``rename=``,
    ``extra_kwargs=``, ``strict_state=``, ``configs=``, ``dtypes=``, ...); fails the test on a
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
