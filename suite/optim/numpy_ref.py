"""Reference update rules: readable maths in torch.optim's order of operations.

Each function updates one parameter ``p`` and its state dict ``st`` in place, given its gradient
``g``. The code is written once for any array namespace with NumPy's names (``sqrt``,
``maximum``, ``zeros_like``, ``full_like``): NumPy arrays here, and torch tensors on any device in
:mod:`suite.optim.torch_kernels`, which calls these same functions.

Conventions shared by every rule (torch.optim 2.13):

- ``maximize`` negates the gradient first, before weight decay.
- ``step`` is incremented before it is used, so the first update has t = 1. It is kept as a
  Python float, so bias corrections and Adagrad's decayed lr are computed in double precision
  even for float32 parameters, as torch does.
- ``lerp(a, b, w)`` uses torch's two-sided formula (``a + w (b - a)`` for ``|w| < 0.5``, else
  ``b - (b - a)(1 - w)``), and ``addcmul``/``addcdiv`` are written as torch evaluates them
  (``a + (s·x)·y`` and ``a + (s·x)/y``). That is what makes float64 agree with torch.optim to the
  last few ulps rather than to 1e-10.
- NaN and inf in gradients propagate into parameters and state exactly as in torch.optim; nothing
  is checked or clipped per element.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor
State = dict[str, Any]


def namespace(x: Array) -> Any:
    """``numpy`` for arrays, ``torch`` for tensors."""
    if isinstance(x, np.ndarray):
        return np
    import torch

    return torch


def lerp(a: Array, b: Array, w: float) -> Array:
    """torch.lerp with a scalar weight, term for term."""
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (1 - w)


def copy(x: Array) -> Array:
    """A new array (NumPy turns 0-dim results into scalars; this keeps them arrays)."""
    return np.array(x) if isinstance(x, np.ndarray | np.generic) else x.clone()


def init_state(name: str, p: Array, hyper: dict[str, Any]) -> State:
    """Fresh state for parameter ``p`` under optimizer ``name``, with torch.optim's names.

    torch.optim creates Adagrad's state in ``__init__`` and the others' on a parameter's first
    step with a gradient; :class:`suite.optim.Rule` calls this at the same moments. SGD's
    momentum buffer is created by :func:`sgd` itself, as a copy of the first gradient.
    """
    xp = namespace(p)
    if name == "sgd":
        return {}
    if name == "adagrad":
        return {"step": 0.0, "sum": xp.full_like(p, hyper["initial_accumulator_value"])}
    if name == "rmsprop":
        st: State = {"step": 0.0, "square_avg": xp.zeros_like(p)}
        if hyper["momentum"] > 0:
            st["momentum_buffer"] = xp.zeros_like(p)
        if hyper["centered"]:
            st["grad_avg"] = xp.zeros_like(p)
        return st
    if name in ("adam", "adamw"):
        st = {"step": 0.0, "exp_avg": xp.zeros_like(p), "exp_avg_sq": xp.zeros_like(p)}
        if hyper["amsgrad"]:
            st["max_exp_avg_sq"] = xp.zeros_like(p)
        return st
    raise ValueError(f"unknown optimizer {name!r}")


def sgd(p: Array, g: Array, st: State, *, lr: float, momentum: float, dampening: float,
        weight_decay: float, nesterov: bool, maximize: bool) -> None:
    r"""SGD with momentum (torch.optim.SGD).

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) + \lambda p_{t-1}  \quad(-\text{ if maximize})\\
        b_1 &= g_1, \qquad b_t = \mu b_{t-1} + (1-\tau) g_t \quad (t > 1)\\
        d_t &= g_t + \mu b_t \text{ if nesterov else } b_t \text{ (if } \mu \ne 0\text{), else } g_t\\
        p_t &= p_{t-1} - \gamma d_t

    Symbols: γ = ``lr``, μ = ``momentum``, τ = ``dampening``, λ = ``weight_decay``; b is state
    ``momentum_buffer``.

    .. warning:: The first step copies the gradient into the buffer without the (1 - τ) factor,
       as torch does; textbook and optax momentum start from b_0 = 0 instead.
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if "momentum_buffer" not in st:
            st["momentum_buffer"] = copy(g)
        else:
            buf = st["momentum_buffer"]
            buf[...] = momentum * buf + (1 - dampening) * g
        buf = st["momentum_buffer"]
        g = g + momentum * buf if nesterov else buf
    p[...] = p + -lr * g


def adagrad(p: Array, g: Array, st: State, *, lr: float, lr_decay: float, weight_decay: float,
            initial_accumulator_value: float, eps: float, maximize: bool) -> None:
    r"""Adagrad (torch.optim.Adagrad).

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) + \lambda p_{t-1}\\
        \tilde\gamma_t &= \gamma / (1 + (t-1)\eta)\\
        s_t &= s_{t-1} + g_t^2, \qquad s_0 = \text{initial\_accumulator\_value}\\
        p_t &= p_{t-1} - \tilde\gamma_t\, g_t / (\sqrt{s_t} + \epsilon)

    Symbols: γ = ``lr``, η = ``lr_decay``, λ = ``weight_decay``, ε = ``eps``; s is state ``sum``.
    ε is added outside the square root.
    """
    st["step"] = step = st["step"] + 1.0
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1 + (step - 1) * lr_decay)
    s = st["sum"]
    s[...] = s + (1 * g) * g
    std = namespace(p).sqrt(s) + eps
    p[...] = p + (-clr * g) / std


def rmsprop(p: Array, g: Array, st: State, *, lr: float, alpha: float, eps: float,
            weight_decay: float, momentum: float, centered: bool, maximize: bool) -> None:
    r"""RMSprop (torch.optim.RMSprop).

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) + \lambda p_{t-1}\\
        v_t &= \alpha v_{t-1} + (1-\alpha) g_t^2\\
        \bar g_t &= \bar g_{t-1} + (1-\alpha)(g_t - \bar g_{t-1}) \quad\text{(centered)}\\
        a_t &= \sqrt{v_t - \bar g_t^2} + \epsilon \text{ if centered else } \sqrt{v_t} + \epsilon\\
        b_t &= \mu b_{t-1} + g_t / a_t,\quad p_t = p_{t-1} - \gamma b_t \quad(\mu > 0)\\
        p_t &= p_{t-1} - \gamma g_t / a_t \quad(\mu = 0)

    Symbols: γ = ``lr``, α = ``alpha``, ε = ``eps``, λ = ``weight_decay``, μ = ``momentum``;
    v, ḡ, b are states ``square_avg``, ``grad_avg``, ``momentum_buffer``, all starting at 0.
    There is no bias correction; ε is outside the square root; a centered variance that rounds
    below zero gives NaN, as in torch.

    .. warning:: optax and Keras put ε inside the square root, and TF1 starts v at 1.
    """
    xp = namespace(p)
    if maximize:
        g = -g
    st["step"] = st["step"] + 1.0
    if weight_decay != 0:
        g = g + weight_decay * p
    v = st["square_avg"]
    v[...] = alpha * v + ((1 - alpha) * g) * g
    if centered:
        ga = st["grad_avg"]
        ga[...] = lerp(ga, g, 1 - alpha)
        avg = xp.sqrt(v + (-1 * ga) * ga)
    else:
        avg = xp.sqrt(v)
    avg = avg + eps
    if momentum > 0:
        buf = st["momentum_buffer"]
        buf[...] = momentum * buf + (1 * g) / avg
        p[...] = p + -lr * buf
    else:
        p[...] = p + (-lr * g) / avg


def adam(p: Array, g: Array, st: State, *, lr: float, betas: tuple[float, float], eps: float,
         weight_decay: float, amsgrad: bool, maximize: bool, decoupled: bool = False) -> None:
    r"""Adam and AdamW (torch.optim.Adam / AdamW), Algorithm 1 of Kingma & Ba.

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) \; [+\, \lambda p_{t-1} \text{ (Adam)}], \qquad
        p_{t-1} \leftarrow p_{t-1}(1 - \gamma\lambda) \text{ (AdamW, before the moments)}\\
        m_t &= m_{t-1} + (1-\beta_1)(g_t - m_{t-1})\\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        \hat v_t = \max(\hat v_{t-1}, v_t) \text{ (amsgrad)}\\
        p_t &= p_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Symbols: γ = ``lr``, β = ``betas``, ε = ``eps``, λ = ``weight_decay``; m, v, v̂ are states
    ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``. AMSGrad takes the maximum over the raw
    (not bias-corrected) v and divides it by the current √(1-β₂ᵗ).

    .. warning:: ε is added after the bias-corrected square root (TensorFlow's "epsilon hat"
       form differs), and AdamW multiplies the decay by ``lr`` (the paper by the schedule only).
    """
    xp = namespace(p)
    beta1, beta2 = betas
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if weight_decay != 0:
        if decoupled:
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m, v = st["exp_avg"], st["exp_avg_sq"]
    m[...] = lerp(m, g, 1 - beta1)
    v[...] = beta2 * v + ((1 - beta2) * g) * g
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    if amsgrad:
        vmax = st["max_exp_avg_sq"]
        vmax[...] = xp.maximum(vmax, v)
        denom = xp.sqrt(vmax) / bias_correction2_sqrt + eps
    else:
        denom = xp.sqrt(v) / bias_correction2_sqrt + eps
    p[...] = p + (-step_size * m) / denom


def adamw(p: Array, g: Array, st: State, **hyper: Any) -> None:
    """AdamW: :func:`adam` with decoupled weight decay."""
    adam(p, g, st, decoupled=True, **hyper)


RULES = {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adamw}
