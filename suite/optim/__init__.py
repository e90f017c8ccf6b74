"""Update rules of torch.optim's first-order optimizers in NumPy, Numba and torch.

SGD, Adagrad, RMSprop, Adam, AdamW, NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD, Adafactor.

>>> from suite import optim
>>> rule = optim.get("adam", backend="numba", lr=1e-3, betas=(0.9, 0.999))
>>> state = rule.init(params)            # list of per-parameter dicts, torch.optim's names
>>> rule.step(params, grads, state)      # updates params and state in place

A gradient of ``None`` skips its parameter for that step (as torch.optim skips ``p.grad is
None``). ``to_torch_state_dict`` / ``from_torch_state_dict`` convert state to and from
``torch.optim.Optimizer.state_dict()``, so a run can switch between a rule and torch.optim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from suite.backends import check_array, check_backend, check_pairs
from suite.optim import numpy_ref
from suite.optim.spec import ALIASES, OPTIMIZERS, OptimizerSpec, alias_defaults, get_spec

__all__ = [
    "ALIASES",
    "OPTIMIZERS",
    "OptimizerSpec",
    "Rule",
    "flat_buffer",
    "from_torch_state_dict",
    "get",
    "get_spec",
    "to_torch_state_dict",
]

State = list[dict[str, Any]]


def _kernels(backend: str) -> dict[str, Callable[..., None]]:
    if backend == "numpy":
        return numpy_ref.RULES
    if backend == "numba":
        from suite.optim import numba_kernels

        return numba_kernels.RULES
    from suite.optim import torch_kernels

    return torch_kernels.RULES


_NUMPY_DTYPES = {"numpy": ("float16", "float32", "float64"), "numba": ("float32", "float64")}


@dataclass(frozen=True)
class Rule:
    """An update rule bound to a backend and validated hyperparameters."""

    spec: OptimizerSpec
    backend: str
    hyper: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def _check_param(self, i: int, p: Any, what: str = "parameter") -> None:
        check_array(p, self.backend, f"{what} {i}", _NUMPY_DTYPES.get(self.backend, ()))
        if self.backend == "torch":
            return
        if self.backend == "numba" and not p.flags.c_contiguous:
            raise ValueError(f"{what} {i} is not C-contiguous; the numba backend updates "
                             "arrays in place through a flat view (use np.ascontiguousarray)")
        if what == "parameter" and not p.flags.writeable:
            raise ValueError(f"parameter {i} is read-only; rules update parameters in place")

    def init(self, params: Sequence[Any]) -> State:
        """Fresh state for ``params``: one dict per parameter, keyed by torch.optim's names.

        As in torch.optim, Adagrad's state exists from the start and the others' is created
        on a parameter's first step with a gradient (SGD's ``momentum_buffer`` from that
        gradient itself); until then a parameter's dict is empty.
        """
        if isinstance(params, np.ndarray) or not isinstance(params, Sequence):
            raise TypeError("params must be a list of arrays (or tensors), "
                            f"got {type(params).__name__}")
        if len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(params):
            self._check_param(i, p)
        return [self._fresh(p, self.hyper) if self.spec.eager_state else {} for p in params]

    def _fresh(self, p: Any, hyper: dict[str, Any]) -> dict[str, Any]:
        # ``hyper`` is this step's: Rprop's step sizes and ASGD's eta start at the lr of the
        # parameter's first step, as torch.optim reads group["lr"] then
        return numpy_ref.init_state(self.spec.name, p, hyper)

    def step(self, params: Sequence[Any], grads: Sequence[Any | None], state: State,
             lr: float | None = None) -> None:
        """One update of every parameter whose gradient is not None, in place.

        ``lr`` overrides the learning rate for this step (a schedule), as torch.optim's
        schedulers rewrite ``param_group["lr"]``; it is checked like the constructor's.
        """
        check_pairs(params, grads)
        if len(state) != len(params):
            raise ValueError(f"state has {len(state)} entries but there are {len(params)} "
                             "parameters; create it with rule.init(params)")
        kernel = _kernels(self.backend)[self.spec.name]
        hyper = self.hyper
        if lr is not None:
            lr = float(lr)
            if not (lr >= 0 and np.isfinite(lr)):
                raise ValueError(f"Invalid learning rate: {lr} (expected a finite value >= 0)")
            hyper = {**hyper, "lr": lr}
        # NaN and inf propagate silently, as in torch.optim (no per-element checks, no warnings).
        with np.errstate(all="ignore"):
            self._step(kernel, params, grads, state, hyper)

    def _step(self, kernel: Callable[..., None], params: Sequence[Any],
              grads: Sequence[Any | None], state: State, hyper: dict[str, Any]) -> None:
        for i, (p, g, st) in enumerate(zip(params, grads, state, strict=True)):
            if g is None:
                continue
            self._check_param(i, p)
            self._check_param(i, g, "gradient")
            if not st and self.spec.name != "sgd":  # lazily, on the first step with a gradient
                st.update(self._fresh(p, hyper))
            kernel(p, g, st, **hyper)

    def torch_optimizer(self, params: Any, impl: str = "forloop") -> Any:
        """torch.optim's twin of this rule with the same hyperparameters."""
        return self.spec.torch_optimizer(params, impl, **self.hyper)


def flat_buffer(shapes: Sequence[tuple[int, ...]], dtype: Any = np.float32
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """One contiguous buffer and a view of it per shape.

    Many small parameters stepped one call each pay Python and call overhead per tensor; a
    model whose parameters are views of one buffer can be stepped as the single parameter
    ``[flat]`` (one compiled loop over everything), with gradients in a second flat buffer.
    """
    sizes = [int(np.prod(s)) for s in shapes]
    flat = np.zeros(sum(sizes), dtype=dtype)
    views, start = [], 0
    for shape, n in zip(shapes, sizes, strict=True):
        views.append(flat[start:start + n].reshape(shape))
        start += n
    return flat, views


def get(name: str, backend: str = "numpy", **hyper: Any) -> Rule:
    """The rule ``name`` on ``backend`` with ``hyper`` (validated like torch.optim).

    Aliases are thin specialisations: ``momentum`` is SGD with momentum=0.9 and ``nesterov``
    adds nesterov=True; their fixed values can be overridden.
    """
    spec = get_spec(name)
    check_backend(backend)
    full = {**alias_defaults(name), **hyper}
    return Rule(spec=spec, backend=backend, hyper=spec.resolve(**full))


def to_torch_state_dict(rule: Rule, state: State) -> dict[str, Any]:
    """``state`` as a torch.optim ``state_dict`` (one param group) for ``rule``'s twin.

    Parameters that have not stepped yet carry no state, as in torch (Adagrad excepted, whose
    state torch creates eagerly). 0-dim scalar state (NAdam's ``mu_product``, ASGD's ``eta``
    and ``mu``) becomes 0-dim CPU tensors of its own dtype, as torch keeps it.
    """
    import torch

    from suite.backends import to_torch

    out: dict[int, dict[str, Any]] = {}
    for i, st in enumerate(state):
        if not st:
            continue
        entry: dict[str, Any] = {}
        for key, value in st.items():
            if key == "step":
                entry[key] = torch.tensor(float(value), dtype=torch.float32)
            elif key in rule.spec.scalar_state:
                entry[key] = to_torch(value, "cpu").clone()
            else:
                entry[key] = to_torch(value).clone()
        out[i] = entry
    group = {**rule.hyper, "params": list(range(len(state)))}
    return {"state": out, "param_groups": [group]}


def from_torch_state_dict(rule: Rule, state_dict: dict[str, Any], params: Sequence[Any]
                          ) -> State:
    """State for ``rule`` on ``params`` from a torch.optim ``state_dict``.

    Raises ValueError if the state_dict's hyperparameters differ from the rule's, if it holds
    more than one param group, or if its parameter count or state entries do not fit.
    """
    groups = state_dict.get("param_groups")
    if not isinstance(groups, list) or len(groups) != 1:
        raise ValueError("expected a state_dict with exactly one param group")
    group = groups[0]
    for key, ours in rule.hyper.items():
        theirs = group.get(key, ours)
        if isinstance(ours, tuple):
            theirs = tuple(None if b is None else float(b) for b in theirs)
        elif not isinstance(ours, bool):
            theirs = float(theirs)
        if theirs != ours:
            raise ValueError(f"state_dict has {key}={theirs!r} but the rule has {key}={ours!r}")
    if len(group["params"]) != len(params):
        raise ValueError(f"state_dict covers {len(group['params'])} parameters, "
                         f"got {len(params)}")
    fresh = rule.init(params)
    for slot, pid in enumerate(group["params"]):
        saved = state_dict["state"].get(pid)
        if not saved:
            continue
        expected = set(rule.spec.state_names(rule.hyper, np.ndim(params[slot])))
        unknown = set(saved) - expected
        if unknown:
            raise ValueError(f"state of parameter {slot} has unexpected entries "
                             f"{sorted(unknown)}; {rule.name} uses {sorted(expected)}")
        for key, value in saved.items():
            if value is None:
                continue
            if key == "step":
                fresh[slot][key] = float(value)
            elif key in rule.spec.scalar_state:  # 0-dim, its own dtype, on the CPU as in torch
                fresh[slot][key] = (value.detach().cpu().clone() if rule.backend == "torch"
                                    else np.array(value.item(), dtype=str(value.dtype)[6:]))
            elif rule.backend == "torch":
                fresh[slot][key] = value.detach().clone().to(params[slot])
            else:
                fresh[slot][key] = np.ascontiguousarray(
                    value.detach().cpu().numpy().astype(params[slot].dtype))
    return fresh
