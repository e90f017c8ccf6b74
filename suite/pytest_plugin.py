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

``optimizer_benchmark`` times your optimizer's step with pytest-benchmark beside torch.optim's
implementation of the reference you name, in one group (each test using it runs twice: once
for ``yours``, once for ``torch.optim``)::

    def test_lion_step(optimizer_benchmark):
        optimizer_benchmark(Lion, reference="adam", size=1 << 20, lr=1e-4)

    pytest --benchmark-only --benchmark-group-by=group

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


@pytest.fixture(params=["yours", "torch.optim"])
def optimizer_benchmark(request: pytest.FixtureRequest, benchmark: Any) -> Callable[..., Any]:
    """Call with ``(optimizer, reference=None, size=2**20, dtype="float32", impl=None,
    **hyper)``: benchmarks one step on one tensor of ``size`` elements, of your optimizer
    (anything ``suite.subjects.resolve`` accepts) or, in the ``torch.optim`` run, of
    torch.optim's ``reference`` twin (``impl``: forloop, foreach, fused; None: the fastest
    here). Both land in the group ``optimizer step: <reference>, <size> x <dtype>``;
    ``extra_info`` holds the side, the implementation, the bytes a step moves (yours: from
    its state after one step) and the thread counts. Without ``reference`` the torch.optim
    run is skipped."""
    side = request.param

    def run(optimizer: Any, reference: str | None = None, size: int = 1 << 20,
            dtype: str = "float32", impl: str | None = None, **hyper: Any) -> Any:
        from suite import bench
        from suite.subjects import resolve
        from suite.sweep import thread_counts

        sub = resolve(optimizer, reference=reference)
        ref = sub.reference
        benchmark.group = f"optimizer step: {ref or sub.name}, {size} x {dtype}"
        benchmark.extra_info.update({"side": side, "size": size, "dtype": dtype,
                                     **thread_counts()})
        if side == "yours":
            step, info = bench.subject_step(sub, size, dtype, **hyper)
            benchmark.extra_info.update({"implementation": f"yours: {sub.name}",
                                         "bytes": info["bytes"]})
        else:
            if ref is None:
                pytest.skip("name reference= to benchmark torch.optim's step beside yours")
            step, chosen = bench.torch_reference_step(ref, size, dtype, impl, **hyper)
            benchmark.extra_info.update({
                "implementation": f"torch.optim-{chosen}",
                "bytes": bench.bytes_per_element(ref, {"lr": 1e-3} | hyper,
                                                 int(dtype[-2:]) // 8) * size})
        return benchmark(step)

    return run

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
