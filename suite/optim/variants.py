"""The catalogue of known variants: named deviations from the reference rules.

Each :class:`Variant` is one way an implementation of a rule commonly differs from torch.optim
(a textbook formula, another framework's convention, a frequent slip), written as data next to
the rules it modifies: a name, the references it applies to, a one-line description, and the
modification itself, one of

- ``kernels``: a modified update, ``kernel(p, g, st, **hyper)`` with the same signature as the
  reference's function in :mod:`suite.optim.numpy_ref` (one per reference it applies to);
- ``overrides``: hyperparameters forced to a value (an option that is ignored);
- ``init``: modified initial state (``init(name, p, hyper) -> state``);
- ``state_dtype``: the rule run unchanged, but every state entry kept in a narrower dtype;
- ``fitted="lr_factor"``: the rule with a constant factor c on every step (lr -> c·lr); c is
  fitted to the trajectory being explained (:func:`fit_lr_factor`) and reported.

:func:`variant_rule` turns a variant into an object with a rule's ``init``/``step`` interface,
so that :func:`suite.trajectory.run_rule` records it like any reference; the conformance check
(:mod:`suite.conformance.optimizers`) runs every variant of the reference on a failing cell and
names those that reproduce the optimizer's trajectory within the cell's tolerance.

Adding a reference rule later: variants with ``references=None`` (``maximize_ignored``,
``state_in_float32``, ``state_in_bfloat16``, ``lr_scaled``, ...) apply to it at once when it
has the hyperparameters they ``require``; a rule-specific variant gets one more entry in its
``kernels`` mapping.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from suite.optim import numpy_ref
from suite.optim.numpy_ref import copy, lerp, namespace
from suite.optim.spec import OptimizerSpec, get_spec

Hyper = dict[str, Any]
Kernel = Callable[..., None]


def _always(h: Hyper) -> bool:
    return True


@dataclass(frozen=True)
class Variant:
    """One named deviation from a reference rule (see the module docstring)."""

    name: str
    description: str
    references: tuple[str, ...] | None = None   # None: every reference with ``requires``
    requires: tuple[str, ...] = ()
    kernels: Mapping[str, Kernel] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    init: Callable[[str, Any, Hyper], dict[str, Any]] | None = None
    state_dtype: str | None = None
    fitted: str | None = None
    when: Callable[[Hyper], bool] = _always
    counter: str = "param"   # "group": one step count for all parameters, advanced every step

    def applies_to(self, reference: str) -> bool:
        spec = get_spec(reference)
        if self.references is not None and spec.name not in self.references:
            return False
        return all(k in spec.defaults for k in (*self.requires, *self.overrides))

    def changes(self, reference: str, hyper: Hyper) -> bool:
        """Whether the variant computes anything different from the reference with ``hyper``."""
        if not self.applies_to(reference):
            return False
        if any(hyper.get(k) == v for k, v in self.overrides.items()):
            return False
        return bool(self.when(hyper))

    def label(self, factor: float | None = None) -> str:
        if self.fitted == "lr_factor" and factor is not None:
            return f"{self.name} (step scaled by a constant factor {factor:.6g})"
        return f"{self.name} ({self.description})"


# ---- modified kernels (torch.optim's order of operations, one change each) --------------------


def _sgd(p: Any, g: Any, st: dict[str, Any], *, lr: float, momentum: float, dampening: float,
         weight_decay: float, nesterov: bool, maximize: bool, first: str = "copy",
         ema: bool = False, decay: str = "coupled") -> None:
    # Decoupled decay is also what adding weight_decay*p to the update after momentum gives.
    if maximize:
        g = -g
    if weight_decay != 0 and decay == "coupled":
        g = g + weight_decay * p
    if decay == "decoupled" and weight_decay != 0:
        p[...] = p * (1 - lr * weight_decay)
    if momentum != 0:
        if "momentum_buffer" not in st:
            if ema:
                st["momentum_buffer"] = copy((1 - momentum) * g)
            elif first == "dampened":
                st["momentum_buffer"] = copy((1 - dampening) * g)
            else:
                st["momentum_buffer"] = copy(g)
        else:
            buf = st["momentum_buffer"]
            buf[...] = momentum * buf + ((1 - momentum) if ema else (1 - dampening)) * g
        buf = st["momentum_buffer"]
        d = g + momentum * buf if nesterov else buf
    else:
        d = g
    p[...] = p + -lr * d


def _adagrad(p: Any, g: Any, st: dict[str, Any], *, lr: float, lr_decay: float,
             weight_decay: float, initial_accumulator_value: float, eps: float, maximize: bool,
             eps_inside: bool = False, decay_from_t: bool = False,
             decoupled: bool = False) -> None:
    st["step"] = step = st["step"] + 1.0
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled:
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    clr = lr / (1 + (step if decay_from_t else step - 1) * lr_decay)
    s = st["sum"]
    s[...] = s + (1 * g) * g
    xp = namespace(p)
    std = xp.sqrt(s + eps) if eps_inside else xp.sqrt(s) + eps
    p[...] = p + (-clr * g) / std


def _rmsprop(p: Any, g: Any, st: dict[str, Any], *, lr: float, alpha: float, eps: float,
             weight_decay: float, momentum: float, centered: bool, maximize: bool,
             eps_inside: bool = False, swapped: bool = False, decoupled: bool = False) -> None:
    xp = namespace(p)
    if maximize:
        g = -g
    st["step"] = st["step"] + 1.0
    if weight_decay != 0:
        if decoupled:
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    v = st["square_avg"]
    a = 1 - alpha if swapped else alpha
    v[...] = a * v + ((1 - a) * g) * g
    var = v
    if centered:
        ga = st["grad_avg"]
        ga[...] = lerp(ga, g, 1 - alpha)
        var = v + (-1 * ga) * ga
    avg = xp.sqrt(var + eps) if eps_inside else xp.sqrt(var) + eps
    if momentum > 0:
        buf = st["momentum_buffer"]
        buf[...] = momentum * buf + (1 * g) / avg
        p[...] = p + -lr * buf
    else:
        p[...] = p + (-lr * g) / avg


def _adam(p: Any, g: Any, st: dict[str, Any], *, lr: float, betas: tuple[float, float],
          eps: float, weight_decay: float, amsgrad: bool, maximize: bool,
          decoupled: bool = False, wd_scale: str = "lr", eps_at: str = "after_bc",
          bias: str = "torch", ams_of: str = "raw") -> None:
    xp = namespace(p)
    beta1, beta2 = betas
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if weight_decay != 0:
        if decoupled:
            p[...] = p * (1 - (lr if wd_scale == "lr" else 1.0) * weight_decay)
        else:
            g = g + weight_decay * p
    m, v = st["exp_avg"], st["exp_avg_sq"]
    m[...] = lerp(m, g, 1 - beta1)
    v[...] = beta2 * v + ((1 - beta2) * g) * g
    t = step + 1.0 if bias == "off_by_one" else step
    bc1, bc2 = (1.0, 1.0) if bias == "none" else (1 - beta1**t, 1 - beta2**t)
    step_size = lr / bc1
    bc2_sqrt = bc2**0.5
    if amsgrad:
        vmax = st["max_exp_avg_sq"]
        if ams_of == "vhat":
            vmax[...] = xp.maximum(vmax, v / bc2)
            v_hat = vmax
        else:
            vmax[...] = xp.maximum(vmax, v)
            v_hat = vmax / bc2
        used = vmax
    else:
        v_hat, used = v / bc2, v
    if eps_at == "inside":
        denom = xp.sqrt(v_hat + eps)
    elif eps_at == "before_bc":
        denom = (xp.sqrt(used) + eps) / bc2_sqrt
    elif ams_of == "vhat" and amsgrad:
        denom = xp.sqrt(v_hat) + eps
    else:
        denom = xp.sqrt(used) / bc2_sqrt + eps
    p[...] = p + (-step_size * m) / denom


def _adamw(**switches: Any) -> Kernel:
    return functools.partial(_adam, decoupled=True, **switches)


def _for(refs: Sequence[str], make: Callable[[str], Kernel]) -> dict[str, Kernel]:
    return {r: make(r) for r in refs}


_BASE = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam,
         "adamw": _adamw()}


def _wd(h: Hyper) -> bool:
    return h.get("weight_decay", 0) != 0


def _square_avg_one(name: str, p: Any, hyper: Hyper) -> dict[str, Any]:
    st = numpy_ref.init_state(name, p, hyper)
    st["square_avg"] = namespace(p).ones_like(p)
    return st


def _flag(name: str) -> Callable[[Hyper], bool]:
    return lambda h: bool(h.get(name))


def _negate_after_wd(kernel: Kernel) -> Kernel:
    """``-(g + wd*p)``: the rule with maximize off, on -g, with weight decay -wd."""

    def step(p: Any, g: Any, st: dict[str, Any], **hyper: Any) -> None:
        if hyper["maximize"]:
            hyper = {**hyper, "maximize": False, "weight_decay": -hyper["weight_decay"]}
            g = -g
        kernel(p, g, st, **hyper)

    return step


# ---- NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD, Adafactor: one classic change each ------------


def _nadam_constant_mu(p: Any, g: Any, st: dict[str, Any], *, lr: float,
                       betas: tuple[float, float], eps: float, weight_decay: float,
                       momentum_decay: float, decoupled_weight_decay: bool,
                       maximize: bool) -> None:
    # mu_t = mu_{t+1} = beta1 (Dozat's schedule left out); otherwise numpy_ref.nadam
    xp = namespace(p)
    beta1, beta2 = betas
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    bias_correction2 = 1 - beta2**step
    if weight_decay != 0:
        if decoupled_weight_decay:
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    mu = mu_next = beta1
    mu_product = st["mu_product"]
    mu_product[...] = mu_product * mu
    m, v = st["exp_avg"], st["exp_avg_sq"]
    m[...] = lerp(m, g, 1 - beta1)
    v[...] = beta2 * v + ((1 - beta2) * g) * g
    denom = xp.sqrt(v / bias_correction2) + eps
    mp = float(mu_product)
    p[...] = p + ((-lr * (1.0 - mu) / (1.0 - mp)) * g) / denom
    p[...] = p + (((-lr * mu_next) / (1.0 - mp * mu_next)) * m) / denom


def _radam_always_rectified(p: Any, g: Any, st: dict[str, Any], *, lr: float,
                            betas: tuple[float, float], eps: float, weight_decay: float,
                            decoupled_weight_decay: bool, maximize: bool) -> None:
    # the adaptive (rectified) step from t = 1, r_t = sqrt(max(., 0)): no switch at rho_t > 5
    xp = namespace(p)
    beta1, beta2 = betas
    step, m, v = numpy_ref.adam_moments(p, g, st, lr=lr, betas=betas,
                                        weight_decay=weight_decay,
                                        decoupled=decoupled_weight_decay, maximize=maximize)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
    rect = max((rho_t - 4) * (rho_t - 2) * rho_inf
               / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0.0) ** 0.5
    adaptive_lr = (bias_correction2**0.5) / (xp.sqrt(v) + eps)
    p[...] = p - m / bias_correction1 * lr * adaptive_lr * rect


def _adamax_eps_outside(p: Any, g: Any, st: dict[str, Any], *, lr: float,
                        betas: tuple[float, float], eps: float, weight_decay: float,
                        maximize: bool) -> None:
    # u = max(beta2 u, |g|), divided by u + eps (Keras), not max(beta2 u, |g| + eps)
    xp = namespace(p)
    beta1, beta2 = betas
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if weight_decay != 0:
        g = g + weight_decay * p
    m, u = st["exp_avg"], st["exp_inf"]
    m[...] = lerp(m, g, 1 - beta1)
    u[...] = xp.maximum(u * beta2, xp.abs(g))
    p[...] = p + (-(lr / (1 - beta1**step)) * m) / (u + eps)


def _rprop_raw_previous(p: Any, g: Any, st: dict[str, Any], *, lr: float,
                        etas: tuple[float, float], step_sizes: tuple[float, float],
                        maximize: bool) -> None:
    # the sign rule compares with the raw previous gradient (kept in "raw_prev"), not with the
    # stored one that torch zeroes after a sign change
    raw = st.get("raw_prev")
    if raw is None:
        raw = st["raw_prev"] = copy(st["prev"])
    keep = copy(-g if maximize else g)
    st["prev"][...] = raw
    numpy_ref.rprop(p, g, st, lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
    raw[...] = keep


def _asgd_eta_first(p: Any, g: Any, st: dict[str, Any], *, lr: float, lambd: float,
                    alpha: float, t0: float, weight_decay: float, maximize: bool) -> None:
    # eta_t = lr / (1 + lambd lr t)^alpha (double precision) used at step t; torch uses the
    # eta stored by the previous step
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if weight_decay != 0:
        g = g + weight_decay * p
    eta = lr / ((1 + lambd * lr * step) ** alpha)
    p[...] = p * (1 - lambd * eta)
    p[...] = p + (-eta) * g
    mu, ax = float(st["mu"]), st["ax"]
    ax[...] = ax + (p - ax) * mu if mu != 1 else p
    rounded = numpy_ref.scalar_dtype()
    st["eta"][...] = float(rounded(eta))
    st["mu"][...] = float(rounded(1 / max(1, step - t0)))


def _adafactor_paper_rho(p: Any, g: Any, st: dict[str, Any], *, lr: float, weight_decay: float,
                         **hyper: Any) -> None:
    # rho_t = min(0.01, 1/sqrt(t)), the paper's constant, where torch uses min(lr, 1/sqrt(t));
    # the decay p *= 1 - lr*weight_decay is kept (weight_decay rescaled for lr = 0.01)
    numpy_ref.adafactor(p, g, st, lr=0.01, weight_decay=weight_decay * lr / 0.01, **hyper)


CATALOGUE: tuple[Variant, ...] = (
    Variant("decoupled_weight_decay",
            "weight decay applied to p (p *= 1 - lr*wd), not added to the gradient",
            references=("sgd", "adagrad", "rmsprop", "adam"),
            kernels={"sgd": functools.partial(_sgd, decay="decoupled"),
                     "adagrad": functools.partial(_adagrad, decoupled=True),
                     "rmsprop": functools.partial(_rmsprop, decoupled=True),
                     "adam": _adamw()}, when=_wd),
    Variant("coupled_weight_decay",
            "weight decay added to the gradient (Adam's L2), not applied to p",
            references=("adamw",), kernels={"adamw": _adam}, when=_wd),
    Variant("weight_decay_not_scaled_by_lr",
            "decoupled weight decay p *= 1 - wd, not multiplied by lr",
            references=("adamw",), kernels={"adamw": _adamw(wd_scale="one")}, when=_wd),
    Variant("maximize_after_weight_decay",
            "maximize negates the gradient after weight decay is added, not before",
            references=("sgd", "adagrad", "rmsprop", "adam"),
            kernels=_for(("sgd", "adagrad", "rmsprop", "adam"),
                         lambda r: _negate_after_wd(_BASE[r])),
            when=lambda h: _wd(h) and h["maximize"]),
    Variant("eps_inside_sqrt", "eps added inside the square root, sqrt(v + eps)",
            references=("adagrad", "rmsprop", "adam", "adamw"),
            kernels={"adagrad": functools.partial(_adagrad, eps_inside=True),
                     "rmsprop": functools.partial(_rmsprop, eps_inside=True),
                     "adam": functools.partial(_adam, eps_at="inside"),
                     "adamw": _adamw(eps_at="inside")}),
    Variant("eps_before_bias_correction",
            "eps added before dividing by sqrt(1 - beta2^t), TensorFlow's epsilon-hat form",
            references=("adam", "adamw"),
            kernels={"adam": functools.partial(_adam, eps_at="before_bc"),
                     "adamw": _adamw(eps_at="before_bc")}),
    Variant("no_bias_correction", "no bias correction of either moment",
            references=("adam", "adamw"),
            kernels={"adam": functools.partial(_adam, bias="none"),
                     "adamw": _adamw(bias="none")}),
    Variant("bias_correction_off_by_one",
            "bias corrections use step t + 1 (the counter read after its increment twice)",
            references=("adam", "adamw"),
            kernels={"adam": functools.partial(_adam, bias="off_by_one"),
                     "adamw": _adamw(bias="off_by_one")}),
    Variant("amsgrad_max_of_vhat",
            "AMSGrad's maximum taken over the bias-corrected v_hat, not over the raw v",
            references=("adam", "adamw"),
            kernels={"adam": functools.partial(_adam, ams_of="vhat"),
                     "adamw": _adamw(ams_of="vhat")}, when=_flag("amsgrad")),
    Variant("amsgrad_ignored", "amsgrad=True has no effect (plain Adam)",
            references=("adam", "adamw"), overrides={"amsgrad": False}, when=_flag("amsgrad")),
    Variant("ema_momentum",
            "momentum as an EMA, buf = momentum*buf + (1 - momentum)*g from buf = 0",
            references=("sgd",), kernels={"sgd": functools.partial(_sgd, ema=True)},
            when=lambda h: h["momentum"] != 0),
    Variant("dampening_on_first_step",
            "the first momentum step is dampened too, buf = (1 - dampening)*g",
            references=("sgd",), kernels={"sgd": functools.partial(_sgd, first="dampened")},
            when=lambda h: h["momentum"] != 0 and h["dampening"] != 0),
    Variant("nesterov_ignored", "nesterov=True has no effect (plain momentum)",
            references=("sgd",), overrides={"nesterov": False}, when=_flag("nesterov")),
    Variant("maximize_ignored", "maximize=True has no effect (the loss is minimised)",
            requires=("maximize",), overrides={"maximize": False}, when=_flag("maximize")),
    Variant("centered_ignored", "centered=True has no effect (plain RMSprop)",
            references=("rmsprop",), overrides={"centered": False}, when=_flag("centered")),
    Variant("square_avg_weights_swapped",
            "square_avg = (1 - alpha)*square_avg + alpha*g^2 (alpha on the wrong term)",
            references=("rmsprop",),
            kernels={"rmsprop": functools.partial(_rmsprop, swapped=True)}),
    Variant("lr_decay_from_wrong_step",
            "lr / (1 + t*lr_decay) with t counted from 1, so the first step is decayed too",
            references=("adagrad",),
            kernels={"adagrad": functools.partial(_adagrad, decay_from_t=True)},
            when=lambda h: h["lr_decay"] != 0),
    Variant("initial_accumulator_ignored",
            "the accumulator starts at 0 whatever initial_accumulator_value says",
            references=("adagrad",), overrides={"initial_accumulator_value": 0.0}),
    Variant("square_avg_starts_at_one", "square_avg starts at 1, not 0 (TensorFlow 1)",
            references=("rmsprop",), init=_square_avg_one),
    Variant("step_counted_per_group",
            "one step count per param group, advanced at every step() even for parameters "
            "without a gradient (bias corrections and lr decay read it)",
            references=("adagrad", "adam", "adamw", "nadam", "radam", "adamax", "adadelta",
                        "rprop", "asgd", "adafactor"), counter="group"),
    Variant("nadam_constant_momentum",
            "NAdam's momentum schedule mu_t = beta1 (1 - 0.96^(t psi)/2) left out: mu_t = beta1",
            references=("nadam",), kernels={"nadam": _nadam_constant_mu}),
    Variant("radam_always_rectified",
            "RAdam's switch at rho_t > 5 left out: the rectified adaptive step from t = 1",
            references=("radam",), kernels={"radam": _radam_always_rectified}),
    Variant("adamax_eps_outside_max",
            "Adamax's eps added after the maximum, m / (max(beta2 u, |g|) + eps) (Keras)",
            references=("adamax",), kernels={"adamax": _adamax_eps_outside}),
    Variant("adadelta_lr_ignored", "Adadelta's lr has no effect (the paper's step, lr = 1)",
            references=("adadelta",), overrides={"lr": 1.0}),
    Variant("rprop_sign_on_raw_previous_gradient",
            "Rprop's sign rule compares with the raw previous gradient, not the stored one "
            "zeroed after a sign change",
            references=("rprop",), kernels={"rprop": _rprop_raw_previous}),
    Variant("asgd_eta_updated_before_step",
            "ASGD's eta_t = lr / (1 + lambd lr t)^alpha used at step t (torch: from t + 1)",
            references=("asgd",), kernels={"asgd": _asgd_eta_first}),
    Variant("adafactor_relative_step_capped_at_0.01",
            "Adafactor's relative step min(0.01, 1/sqrt(t)) (the paper), not min(lr, 1/sqrt(t))",
            references=("adafactor",), kernels={"adafactor": _adafactor_paper_rho},
            when=lambda h: h["lr"] != 0.01),
    Variant("state_in_float32", "every state entry kept in float32", state_dtype="float32"),
    Variant("state_in_bfloat16", "every state entry kept in bfloat16", state_dtype="bfloat16"),
    Variant("lr_scaled", "a constant factor on every step (lr -> c*lr), fitted",
            fitted="lr_factor"),
)


VARIANTS: dict[str, Variant] = {v.name: v for v in CATALOGUE}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def variants_for(reference: str) -> list[Variant]:
    """The catalogued variants of ``reference`` (an alias resolves to its rule)."""
    return [v for v in CATALOGUE if v.applies_to(reference)]


# ---- running a variant ----------------------------------------------------------------------


class _CastState(dict):  # type: ignore[type-arg]
    """A state dict that stores every array entry in ``dtype`` (torch tensors)."""

    def __init__(self, dtype: Any) -> None:
        super().__init__()
        self._dtype = dtype

    def __setitem__(self, key: str, value: Any) -> None:
        if hasattr(value, "shape") and not isinstance(value, float):
            value = value.to(self._dtype)
        super().__setitem__(key, value)


@dataclass(frozen=True)
class VariantRule:
    """A reference rule with one catalogued modification, behind a rule's interface.

    ``init(params)`` and ``step(params, grads, state)`` as :class:`suite.optim.Rule`; the
    ``backend`` is ``numpy``, or ``torch`` for variants whose state is kept in a dtype NumPy
    lacks (the same NumPy-style kernels run on torch tensors).
    """

    spec: OptimizerSpec
    variant: Variant
    hyper: Hyper
    factor: float = 1.0

    also: Variant | None = None   # a second variant composed with this one
    calls: list[int] = field(default_factory=lambda: [0], compare=False)

    @property
    def parts(self) -> tuple[Variant, ...]:
        return (self.variant,) if self.also is None else (self.variant, self.also)

    @property
    def state_dtype(self) -> str | None:
        return next((v.state_dtype for v in self.parts if v.state_dtype), None)

    @property
    def backend(self) -> str:
        return "torch" if self.state_dtype else "numpy"

    @property
    def name(self) -> str:
        return f"{self.spec.name}+{'+'.join(v.name for v in self.parts)}"

    def _kernel(self) -> Kernel:
        for v in self.parts:
            if self.spec.name in v.kernels:
                return v.kernels[self.spec.name]
        return numpy_ref.RULES[self.spec.name]

    def _hyper(self) -> Hyper:
        h = dict(self.hyper)
        for v in self.parts:
            h.update(v.overrides)
            if v.fitted == "lr_factor":
                h["lr"] = h["lr"] * self.factor
        return h

    def _fresh(self, p: Any) -> dict[str, Any]:
        make = next((v.init for v in self.parts if v.init), None) or numpy_ref.init_state
        st = self._new_state()
        for k, v in make(self.spec.name, p, self._hyper()).items():
            st[k] = v  # through __setitem__, which casts for a narrower state dtype
        return st

    def _new_state(self) -> dict[str, Any]:
        if self.state_dtype:
            import torch

            return _CastState(getattr(torch, self.state_dtype))
        return {}

    def init(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        self.calls[0] = 0
        return [self._fresh(p) if self.spec.eager_state else self._new_state() for p in params]

    def step(self, params: Sequence[Any], grads: Sequence[Any | None],
             state: list[dict[str, Any]], lr: float | None = None) -> None:
        kernel, hyper = self._kernel(), self._hyper()
        if lr is not None:
            scaled = any(v.fitted for v in self.parts)
            hyper["lr"] = float(lr) * (self.factor if scaled else 1.0)
        self.calls[0] += 1
        per_group = any(v.counter == "group" for v in self.parts)
        with np.errstate(all="ignore"):
            for p, g, st in zip(params, grads, state, strict=True):
                if g is None:
                    continue
                if not st and self.spec.name != "sgd":
                    for k, v in self._fresh(p).items():
                        st[k] = v
                if per_group and "step" in st:
                    st["step"] = float(self.calls[0] - 1)  # the kernel adds one
                kernel(p, g, st, **hyper)


def variant_rule(reference: str, variant: str | Variant, factor: float = 1.0,
                 **hyper: Any) -> VariantRule:
    """``reference`` with hyperparameters ``hyper`` (validated) modified by ``variant``.

    ``variant`` may name two variants joined by ``+`` (at most one of them with its own
    kernel), e.g. ``"eps_before_bias_correction+step_counted_per_group"``.
    """
    spec = get_spec(reference)
    names = variant.split("+") if isinstance(variant, str) else [variant]
    vs = [get_variant(n) if isinstance(n, str) else n for n in names]
    if not 1 <= len(vs) <= 2:
        raise ValueError(f"expected one or two variants, got {variant!r}")
    for v in vs:
        if not v.applies_to(spec.name):
            raise ValueError(f"variant {v.name!r} does not apply to {spec.name!r}; its "
                             f"variants: {', '.join(x.name for x in variants_for(spec.name))}")
    if sum(spec.name in v.kernels for v in vs) > 1:
        raise ValueError(f"{' and '.join(v.name for v in vs)} both replace the update; "
                         "they cannot be composed")
    return VariantRule(spec, vs[0], spec.resolve(**hyper), factor,
                       vs[1] if len(vs) == 2 else None)


def fit_lr_factor(test_params: Sequence[np.ndarray], ref_params: Sequence[np.ndarray]
                  ) -> float | None:
    """The constant c with test ≈ c·ref on the first step that moves the parameters.

    ``*_params`` are per-parameter arrays of shape ``(steps + 1, ...)`` (a trajectory's
    parameter values). Least squares over every element of the first step at which the
    reference moves; None if nothing moves or the fit is not finite and positive.
    """
    n = min(len(ref_params[0]), len(test_params[0]))
    for t in range(1, n):
        dr = np.concatenate([np.ravel(r[t] - r[t - 1]) for r in ref_params])
        do = np.concatenate([np.ravel(a[t] - a[t - 1]) for a in test_params])
        ok = np.isfinite(dr) & np.isfinite(do)
        dr, do = dr[ok], do[ok]
        den = float(np.dot(dr, dr))
        if den > 0:
            c = float(np.dot(do, dr)) / den
            return c if np.isfinite(c) and c > 0 else None
    return None
