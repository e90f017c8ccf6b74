"""Reference update rules: readable maths in torch.optim's order of operations.

Rules: SGD, Adagrad, RMSprop, Adam, AdamW, NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD and
Adafactor, each mirroring the ``_single_tensor_*`` function of its torch.optim class.

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
- Scalar state that torch keeps as a 0-dim tensor besides ``step`` (NAdam's ``mu_product``,
  ASGD's ``eta`` and ``mu``) is a 0-dim array (a 0-dim CPU tensor on the torch backend) of
  torch's scalar dtype: float32, or float64 when torch's default dtype is float64. It is rounded
  to that dtype at every update, as torch rounds it, and read back as a Python float where torch
  calls ``.item()``.
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


def scalar_dtype() -> Any:
    """torch's dtype for 0-dim optimizer state (``_get_scalar_dtype``), as a NumPy dtype.

    float64 if torch is imported and its default dtype is float64, else float32.
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_default_dtype() == torch.float64:
        return np.float64
    return np.float32


def scalar(x: Array, value: float) -> Array:
    """A 0-dim array (CPU tensor for tensors) of torch's scalar dtype holding ``value``."""
    if isinstance(x, np.ndarray):
        return np.array(value, dtype=scalar_dtype())
    import torch

    return torch.tensor(value, dtype=torch.float64 if scalar_dtype() is np.float64
                        else torch.float32)


def sign(x: Array) -> Array:
    """torch.sign: -1, 0 or 1, and 0 for NaN (NumPy's sign gives NaN there)."""
    if isinstance(x, np.ndarray | np.generic):
        out = np.array(np.sign(x))
        out[np.isnan(out)] = 0
        return out
    import torch

    return torch.sign(x)


def norm(x: Array, axis: int | None = None) -> Array:
    """The 2-norm (over ``axis``, dimensions kept), as torch.norm computes it."""
    if isinstance(x, np.ndarray | np.generic):
        if axis is None:
            return np.sqrt(np.sum(x * x))
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    import torch

    if axis is None:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=axis, keepdim=True)


def clamp(x: Array, lo: float, hi: float) -> Array:
    """torch.clamp(x, lo, hi): NaN propagates; where lo > hi every value becomes hi."""
    if isinstance(x, np.ndarray | np.generic):
        return np.minimum(np.maximum(x, lo), hi)
    return x.clamp(lo, hi)


def clamp_min(x: Array, lo: float) -> Array:
    """max(x, lo) elementwise, NaN propagating (torch.clamp(min=lo))."""
    if isinstance(x, np.ndarray | np.generic):
        return np.maximum(x, lo)
    return x.clamp(min=lo)


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
    if name in ("radam", "nadam"):
        st = {"step": 0.0, "exp_avg": xp.zeros_like(p), "exp_avg_sq": xp.zeros_like(p)}
        if name == "nadam":
            st["mu_product"] = scalar(p, 1.0)
        return st
    if name == "adamax":
        return {"step": 0.0, "exp_avg": xp.zeros_like(p), "exp_inf": xp.zeros_like(p)}
    if name == "adadelta":
        return {"step": 0.0, "square_avg": xp.zeros_like(p), "acc_delta": xp.zeros_like(p)}
    if name == "rprop":  # the initial step size is the group's lr at the first step
        return {"step": 0.0, "prev": xp.zeros_like(p),
                "step_size": xp.full_like(p, hyper["lr"])}
    if name == "asgd":  # eta starts at the group's lr at the first step
        return {"step": 0.0, "eta": scalar(p, hyper["lr"]), "mu": scalar(p, 1.0),
                "ax": xp.zeros_like(p)}
    if name == "adafactor":
        if p.ndim > 1:
            return {"step": 0.0, "row_var": xp.zeros_like(p[..., :1]),
                    "col_var": xp.zeros_like(p[..., :1, :])}
        return {"step": 0.0, "variance": xp.zeros_like(p)}
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


def adam_moments(p: Array, g: Array, st: State, *, lr: float, betas: tuple[float, float],
                 weight_decay: float, decoupled: bool, maximize: bool
                 ) -> tuple[float, Array, Array]:
    """The start Adam and RAdam share, in torch's order: g negated for ``maximize``, the step
    counted, weight decay coupled (g + λp) or decoupled (p ← p(1 - γλ)), then the moments
    m ← lerp(m, g, 1 - β₁) and v ← β₂v + (1 - β₂)g² in place. Returns (step, m, v)."""
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
    return step, m, v


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
    step, m, v = adam_moments(p, g, st, lr=lr, betas=betas, weight_decay=weight_decay,
                              decoupled=decoupled, maximize=maximize)
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


def nadam(p: Array, g: Array, st: State, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float, momentum_decay: float, decoupled_weight_decay: bool,
          maximize: bool) -> None:
    r"""NAdam (torch.optim.NAdam), Dozat's Nesterov-accelerated Adam.

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) \; [+\, \lambda p_{t-1}], \qquad
        p_{t-1} \leftarrow p_{t-1}(1 - \gamma\lambda) \text{ (decoupled)}\\
        \mu_t &= \beta_1\bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr), \qquad
        \Pi_t = \prod_{i \le t} \mu_i\\
        m_t &= m_{t-1} + (1-\beta_1)(g_t - m_{t-1}), \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon\\
        p_t &= p_{t-1} - \frac{\gamma(1-\mu_t)}{1-\Pi_t}\frac{g_t}{d_t}
              - \frac{\gamma\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\frac{m_t}{d_t}

    Symbols: γ = ``lr``, β = ``betas``, ε = ``eps``, λ = ``weight_decay``, ψ =
    ``momentum_decay``; m, v, Π are states ``exp_avg``, ``exp_avg_sq``, ``mu_product``.
    Π is a 0-dim array of torch's scalar dtype (float32 by default), rounded at every
    product as torch rounds it; the step sizes use its rounded value in double precision.

    .. warning:: ε is added after the bias-corrected square root; with ψ = 0 the schedule is
       constant (μ_t = β₁/2), not β₁: the momentum-decay schedule is part of the rule.
    """
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
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product = st["mu_product"]
    mu_product[...] = mu_product * mu
    m, v = st["exp_avg"], st["exp_avg_sq"]
    m[...] = lerp(m, g, 1 - beta1)
    v[...] = beta2 * v + ((1 - beta2) * g) * g
    denom = xp.sqrt(v / bias_correction2)
    mu_product_value = float(mu_product)
    mu_product_next = mu_product_value * mu_next
    denom = denom + eps
    p[...] = p + ((-lr * (1.0 - mu) / (1.0 - mu_product_value)) * g) / denom
    p[...] = p + (((-lr * mu_next) / (1.0 - mu_product_next)) * m) / denom


def radam(p: Array, g: Array, st: State, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float, decoupled_weight_decay: bool, maximize: bool) -> None:
    r"""RAdam (torch.optim.RAdam), Liu et al.'s rectified Adam.

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) \; [+\, \lambda p_{t-1}], \qquad
        p_{t-1} \leftarrow p_{t-1}(1 - \gamma\lambda) \text{ (decoupled)}\\
        m_t &= m_{t-1} + (1-\beta_1)(g_t - m_{t-1}), \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}\\
        r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}\\
        p_t &= p_{t-1} - \gamma\frac{m_t}{1-\beta_1^t}\cdot
              \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\cdot r_t
              \quad\text{if } \rho_t > 5, \qquad
        p_t = p_{t-1} - \gamma\frac{m_t}{1-\beta_1^t} \quad\text{otherwise}

    Symbols: γ = ``lr``, β = ``betas``, ε = ``eps``, λ = ``weight_decay``; m, v are states
    ``exp_avg``, ``exp_avg_sq``. With the default β₂ = 0.999 the first five steps are
    un-rectified (bias-corrected SGD with momentum); the switch is per step, not per element.

    .. warning:: Without the switch (always rectifying) r_t is NaN for ρ_t < 4.
    """
    xp = namespace(p)
    beta1, beta2 = betas
    step, m, v = adam_moments(p, g, st, lr=lr, betas=betas, weight_decay=weight_decay,
                              decoupled=decoupled_weight_decay, maximize=maximize)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    bias_corrected_exp_avg = m / bias_correction1
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive_lr = (bias_correction2**0.5) / (xp.sqrt(v) + eps)
        p[...] = p - bias_corrected_exp_avg * lr * adaptive_lr * rect
    else:
        p[...] = p - bias_corrected_exp_avg * lr


def adamax(p: Array, g: Array, st: State, *, lr: float, betas: tuple[float, float], eps: float,
           weight_decay: float, maximize: bool) -> None:
    r"""Adamax (torch.optim.Adamax), Adam with the infinity norm (Kingma & Ba, §7.1).

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) + \lambda p_{t-1}\\
        m_t &= m_{t-1} + (1-\beta_1)(g_t - m_{t-1})\\
        u_t &= \max(\beta_2 u_{t-1},\ |g_t| + \epsilon)\\
        p_t &= p_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

    Symbols: γ = ``lr``, β = ``betas``, ε = ``eps``, λ = ``weight_decay``; m, u are states
    ``exp_avg``, ``exp_inf``.

    .. warning:: ε is added to |g| inside the maximum (the paper has no ε; Keras adds it to
       u after the maximum), so u ≥ ε from the first step.
    """
    xp = namespace(p)
    beta1, beta2 = betas
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if weight_decay != 0:
        g = g + weight_decay * p
    m, u = st["exp_avg"], st["exp_inf"]
    m[...] = lerp(m, g, 1 - beta1)
    u[...] = xp.maximum(u * beta2, xp.abs(g) + eps)
    clr = lr / (1 - beta1**step)
    p[...] = p + (-clr * m) / u


def adadelta(p: Array, g: Array, st: State, *, lr: float, rho: float, eps: float,
             weight_decay: float, maximize: bool) -> None:
    r"""Adadelta (torch.optim.Adadelta), Zeiler 2012, with a learning rate.

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) + \lambda p_{t-1}\\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2\\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t\\
        u_t &= \rho u_{t-1} + (1-\rho)\Delta_t^2\\
        p_t &= p_{t-1} - \gamma \Delta_t

    Symbols: γ = ``lr``, ρ = ``rho``, ε = ``eps`` (inside both square roots), λ =
    ``weight_decay``; v, u are states ``square_avg``, ``acc_delta``.

    .. warning:: The paper has no learning rate (γ = 1, torch's default); torch scales the
       update by γ but accumulates the unscaled Δ in u.
    """
    xp = namespace(p)
    st["step"] = st["step"] + 1.0
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    v, u = st["square_avg"], st["acc_delta"]
    v[...] = rho * v + ((1 - rho) * g) * g
    std = xp.sqrt(v + eps)
    delta = xp.sqrt(u + eps) / std * g
    u[...] = rho * u + ((1 - rho) * delta) * delta
    p[...] = p + -lr * delta


def rprop(p: Array, g: Array, st: State, *, lr: float, etas: tuple[float, float],
          step_sizes: tuple[float, float], maximize: bool) -> None:
    r"""Rprop (torch.optim.Rprop), resilient backpropagation in its Rprop⁻ form.

    .. math::
        s_t &= \operatorname{sign}(g_t\, g^*_{t-1}), \qquad
        \eta_t = \eta_+ \text{ if } s_t > 0,\ \eta_- \text{ if } s_t < 0,\ 1 \text{ otherwise}\\
        \delta_t &= \operatorname{clip}(\delta_{t-1}\eta_t,\ \delta_{\min}, \delta_{\max}),
        \qquad \delta_0 = \gamma\\
        g^*_t &= 0 \text{ where } \eta_t = \eta_-, \text{ else } g_t\\
        p_t &= p_{t-1} - \operatorname{sign}(g^*_t)\,\delta_t

    Symbols: g = ±gradient (− if ``maximize``), γ = ``lr`` (the initial step size only), η =
    ``etas`` = (η₋, η₊), (δ_min, δ_max) = ``step_sizes``; g^*, δ are states ``prev`` and
    ``step_size``. After a sign change the coordinate does not move and its stored gradient is
    zeroed, so the next step neither grows nor shrinks it. sign(NaN) is 0, as in torch.

    .. warning:: The sign rule compares the current gradient with the *stored* one (zeroed
       after a sign change), not with the raw previous gradient.
    """
    etaminus, etaplus = etas
    step_size_min, step_size_max = step_sizes
    st["step"] = st["step"] + 1.0
    if maximize:
        g = -g
    prev, step_size = st["prev"], st["step_size"]
    factor = sign(g * prev)  # then replaced in place by the factors, as torch does
    factor[factor > 0] = etaplus
    factor[factor < 0] = etaminus
    factor[factor == 0] = 1
    step_size[...] = clamp(step_size * factor, step_size_min, step_size_max)
    g = copy(g)
    g[factor == etaminus] = 0
    p[...] = p + (-1 * sign(g)) * step_size
    prev[...] = g


def asgd(p: Array, g: Array, st: State, *, lr: float, lambd: float, alpha: float, t0: float,
         weight_decay: float, maximize: bool) -> None:
    r"""ASGD (torch.optim.ASGD), averaged SGD with a decaying step (Polyak & Juditsky).

    .. math::
        g_t &= \pm\nabla f(p_{t-1}) + \lambda p_{t-1}\\
        p_t &= p_{t-1}(1 - \kappa\eta_{t-1}) - \eta_{t-1} g_t\\
        a_t &= a_{t-1} + \mu_{t-1}(p_t - a_{t-1}) \quad (a_t = p_t \text{ while } \mu = 1)\\
        \eta_t &= \gamma / (1 + \kappa\gamma t)^{\alpha}, \qquad
        \mu_t = 1 / \max(1, t - t_0)

    Symbols: γ = ``lr``, κ = ``lambd``, α = ``alpha``, t₀ = ``t0``, λ = ``weight_decay``;
    η, μ, a are states ``eta``, ``mu`` (0-dim, torch's scalar dtype; η₀ = γ, μ₀ = 1) and
    ``ax``. The parameters follow SGD; ``ax`` is their running average from step t₀ on.

    .. warning:: η and μ are updated *after* the step, so step t uses η_{t-1}; η₀ is the lr
       of the first step (later lr changes reach η only through this formula's γ).
    """
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if weight_decay != 0:
        g = g + weight_decay * p
    eta, mu, ax = st["eta"], st["mu"], st["ax"]
    eta_value = float(eta)
    p[...] = p * (1 - lambd * eta_value)
    p[...] = p + (-eta_value) * g
    mu_value = float(mu)
    if mu_value != 1:
        ax[...] = ax + (p - ax) * mu_value
    else:
        ax[...] = p
    # torch.as_tensor(value) first rounds to torch's default dtype, then copies into the state
    rounded = scalar_dtype()
    eta[...] = float(rounded(lr / ((1 + lambd * lr * step) ** alpha)))
    mu[...] = float(rounded(1 / max(1, step - t0)))


def adafactor(p: Array, g: Array, st: State, *, lr: float, beta2_decay: float,
              eps: tuple[float | None, float], d: float, weight_decay: float,
              maximize: bool) -> None:
    r"""Adafactor as torch.optim.Adafactor computes it (not the paper's exact variant).

    .. math::
        \hat\beta_{2,t} &= 1 - t^{\tau}, \qquad \rho_t = \min(\gamma, 1/\sqrt t), \qquad
        \alpha_t = \max(\epsilon_2, \mathrm{RMS}(p_{t-1}))\,\rho_t\\
        p_{t-1} &\leftarrow p_{t-1}(1 - \gamma\lambda)\\
        R_t &= \mathrm{lerp}(R_{t-1}, \mathrm{mean}_j\, g_{ij}^2, t^{\tau}), \quad
        C_t = \mathrm{lerp}(C_{t-1}, \mathrm{mean}_i\, g_{ij}^2, t^{\tau}), \quad
        \hat V_t = \frac{R_t C_t}{\max(\mathrm{mean}_i R_t, \epsilon_1)}
        \quad\text{(matrices)}\\
        \hat V_t &= \mathrm{lerp}(\hat V_{t-1}, g_t^2, t^{\tau}) \quad\text{(vectors, scalars)}\\
        U_t &= g_t / \sqrt{\max(\hat V_t, \epsilon_1^2)}, \qquad
        p_t = p_{t-1} - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)}\, U_t

    Symbols: g = ±gradient, γ = ``lr``, τ = ``beta2_decay``, (ε₁, ε₂) = ``eps`` (ε₁ None: the
    dtype's machine epsilon), d = ``d``, λ = ``weight_decay``; R, C, V̂ are states
    ``row_var`` (shape [..., m, 1]), ``col_var`` ([..., 1, n]) and ``variance``. For tensors
    with more than two dimensions the last two are factored, the others are batch dimensions.
    RMS(x) = ‖x‖₂/√numel(x), norms as ``torch.norm``: the row and column means are
    ‖g‖²/n computed as a norm then squared. α_t uses the parameter *before* weight decay.

    .. warning:: Not elementwise: the step of every coordinate depends on the whole tensor's
       RMS (and, factored, on its row and column). torch uses ε₁ only in V̂'s denominator and
       the clamp of V̂, not inside R and C as the paper does, and lr caps ρ_t (the paper: 0.01).
    """
    xp = namespace(p)
    eps1, eps2 = eps
    if maximize:
        g = -g
    st["step"] = step = st["step"] + 1.0
    if eps1 is None:
        eps1 = float(np.finfo(p.dtype).eps if xp is np else xp.finfo(p.dtype).eps)
    one_minus_beta2_t = step**beta2_decay
    rho_t = min(lr, 1 / (step**0.5))
    numel = int(np.prod(p.shape))
    alpha = max(eps2, float(norm(p)) / (numel**0.5)) * rho_t
    if weight_decay != 0:
        p[...] = p * (1 - lr * weight_decay)
    if p.ndim > 1:
        row_var, col_var = st["row_var"], st["col_var"]
        row_norm = norm(g, axis=-1)
        row_mean = row_norm * row_norm / g.shape[-1]
        row_var[...] = lerp(row_var, row_mean, one_minus_beta2_t)
        col_norm = norm(g, axis=-2)
        col_mean = col_norm * col_norm / g.shape[-2]
        col_var[...] = lerp(col_var, col_mean, one_minus_beta2_t)
        var_estimate = row_var @ col_var
        var_estimate = var_estimate / clamp_min(row_var.mean(axis=-2, keepdims=True), eps1)
    else:
        variance = st["variance"]
        variance[...] = lerp(variance, g * g, one_minus_beta2_t)
        var_estimate = copy(variance)
    update = 1 / xp.sqrt(clamp_min(var_estimate, eps1 * eps1))
    update = update * g
    denom = max(1.0, float(norm(update)) / ((numel**0.5) * d))
    p[...] = p + (-alpha / denom) * update


RULES = {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adamw,
         "nadam": nadam, "radam": radam, "adamax": adamax, "adadelta": adadelta,
         "rprop": rprop, "asgd": asgd, "adafactor": adafactor}
