"""Shared set-up for the asv benchmarks: pinned threads, guarded imports.

Benchmarks run against older commits too: anything a commit lacks raises NotImplementedError
in ``setup``, which asv records as skipped, instead of breaking discovery of the whole suite.
"""

import contextlib
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Numba may use every core (benchmarks with a ``threads`` parameter use them); every setup pins
# the count it measures at with ``pin_threads``.
os.environ.setdefault("NUMBA_NUM_THREADS", str(len(os.sched_getaffinity(0))))

# Import the heavy modules once, at discovery: under ``--launch-method forkserver`` every
# benchmark process is forked from a server that already holds them (torch, Numba and the
# package take ~3 s to import, longer than most benchmarks run). Guarded, so that a commit
# lacking one of them still discovers every benchmark; ``need`` then skips what is missing.
for _mod in ("torch", "numba", "suite.optim", "suite.activations", "suite.bench",
             "suite.studies.convergence", "suite.studies.gradstats", "suite.tasks",
             "suite.studies.training"):
    with contextlib.suppress(Exception):  # a failure here only means "skip it later"
        __import__(_mod)


def all_threads():
    """The thread count the ``"all"`` parameter means: every core Numba may use."""
    try:
        import numba

        return int(numba.config.NUMBA_NUM_THREADS)
    except ImportError:
        return 1


def pin_threads(n=1):
    """Numba first, then torch: starting Numba's OpenMP layer resets the runtime's count."""
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def need(module, attr=None):
    """Import ``module`` (and check ``attr``) or raise NotImplementedError (asv: skipped)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise NotImplementedError(f"{module} not available at this commit") from exc
    if attr is not None and not hasattr(mod, attr):
        raise NotImplementedError(f"{module}.{attr} not available at this commit")
    return mod
