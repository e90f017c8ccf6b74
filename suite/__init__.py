"""gradsuite: reference implementations, conformance checks, benchmarks and behaviour studies
for optimizers and activations.

Public API: ``suite.optim`` (update rules in NumPy, Numba and torch), ``suite.conformance``
(check any torch.optim-style optimizer), ``suite.activations``, ``suite.losses``,
``suite.problems`` and ``suite.studies``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gradsuite")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
