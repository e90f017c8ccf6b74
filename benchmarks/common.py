"""Shared set-up for the asv benchmarks: pinned threads, guarded imports.

Benchmarks run against older commits too: anything a commit lacks raises NotImplementedError
in ``setup``, which asv records as skipped, instead of breaking discovery of the whole suite.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def pin_threads():
    try:
        import torch

        torch.set_num_threads(1)
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
