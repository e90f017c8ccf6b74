"""Vanishing and exploding gradients of deep MLPs at initialisation, next to mean-field theory.

``run(activation, init, depth, width, batch, seed=0, backend="torch")`` builds an MLP with
``depth`` weight layers (``depth - 1`` hidden layers of ``width`` units with the activation, and
a linear output layer), does one forward and backward pass on a seeded batch, and returns one
row per layer l = 1..depth with:

``preact_grad_norm``  ‖∂L/∂z_l‖ (Frobenius over the batch), computed in float64
``weight_grad_norm``  ‖∂L/∂W_l‖
``preact_mean/std``, ``act_mean/std``   statistics of z_l and f(z_l)
``saturated_frac``    units-and-samples with |f'(z)| below 1 % of max |f'| (sigmoid, tanh, ...)
``dead_frac``         units whose activation is exactly 0 for the whole batch (ReLU family)
``measured_factor``   ‖∂L/∂z_l‖ / ‖∂L/∂z_{l+1}‖
``empirical_factor``  √(n_l Var(W_{l+1}) · mean f'(z_l)²) from this pass's own z_l
``predicted_factor``  √(n_l Var(W_{l+1}) · E_u[f'(√q_l u)²]), u ~ N(0, 1), q_l from the
                      mean-field variance map q_{l+1} = n_l Var(W_{l+1}) E_u[f(√q_l u)²]

and :func:`summary` gives ``R_z = log10(‖∂L/∂z_1‖ / ‖∂L/∂z_L‖)`` measured and predicted
(Σ log10 predicted_factor) with a verdict: ``vanishing`` below -1 (more than tenfold),
``exploding`` above +1, ``stable`` between. A norm that underflows to 0 gives R_z = -inf
(``vanished``); one that overflows gives +inf (``exploded``): reported, never raised.

Backends: ``numpy`` and ``numba`` use the hand-written delta rule of :mod:`suite.mlp` (with the
activation kernels of that backend); ``torch`` uses autograd on the same weights.

``activation`` is a built-in name or a user's elementwise activation on torch tensors (a
function, an ``nn.Module`` instance or class, an ``autograd.Function``): the torch backend runs
it, and the mean-field prediction integrates its values and its autograd derivative on the
same quadrature grid as for the built-ins (:class:`CallableActivation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from suite import activations, mlp

VERDICT_DECADES = 1.0
# Simpson's rule on each half line [-12, -0] and [+0, 12] separately: ReLU, ELU and SELU have
# a kink at 0 and their derivatives a jump, where Gauss-Hermite quadrature converges slowly
# (200 nodes leave 1e-4 errors). The inner end points are ±1e-300, so each half sees its own
# one-sided limit; the result is accurate to ~1e-10.
_HALF = np.linspace(0.0, 12.0, 24001)
_HALF[0] = 1e-300
_PDF = np.exp(-0.5 * _HALF * _HALF) / math.sqrt(2 * math.pi)


def gaussian_expectation(fn: Any, q: float) -> float:
    """E[fn(√q u)] for u ~ N(0, 1), by numerical integration."""
    from scipy.integrate import simpson

    s = math.sqrt(max(q, 0.0))
    with np.errstate(all="ignore"):
        right = simpson(np.asarray(fn(s * _HALF), dtype=np.float64) * _PDF, x=_HALF)
        left = simpson(np.asarray(fn(-s * _HALF), dtype=np.float64) * _PDF, x=_HALF)
    return float(right + left)


@dataclass(frozen=True)
class CallableActivation:
    """A user's elementwise activation on torch tensors, evaluated on NumPy arrays in float64:
    ``forward`` its values, ``derivative`` its autograd derivative (backward of the sum)."""

    fn: Callable[[Any], Any]
    name: str

    @classmethod
    def wrap(cls, fn: Any) -> CallableActivation:
        import torch

        if isinstance(fn, CallableActivation):
            return fn
        target = fn
        if isinstance(fn, type) and issubclass(fn, torch.autograd.Function):
            target = fn.apply
        elif isinstance(fn, type) and issubclass(fn, torch.nn.Module):
            target = fn()
        if not callable(target):
            raise TypeError(f"activation must be a built-in name or a callable on tensors, "
                            f"got {type(fn).__name__}")
        owner = fn if isinstance(fn, type) or hasattr(fn, "__qualname__") else type(fn)
        return cls(target, getattr(owner, "__qualname__", repr(fn)))

    def _eval(self, z: np.ndarray, grad: bool) -> np.ndarray:
        import torch

        t = torch.tensor(np.asarray(z, np.float64), requires_grad=grad)
        y = self.fn(t)
        if not grad:
            return y.detach().numpy()
        y.sum().backward()
        return t.grad.numpy()  # type: ignore[union-attr]

    def forward(self, z: np.ndarray) -> np.ndarray:
        return self._eval(z, False)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        return self._eval(z, True)

    @property
    def max_derivative(self) -> float:
        """sup |f'| on [-12, 12] (for the ``saturated_frac`` threshold)."""
        return float(np.max(np.abs(self.derivative(np.linspace(-12, 12, 24001)))))


def _activation(activation: Any, **act_params: Any) -> Any:
    """The activation's object with ``forward``/``derivative`` on arrays, and its name."""
    if isinstance(activation, str):
        act = activations.get(activation, **act_params)
        if act.spec.derivative is None:
            raise ValueError(f"{activation} is not elementwise; mean-field theory here needs "
                             "f'(z)")
        return act
    if act_params:
        raise TypeError(f"parameters {sorted(act_params)} go with a built-in activation name; "
                        "bind them into the callable instead")
    return CallableActivation.wrap(activation)


def mean_field(activation: Any, init: str, widths: Sequence[int], input_second_moment: float
               = 1.0, **act_params: Any) -> pd.DataFrame:
    """Per hidden layer l: q_l (pre-activation variance), χ_l and the predicted factor.

    ``activation``: a built-in name or a callable on tensors (see the module docstring)."""
    act = _activation(activation, **act_params)
    rows = []
    q = widths[0] * mlp.weight_variance(init, widths[0], widths[1]) * input_second_moment
    for layer in range(1, len(widths) - 1):
        n_l, n_next = widths[layer], widths[layer + 1]
        s2 = n_l * mlp.weight_variance(init, n_l, n_next)
        chi = s2 * gaussian_expectation(lambda z: act.derivative(z) ** 2, q)
        rows.append({"layer": layer, "q": q, "chi": chi, "predicted_factor": math.sqrt(chi)})
        q = s2 * gaussian_expectation(lambda z: act.forward(z) ** 2, q)
    return pd.DataFrame(rows)


def fixed_point(activation: Any, sigma_w2: float, q0: float = 1.0, iters: int = 2000,
                **act_params: Any) -> float:
    """q* of q ← σ_w² E[f(√q u)²] (iterated from q0).

    ``activation``: an elementwise built-in name or a callable on tensors, as for
    :func:`mean_field`."""
    act = _activation(activation, **act_params)
    q = q0
    for _ in range(iters):
        q = sigma_w2 * gaussian_expectation(lambda z: act.forward(z) ** 2, q)
    return q


def _norm(x: Any) -> float:
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64)))


def run(activation: Any, init: str, depth: int, width: int, batch: int, seed: int = 0,
        backend: str = "torch", loss: str = "mse", input_dist: str = "normal",
        in_features: int | None = None, out_features: int = 10, dtype: str = "float64",
        **act_params: Any) -> pd.DataFrame:
    """One row per layer (see the module docstring)."""
    if depth < 2:
        raise ValueError(f"depth={depth}; need at least 2 weight layers (one hidden layer)")
    if width < 1 or batch < 1:
        raise ValueError(f"width={width} and batch={batch} must be positive")
    if backend not in ("numpy", "numba", "torch"):
        raise ValueError(f"unknown backend {backend!r}; expected numpy, numba or torch")
    if input_dist not in ("normal", "uniform"):
        raise ValueError(f"input_dist={input_dist!r}; expected 'normal' or 'uniform'")
    user = None if isinstance(activation, str) else _activation(activation, **act_params)
    if user is not None and backend != "torch":
        raise ValueError(f"backend={backend!r}: a callable activation runs on the torch "
                         "backend only")
    rng = np.random.default_rng(seed)
    n_in = in_features or width
    widths = [n_in] + [width] * (depth - 1) + [out_features]
    ws, bs = mlp.init_weights(widths, init, rng)
    x = (rng.standard_normal((batch, n_in)) if input_dist == "normal"
         else rng.uniform(-math.sqrt(3), math.sqrt(3), (batch, n_in)))
    target: Any = (rng.standard_normal((batch, out_features)) if loss == "mse"
                   else rng.integers(0, out_features, batch))
    # a user's callable replaces the (unused) built-in activation in the torch pass below
    net = mlp.MLP([w.astype(dtype) for w in ws], [b.astype(dtype) for b in bs],
                  activation if user is None else "relu", act_params or None,
                  backend="numpy" if backend == "torch" else backend)
    xd = x.astype(dtype)
    tg = target.astype(dtype) if loss == "mse" else target
    if backend == "torch":
        import torch

        p = mlp.torch_gradients(net, xd, tg, loss, dtype=getattr(torch, dtype),
                                activation_fn=None if user is None else user.fn)
    else:
        p = mlp.run(net, xd, tg, loss)
    act: Any = net.act if user is None else user
    elementwise = user is not None or net.act.spec.derivative is not None
    max_derivative = user.max_derivative if user is not None else net.act.spec.max_derivative
    mf = mean_field(user if user is not None else activation, init, widths, 1.0,
                    **act_params) if elementwise else None
    label = activation if user is None else user.name
    rows = []
    norms = [_norm(d) for d in p.delta]
    for layer in range(1, depth + 1):
        z = np.asarray(p.z[layer - 1], dtype=np.float64)
        row: dict[str, Any] = {
            "activation": label, "init": init, "depth": depth, "width": width,
            "batch": batch, "seed": seed, "backend": backend, "loss": loss, "dtype": dtype,
            "layer": layer, "units": z.shape[1],
            "preact_grad_norm": norms[layer - 1],
            "weight_grad_norm": _norm(p.grad_w[layer - 1]),
            "preact_mean": float(z.mean()), "preact_std": float(z.std()),
        }
        if layer < depth:
            with np.errstate(all="ignore"):
                h = np.asarray(act.forward(z), dtype=np.float64)
                fp = np.asarray(act.derivative(z), dtype=np.float64) if elementwise else None
            n_l, n_next = widths[layer], widths[layer + 1]
            s2 = n_l * mlp.weight_variance(init, n_l, n_next)
            row.update({
                "act_mean": float(h.mean()), "act_std": float(h.std()),
                "dead_frac": float(np.mean(np.all(h == 0, axis=0))),
                "saturated_frac": float(np.mean(np.abs(fp) < 0.01 * max_derivative))
                if fp is not None else np.nan,
                "empirical_factor": math.sqrt(s2 * float(np.mean(fp**2)))
                if fp is not None else np.nan,
                "measured_factor": _ratio(norms[layer - 1], norms[layer]),
                "predicted_factor": float(mf.loc[mf.layer == layer, "predicted_factor"].iloc[0])
                if mf is not None else np.nan,
                "q_predicted": float(mf.loc[mf.layer == layer, "q"].iloc[0])
                if mf is not None else np.nan,
            })
        rows.append(row)
    return pd.DataFrame(rows)


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return math.inf if a > 0 else math.nan
    return a / b


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per network: measured and predicted R_z and the verdict."""
    keys = [c for c in ("activation", "init", "depth", "width", "batch", "seed", "backend",
                        "loss", "dtype") if c in frame]
    rows = []
    for key, sub in frame.groupby(keys, sort=False):
        sub = sub.sort_values("layer")
        first, last = sub["preact_grad_norm"].iloc[0], sub["preact_grad_norm"].iloc[-1]
        with np.errstate(all="ignore"):
            if first == 0:
                r_z = -math.inf
            elif last == 0 or not math.isfinite(first):
                r_z = math.inf
            else:
                r_z = math.log10(first / last)
            # a predicted factor of 0 (f' = 0 almost everywhere) gives -inf, not a warning
            pred = float(np.sum(np.log10(sub["predicted_factor"].dropna())))
        verdict = ("vanished" if r_z == -math.inf else "exploded" if r_z == math.inf else
                   "vanishing" if r_z < -VERDICT_DECADES else
                   "exploding" if r_z > VERDICT_DECADES else "stable")
        rows.append({**dict(zip(keys, key, strict=True)), "R_z": r_z, "R_z_predicted": pred,
                     "verdict": verdict,
                     "max_saturated_frac": float(sub["saturated_frac"].max()),
                     "max_dead_frac": float(sub["dead_frac"].max())})
    return pd.DataFrame(rows)


def elementwise_activations() -> list[str]:
    return list(activations.ELEMENTWISE)


def _cell(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    activation, init, depth, width, batch, seed, backend = args
    return run(activation, init, depth, width, batch, seed, backend).to_dict("records")


def sweep(activations_: Sequence[str], inits: Sequence[str], depths: Sequence[int],
          seeds: Sequence[int], width: int = 128, batch: int = 64, backend: str = "torch",
          jobs: int = 1, dask: str | None = None, progress: bool = False,
          checkpoint: Any = None) -> pd.DataFrame:
    """The grid activations x inits x depths x seeds as independent cells (see suite.sweep)."""
    from suite.sweep import run_cells

    cells = [(a, i, d, width, batch, s, backend) for a in activations_ for i in inits
             for d in depths for s in seeds]
    return pd.DataFrame(run_cells(_cell, cells, jobs=jobs, dask=dask,
                                  progress="gradient statistics" if progress else None,
                                  checkpoint=checkpoint))
