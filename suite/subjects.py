"""What is under study: a reference rule or a user's optimizer, as one kind of object.

Every study, benchmark and check takes an :class:`OptimizerSubject`. :func:`resolve` makes one
from whatever a user passes:

>>> resolve("adam", backend="numba", lr=1e-2)        # a gradsuite reference rule (or alias)
>>> resolve(torch.optim.Adam, lr=1e-2)               # a torch.optim.Optimizer subclass
>>> resolve(lambda params, **h: Lion(params, **h))   # a factory (params, **hyper) -> optimizer
>>> resolve("mypackage.optim:Lion", name="lion")     # an import path 'module:Class'
>>> resolve(subject, lr=3e-4)                        # an existing subject, hyper overridden

Whatever it came from, ``subject.make(params, **hyper)`` builds an object with torch.optim's
interface (``step()``, ``zero_grad()``, ``param_groups``, ``state``). A reference rule is wrapped
in :class:`RuleOptimizer`, a real ``torch.optim.Optimizer`` that runs the rule's NumPy, Numba or
torch kernels in place on the tensors' memory, so a reference and a user's optimizer go through
exactly the same code in every study. Studies that have a faster path for reference rules (the
batched Numba convergence runner) ask for it with :meth:`OptimizerSubject.rule`, which is
``None`` for anything that is not a reference: a capability, not a type test.

Hyperparameters are named as the optimizer names them. ``rename`` maps torch.optim's names (the
ones studies pass, e.g. ``lr``) to the optimizer's own (``{"lr": "learning_rate"}``).

Subjects pickle (for process pools and Dask workers): a reference by its name, a subject made
from an import path by that path (the worker imports it: the module must be importable there,
as an installed package or on the workers' ``sys.path``), a class or factory by pickle's usual
rules (module-level objects by reference; lambdas and local functions cannot be sent).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from suite import optim
from suite.backends import check_backend

KINDS = ("reference", "class", "factory")


def load_object(path: str) -> Any:
    """``package.module:attr`` (or ``package.module.attr``) -> the object; ImportError if not."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ImportError(f"{path!r} is not an import path like 'package.module:MyOptimizer'")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module!r} (from {path!r}): {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportError(f"module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def add_cwd_to_path() -> str | None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does.

    Returns the directory if it was added (so a command can say so), else None.
    """
    cwd = str(Path.cwd())
    if cwd in sys.path or "" in sys.path:
        return None
    sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    return cwd


def is_import_path(text: str) -> bool:
    """``'module:attr'`` (or a dotted path) rather than a reference name."""
    return ":" in text or ("." in text and not text.replace(".", "").isdigit())


# ---- references as torch.optim optimizers -------------------------------------------------


@functools.cache
def _rule_optimizer_cls() -> type:
    import numpy as np
    import torch

    class _RuleOptimizer(torch.optim.Optimizer):
        """A gradsuite reference rule behind torch.optim's interface.

        Each param group gets the rule with the group's hyperparameters (validated like
        torch.optim); ``param_groups[i]["lr"]`` is read at every step, so torch's LR schedulers
        work. On the ``numpy`` and ``numba`` backends the kernels update the CPU tensors'
        memory in place through NumPy views (float32/float64, contiguous); ``state[p]`` holds
        tensors that share memory with the rule's arrays, under torch.optim's names.
        """

        def __init__(self, params: Any, reference: str = "adam", backend: str = "torch",
                     **hyper: Any) -> None:
            spec = optim.get_spec(reference)
            check_backend(backend)
            full = spec.resolve(**{**optim.alias_defaults(reference), **hyper})
            self.reference, self.backend = spec.name, backend
            super().__init__(params, full)
            self._rule_state: dict[Any, dict[str, Any]] = {}

        def _rule(self, group: dict[str, Any]) -> optim.Rule:
            hyper = {k: group[k] for k in self.defaults}
            return optim.get(self.reference, backend=self.backend, **hyper)

        def _view(self, t: torch.Tensor, what: str) -> Any:
            if self.backend == "torch":
                return t.detach()  # a plain tensor sharing the parameter's memory
            if t.device.type != "cpu":
                raise ValueError(f"the {self.backend} backend runs on CPU tensors; {what} is "
                                 f"on {t.device} (use backend='torch')")
            if not t.is_contiguous():
                raise ValueError(f"{what} is not contiguous; the {self.backend} backend "
                                 "updates its memory in place")
            return t.detach().numpy()

        @torch.no_grad()
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                rule = self._rule(group)
                ps = [p for p in group["params"] if p.grad is not None]
                if not ps:
                    continue
                arrays = [self._view(p, "a parameter") for p in ps]
                grads = [self._view(p.grad, "a gradient") for p in ps]
                states = []
                for p, a in zip(ps, arrays, strict=True):
                    if p not in self._rule_state:
                        self._rule_state[p] = rule.init([a])[0]
                    states.append(self._rule_state[p])
                rule.step(arrays, grads, states, lr=float(group["lr"]))
                for p, st in zip(ps, states, strict=True):
                    self.state[p] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray)
                                     else v for k, v in st.items()}
            return loss

    _RuleOptimizer.__name__ = _RuleOptimizer.__qualname__ = "RuleOptimizer"
    _RuleOptimizer.__module__ = __name__
    return _RuleOptimizer


def rule_optimizer(params: Any, reference: str, backend: str = "torch", **hyper: Any) -> Any:
    """A torch.optim.Optimizer running gradsuite's ``reference`` rule on ``backend``."""
    return _rule_optimizer_cls()(params, reference=reference, backend=backend, **hyper)


def __getattr__(name: str) -> Any:
    # ``suite.subjects.RuleOptimizer`` is built on first use, so that importing this module
    # does not import torch.
    if name == "RuleOptimizer":
        return _rule_optimizer_cls()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- the subject ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizerSubject:
    """One optimizer under study, whatever it came from.

    Attributes
    ----------
    name: display name (unique within a study; a column in every frame).
    factory: ``(params, **hyper) -> optimizer`` with torch.optim's interface.
    hyper: fixed hyperparameters, under the optimizer's own names (``make`` may override).
    kind: ``"reference"`` (a gradsuite rule), ``"class"`` or ``"factory"``.
    reference: the gradsuite rule it is (kind ``reference``), or the closest reference the user
        named for comparisons (conformance, speed against torch's implementation); else None.
    backend: numpy, numba or torch for references; None otherwise.
    import_path: ``'module:attr'`` if it was loaded from one (how workers re-import it).
    elementwise: each coordinate's update depends only on that coordinate's own gradient and
        state, so that independent problems may be batched into one tensor (the reference
        rules but Adafactor; a user's optimizer only if the user says so).
    rename: torch.optim's hyperparameter names -> the optimizer's (``{"momentum": "beta"}``).
    """

    name: str
    factory: Callable[..., Any]
    hyper: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "factory"
    reference: str | None = None
    backend: str | None = None
    import_path: str | None = None
    elementwise: bool = False
    rename: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {', '.join(KINDS)}")
        if not callable(self.factory):
            raise TypeError(f"optimizer {self.name!r}: factory must be callable, got "
                            f"{type(self.factory).__name__}")

    def hyperparameters(self, **hyper: Any) -> dict[str, Any]:
        """The keywords ``make`` passes: fixed ``hyper`` updated by ``hyper`` (renamed)."""
        out = dict(self.hyper)
        for key, value in hyper.items():
            out[self.rename.get(key, key)] = value
        return out

    def make(self, params: Any, **hyper: Any) -> Any:
        """A fresh optimizer over ``params``; ``hyper`` (torch.optim's names) overrides."""
        return self.factory(params, **self.hyperparameters(**hyper))

    def rule(self, **hyper: Any) -> optim.Rule | None:
        """The gradsuite rule for a reference (validated), else None."""
        if self.kind != "reference" or self.reference is None:
            return None
        return optim.get(self.reference, backend=self.backend or "numpy",
                         **self.hyperparameters(**hyper))

    def with_hyper(self, **hyper: Any) -> OptimizerSubject:
        """The same optimizer with more fixed hyperparameters (torch.optim's names)."""
        return replace(self, hyper=self.hyperparameters(**hyper))

    def describe(self) -> dict[str, Any]:
        """Columns for a tidy frame."""
        return {"optimizer": self.name, "optimizer_kind": self.kind,
                "reference": self.reference or "", "backend": self.backend or "",
                "import_path": self.import_path or "",
                "hyper": ", ".join(f"{k}={v}" for k, v in self.hyper.items())}

    def __reduce__(self) -> Any:
        if self.import_path is not None and self.kind != "reference":
            return (_from_path, (self.import_path, self.name, dict(self.hyper), self.reference,
                                 self.elementwise, dict(self.rename)))
        return (OptimizerSubject, (self.name, self.factory, dict(self.hyper), self.kind,
                                   self.reference, self.backend, self.import_path,
                                   self.elementwise, dict(self.rename)))


def _from_path(path: str, name: str, hyper: dict[str, Any], reference: str | None,
               elementwise: bool, rename: dict[str, str]) -> OptimizerSubject:
    return resolve(path, name=name, reference=reference, elementwise=elementwise,
                   rename=rename, **hyper)


def _display_name(obj: Any) -> str:
    if isinstance(obj, functools.partial):
        return _display_name(obj.func)
    return str(getattr(obj, "__name__", None) or type(obj).__name__)


def resolve(optimizer: Any, *, backend: str = "numpy", name: str | None = None,
            reference: str | None = None, elementwise: bool | None = None,
            rename: Mapping[str, str] | None = None, **hyper: Any) -> OptimizerSubject:
    """An :class:`OptimizerSubject` from a reference name, a class, a factory or an import path.

    ``backend`` applies to reference names only. ``reference`` names the closest gradsuite
    rule for a user's optimizer. ``elementwise`` is the user's promise that the optimizer
    treats every coordinate independently (references know it from their spec). Raises
    ValueError for an unknown reference name, ImportError for a path that does not import,
    TypeError for something that cannot build an optimizer.
    """
    ren = dict(rename or {})
    if isinstance(optimizer, OptimizerSubject):
        sub = optimizer
        if hyper:
            sub = sub.with_hyper(**hyper)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if elementwise is not None:
            changes["elementwise"] = elementwise
        if reference is not None:
            changes["reference"] = optim.get_spec(reference).name
        return replace(sub, **changes) if changes else sub
    if isinstance(optimizer, str):
        if not is_import_path(optimizer):
            spec = optim.get_spec(optimizer)  # ValueError listing the valid names
            check_backend(backend)
            full = {**optim.alias_defaults(optimizer), **hyper}
            optim.get(spec.name, backend=backend, **full)  # validate now, like torch.optim
            factory = functools.partial(rule_optimizer, reference=spec.name, backend=backend)
            return OptimizerSubject(
                name=name or optimizer.lower(), factory=factory, hyper=full, kind="reference",
                reference=spec.name, backend=backend,
                elementwise=spec.elementwise if elementwise is None else elementwise)
        obj = load_object(optimizer)
        sub = resolve(obj, name=name or optimizer.rpartition(":")[2].rpartition(".")[2],
                      reference=reference, elementwise=elementwise, rename=ren, **hyper)
        return replace(sub, import_path=optimizer)
    if not callable(optimizer):
        raise TypeError(f"cannot study {optimizer!r}: expected a reference name, an import path "
                        "'module:Class', a torch.optim.Optimizer subclass or a factory "
                        "(params, **hyper) -> optimizer")
    ref = optim.get_spec(reference).name if reference is not None else None
    kind = "class" if isinstance(optimizer, type) else "factory"
    ew = bool(elementwise)
    if elementwise is None and kind == "class":
        # torch.optim's own twin of a reference is as elementwise as the reference
        for spec in optim.OPTIMIZERS.values():
            if spec.torch_class() is optimizer:
                ew, ref = spec.elementwise, ref or spec.name
    return OptimizerSubject(name=name or _display_name(optimizer), factory=optimizer,
                            hyper=dict(hyper), kind=kind, reference=ref, elementwise=ew,
                            rename=ren)


def resolve_many(optimizers: Iterable[Any], backend: str = "numpy") -> list[OptimizerSubject]:
    """Subjects for several optimizers; ValueError if two get the same display name."""
    subs = [resolve(o, backend=backend) for o in optimizers]
    seen: dict[str, int] = {}
    for s in subs:
        seen[s.name] = seen.get(s.name, 0) + 1
    dup = sorted(n for n, c in seen.items() if c > 1)
    if dup:
        raise ValueError(f"several optimizers are named {', '.join(dup)}; pass name= to tell "
                         "them apart")
    return subs
