"""Optimizer specs: defaults, validation, state names and the torch.optim twin of each rule.

One :class:`OptimizerSpec` per update rule. A reader finds an optimizer's whole story here (its
defaults equal torch.optim 2.13's, its validation rejects what torch.optim rejects) and its maths
in the docstring of the matching function in :mod:`suite.optim.numpy_ref`.

Validation follows torch.optim and is slightly stricter: hyperparameters must be finite real
numbers (torch.optim accepts ``lr=inf`` and, for SGD, ``lr=nan``; those make every parameter
non-finite after one step, so we reject them up front).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Hyper = dict[str, Any]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:  # a 0-dim tensor or numpy scalar, as torch accepts for lr
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"hyperparameter {name}={value!r} must be a real number, got {type(value).__name__}"
            ) from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name} value: {value} (expected a finite number)")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"hyperparameter {name}={value!r} must be True or False")
    return value


def _nonneg(hyper: Hyper, *names: str) -> None:
    for name in names:
        if not hyper[name] >= 0.0:
            raise ValueError(f"Invalid {name} value: {hyper[name]} (expected >= 0)")


def _validate_sgd(h: Hyper) -> None:
    _nonneg(h, "lr", "momentum", "weight_decay")
    if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
        raise ValueError(
            "Nesterov momentum requires a momentum and zero dampening "
            f"(got momentum={h['momentum']}, dampening={h['dampening']})"
        )


def _validate_adagrad(h: Hyper) -> None:
    _nonneg(h, "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")


def _validate_rmsprop(h: Hyper) -> None:
    _nonneg(h, "lr", "eps", "momentum", "weight_decay", "alpha")


def _validate_adam(h: Hyper) -> None:
    _nonneg(h, "lr", "eps", "weight_decay")
    for i, b in enumerate(h["betas"]):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b} (expected 0 <= beta < 1)")


def _pair(name: str, value: Any, what: str) -> tuple[float, float]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"hyperparameter {name}={value!r} must be a pair {what}") from None
    return (_number(f"{name}[0]", a), _number(f"{name}[1]", b))


def _betas(name: str, value: Any) -> tuple[float, float]:
    return _pair(name, value, "(beta1, beta2)")


def _validate_nadam(h: Hyper) -> None:
    _validate_adam(h)
    _nonneg(h, "momentum_decay")


def _validate_adamax(h: Hyper) -> None:
    _validate_adam(h)


def _validate_adadelta(h: Hyper) -> None:
    _nonneg(h, "lr", "eps", "weight_decay")
    if not 0.0 <= h["rho"] <= 1.0:
        raise ValueError(f"Invalid rho value: {h['rho']} (expected 0 <= rho <= 1)")


def _validate_rprop(h: Hyper) -> None:
    _nonneg(h, "lr")
    minus, plus = h["etas"]
    if not 0.0 < minus < 1.0 < plus:
        raise ValueError(f"Invalid eta values: {minus}, {plus} "
                         "(expected 0 < etaminus < 1 < etaplus)")


def _validate_asgd(h: Hyper) -> None:
    _nonneg(h, "lr", "weight_decay")


def _validate_adafactor(h: Hyper) -> None:
    _nonneg(h, "lr", "weight_decay")
    if not h["beta2_decay"] <= 0.0:
        raise ValueError(f"Invalid beta2_decay value: {h['beta2_decay']} (expected <= 0)")
    eps1, eps2 = h["eps"]
    if eps1 is not None and not eps1 >= 0.0:
        raise ValueError(f"Invalid eps[0] (epsilon1) value: {eps1} (expected None or >= 0)")
    if not eps2 >= 0.0:
        raise ValueError(f"Invalid eps[1] (epsilon2) value: {eps2} (expected >= 0)")
    if not h["d"] >= 1.0:
        raise ValueError(f"Invalid d (clipping threshold) value: {h['d']} (expected >= 1)")


def _adafactor_eps(name: str, value: Any) -> tuple[float | None, float]:
    """Adafactor's (epsilon1, epsilon2); epsilon1 None means the dtype's machine epsilon."""
    try:
        e1, e2 = value
    except (TypeError, ValueError):
        raise TypeError(f"hyperparameter {name}={value!r} must be a pair "
                        "(epsilon1 or None, epsilon2)") from None
    return (None if e1 is None else _number(f"{name}[0]", e1), _number(f"{name}[1]", e2))


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything about one update rule that does not depend on the backend.

    Attributes
    ----------
    name: gradsuite's name (``"adam"``).
    torch_name: the torch.optim class it mirrors (``"Adam"``).
    defaults: hyperparameter defaults, equal to torch.optim's.
    fused_on_cpu: whether torch.optim has a fused CPU implementation.
    eager_state: state exists before the first step (Adagrad); otherwise it is created lazily.
    elementwise: each coordinate's update depends on that coordinate alone (False for rules
        with per-tensor statistics such as Adafactor's factored second moment), so that
        independent problems may be batched into one tensor.
    scalar_state: state entries that torch.optim keeps as 0-dim tensors besides ``step``
        (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``); gradsuite keeps them as 0-dim
        arrays (tensors on the torch backend) of torch's scalar dtype, so that their rounding
        is torch's.
    """

    name: str
    torch_name: str
    defaults: Mapping[str, Any]
    validator: Callable[[Hyper], None]
    state_names_fn: Callable[[Hyper], tuple[str, ...]]
    fused_on_cpu: bool
    eager_state: bool = False
    summary: str = ""
    casts: Mapping[str, Callable[[str, Any], Any]] = field(default_factory=dict)
    elementwise: bool = True
    scalar_state: tuple[str, ...] = ()
    state_names_by_ndim: Callable[[Hyper, int], tuple[str, ...]] | None = None

    def resolve(self, **hyper: Any) -> Hyper:
        """Defaults merged with ``hyper``, type-checked and validated like torch.optim."""
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(self.defaults)}"
            )
        out: Hyper = {}
        for key, default in self.defaults.items():
            value = hyper.get(key, default)
            if key in self.casts:
                out[key] = self.casts[key](key, value)
            elif isinstance(default, bool):
                out[key] = _flag(key, value)
            else:
                out[key] = _number(key, value)
        self.validator(out)
        return out

    def state_names(self, hyper: Hyper, ndim: int | None = None) -> tuple[str, ...]:
        """Names of the per-parameter state entries, as torch.optim names them.

        Where they depend on the parameter (Adafactor: ``row_var`` and ``col_var`` for
        matrices, ``variance`` otherwise), ``ndim`` picks them; without it, all are listed.
        """
        if ndim is not None and self.state_names_by_ndim is not None:
            return self.state_names_by_ndim(hyper, ndim)
        return self.state_names_fn(hyper)

    def torch_class(self) -> Any:
        import torch

        return getattr(torch.optim, self.torch_name)

    def torch_optimizer(self, params: Any, impl: str = "forloop", **hyper: Any) -> Any:
        """The torch.optim twin, forcing one implementation: forloop, foreach or fused."""
        flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True},
                 "fused": {"fused": True}}
        if impl not in flags:
            raise ValueError(f"unknown torch implementation {impl!r}; expected one of "
                             f"{', '.join(flags)}")
        if impl == "fused" and not self.fused_on_cpu:
            raise ValueError(f"torch.optim.{self.torch_name} has no fused implementation")
        return self.torch_class()(params, **self.resolve(**hyper), **flags[impl])

    def torch_impls(self) -> tuple[str, ...]:
        return ("forloop", "foreach", "fused") if self.fused_on_cpu else ("forloop", "foreach")


def _sgd_state(h: Hyper) -> tuple[str, ...]:
    return ("momentum_buffer",) if h["momentum"] != 0 else ()


def _rmsprop_state(h: Hyper) -> tuple[str, ...]:
    names = ["step", "square_avg"]
    if h["momentum"] > 0:
        names.append("momentum_buffer")
    if h["centered"]:
        names.append("grad_avg")
    return tuple(names)


def _adam_state(h: Hyper) -> tuple[str, ...]:
    return ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h["amsgrad"] else ())


_ADAM_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
    "amsgrad": False, "maximize": False,
}

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(
        name="sgd", torch_name="SGD",
        defaults={"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                  "nesterov": False, "maximize": False},
        validator=_validate_sgd, state_names_fn=_sgd_state, fused_on_cpu=True,
        summary="SGD with optional (Nesterov) momentum, dampening and coupled L2",
    ),
    "adagrad": OptimizerSpec(
        name="adagrad", torch_name="Adagrad",
        defaults={"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                  "initial_accumulator_value": 0.0, "eps": 1e-10, "maximize": False},
        validator=_validate_adagrad, state_names_fn=lambda h: ("step", "sum"),
        fused_on_cpu=True, eager_state=True,
        summary="Adagrad: per-coordinate lr / (sqrt(sum of g^2) + eps)",
    ),
    "rmsprop": OptimizerSpec(
        name="rmsprop", torch_name="RMSprop",
        defaults={"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                  "momentum": 0.0, "centered": False, "maximize": False},
        validator=_validate_rmsprop, state_names_fn=_rmsprop_state, fused_on_cpu=False,
        summary="RMSprop, optionally centered and with momentum (eps outside the sqrt)",
    ),
    "adam": OptimizerSpec(
        name="adam", torch_name="Adam", defaults=dict(_ADAM_DEFAULTS),
        validator=_validate_adam, state_names_fn=_adam_state, fused_on_cpu=True,
        casts={"betas": _betas},
        summary="Adam (Kingma & Ba, Algorithm 1), coupled L2, optional AMSGrad",
    ),
    "adamw": OptimizerSpec(
        name="adamw", torch_name="AdamW", defaults={**_ADAM_DEFAULTS, "weight_decay": 1e-2},
        validator=_validate_adam, state_names_fn=_adam_state, fused_on_cpu=True,
        casts={"betas": _betas},
        summary="AdamW: Adam with decoupled weight decay p *= 1 - lr*wd",
    ),
}


def _adafactor_state(h: Hyper, ndim: int) -> tuple[str, ...]:
    return ("step", "row_var", "col_var") if ndim > 1 else ("step", "variance")


_BETAS = {"betas": _betas}

OPTIMIZERS.update({
    "nadam": OptimizerSpec(
        name="nadam", torch_name="NAdam",
        defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                  "momentum_decay": 4e-3, "decoupled_weight_decay": False, "maximize": False},
        validator=_validate_nadam,
        state_names_fn=lambda h: ("step", "mu_product", "exp_avg", "exp_avg_sq"),
        fused_on_cpu=False, casts=_BETAS, scalar_state=("mu_product",),
        summary="NAdam (Dozat): Nesterov momentum in Adam with the momentum-decay schedule",
    ),
    "radam": OptimizerSpec(
        name="radam", torch_name="RAdam",
        defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                  "decoupled_weight_decay": False, "maximize": False},
        validator=_validate_adam, state_names_fn=lambda h: ("step", "exp_avg", "exp_avg_sq"),
        fused_on_cpu=False, casts=_BETAS,
        summary="RAdam (Liu et al.): Adam rectified once rho_t > 5, SGD with momentum before",
    ),
    "adamax": OptimizerSpec(
        name="adamax", torch_name="Adamax",
        defaults={"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                  "maximize": False},
        validator=_validate_adamax, state_names_fn=lambda h: ("step", "exp_avg", "exp_inf"),
        fused_on_cpu=False, casts=_BETAS,
        summary="Adamax: Adam with the infinity norm, u = max(beta2 u, |g| + eps)",
    ),
    "adadelta": OptimizerSpec(
        name="adadelta", torch_name="Adadelta",
        defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "maximize": False},
        validator=_validate_adadelta,
        state_names_fn=lambda h: ("step", "square_avg", "acc_delta"), fused_on_cpu=False,
        summary="Adadelta (Zeiler): RMS of past updates over RMS of gradients, times lr",
    ),
    "rprop": OptimizerSpec(
        name="rprop", torch_name="Rprop",
        defaults={"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0),
                  "maximize": False},
        validator=_validate_rprop, state_names_fn=lambda h: ("step", "prev", "step_size"),
        fused_on_cpu=False,
        casts={"etas": lambda n, v: _pair(n, v, "(etaminus, etaplus)"),
               "step_sizes": lambda n, v: _pair(n, v, "(min step size, max step size)")},
        summary="Rprop: per-coordinate step sizes grown or shrunk by the gradient's sign",
    ),
    "asgd": OptimizerSpec(
        name="asgd", torch_name="ASGD",
        defaults={"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, "weight_decay": 0.0,
                  "maximize": False},
        validator=_validate_asgd, state_names_fn=lambda h: ("step", "eta", "mu", "ax"),
        fused_on_cpu=False, scalar_state=("eta", "mu"),
        summary="ASGD: SGD with a decaying step and Polyak averaging from step t0",
    ),
    "adafactor": OptimizerSpec(
        name="adafactor", torch_name="Adafactor",
        defaults={"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
                  "weight_decay": 0.0, "maximize": False},
        validator=_validate_adafactor, fused_on_cpu=False,
        state_names_fn=lambda h: ("step", "row_var", "col_var", "variance"),
        state_names_by_ndim=_adafactor_state,
        casts={"eps": _adafactor_eps}, elementwise=False,
        summary="Adafactor (torch.optim's): factored second moment, relative step, clipping",
    ),
})

#: Named variants that are thin specialisations of a rule: name -> (rule, fixed hyperparameters).
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
}


def get_spec(name: str) -> OptimizerSpec:
    """The spec of ``name`` (an alias resolves to its rule), or ValueError listing valid names."""
    key = name.lower()
    if key in ALIASES:
        key = ALIASES[key][0]
    if key not in OPTIMIZERS:
        valid = ", ".join([*OPTIMIZERS, *ALIASES])
        raise ValueError(f"unknown optimizer {name!r}; expected one of {valid}")
    return OPTIMIZERS[key]


def alias_defaults(name: str) -> dict[str, Any]:
    """Hyperparameters fixed by an alias (``momentum`` -> momentum=0.9); empty for a rule name."""
    alias = ALIASES.get(name.lower())
    return dict(alias[1]) if alias else {}
