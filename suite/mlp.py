"""A multi-layer perceptron with its backward pass written out (the delta rule), and its torch twin.

Layers l = 1..L: ``z_l = h_{l-1} W_lᵀ + b_l`` (a batch in rows), ``h_l = f(z_l)`` for hidden
layers, and a linear output ``z_L`` that the loss takes. Backpropagation, as taught:

    δ_L = ∂L/∂z_L                                  (the loss gradient)
    δ_l = f'(z_l) ⊙ (δ_{l+1} W_{l+1})              (hidden delta; a VJP for softmax-like f)
    ∂L/∂W_l = δ_lᵀ h_{l-1},   ∂L/∂b_l = Σ_batch δ_l

Activations come from :mod:`suite.activations` (NumPy or Numba kernels), losses from
:mod:`suite.losses`; matrix products are NumPy's (BLAS). :func:`torch_gradients` computes the same
quantities with torch autograd on the same weights, for checking.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from suite import activations, losses


@dataclass
class MLP:
    """Weights ``W[l]`` of shape (n_l, n_{l-1}) and biases ``b[l]``; one hidden activation."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str = "tanh"
    activation_params: dict[str, Any] | None = None
    backend: str = "numpy"

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError(f"got {len(self.weights)} weight matrices and {len(self.biases)} "
                             "bias vectors; expected the same non-zero number")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise ValueError(f"layer {i + 1}: weight shape {w.shape} and bias shape "
                                 f"{b.shape} do not fit")
            if i and w.shape[1] != self.weights[i - 1].shape[0]:
                raise ValueError(f"layer {i + 1} takes {w.shape[1]} inputs but layer {i} "
                                 f"has {self.weights[i - 1].shape[0]} outputs")
        if self.backend not in ("numpy", "numba"):
            raise ValueError(f"MLP backend {self.backend!r}; expected 'numpy' or 'numba'")
        self.act = activations.get(self.activation, backend=self.backend,
                                   **(self.activation_params or {}))

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> list[int]:
        return [self.weights[0].shape[1], *(w.shape[0] for w in self.weights)]


@dataclass
class Pass:
    """Everything one forward and backward pass computed, per layer (index 0 = layer 1)."""

    loss: float
    z: list[np.ndarray]        # pre-activations z_l
    h: list[np.ndarray]        # inputs of each layer: h_0 = x, ..., h_{L-1}
    delta: list[np.ndarray]    # ∂L/∂z_l
    grad_w: list[np.ndarray]
    grad_b: list[np.ndarray]


def forward(net: MLP, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pre-activations z_1..z_L and layer inputs h_0..h_{L-1}."""
    if x.ndim != 2 or x.shape[1] != net.widths[0]:
        raise ValueError(f"input has shape {x.shape}; expected (batch, {net.widths[0]})")
    hs, zs = [x], []
    for i, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        z = hs[-1] @ w.T + b
        zs.append(z)
        if i < net.depth - 1:
            hs.append(net.act.forward(z))
    return zs, hs


def backward(net: MLP, zs: Sequence[np.ndarray], hs: Sequence[np.ndarray], dout: np.ndarray
             ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Deltas and parameter gradients from ∂L/∂z_L (the delta rule)."""
    deltas: list[np.ndarray] = [np.empty(0)] * net.depth
    deltas[-1] = dout
    for layer in range(net.depth - 2, -1, -1):
        back = deltas[layer + 1] @ net.weights[layer + 1]   # ∂L/∂h_l
        deltas[layer] = net.act.backward(zs[layer], back)    # f'(z_l) ⊙ ∂L/∂h_l
    grad_w = [d.T @ h for d, h in zip(deltas, hs, strict=True)]
    grad_b = [d.sum(axis=0) for d in deltas]
    return deltas, grad_w, grad_b


def run(net: MLP, x: np.ndarray, target: Any, loss: str = "mse", reduction: str = "mean",
        **loss_params: Any) -> Pass:
    """One forward and backward pass with ``loss`` on the output."""
    zs, hs = forward(net, x)
    lossfn = losses.get(loss, backend=net.backend, **loss_params)
    value = float(lossfn.value(zs[-1], target, reduction))
    dout = lossfn.grad(zs[-1], target, reduction)
    deltas, gw, gb = backward(net, zs, hs, dout)
    return Pass(value, zs, hs, deltas, gw, gb)


def torch_gradients(net: MLP, x: np.ndarray, target: Any, loss: str = "mse",
                    reduction: str = "mean", dtype: Any = None, activation_fn: Any = None,
                    **loss_params: Any) -> Pass:
    """The same pass with torch autograd on the same weights (float64 unless ``dtype``);
    ``activation_fn`` (a callable on tensors) replaces the net's activation if given."""
    import torch

    dt = dtype or torch.float64
    ws = [torch.tensor(w, dtype=dt, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(b, dtype=dt, requires_grad=True) for b in net.biases]
    h = torch.tensor(x, dtype=dt)
    fn = activation_fn if activation_fn is not None else net.act.torch_fn()
    zs, hs = [], [h]
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        z = hs[-1] @ w.T + b
        z.retain_grad()
        zs.append(z)
        if i < net.depth - 1:
            hs.append(fn(z))
    tgt = target
    if isinstance(target, np.ndarray):
        tgt = torch.from_numpy(target) if target.dtype.kind in "iu" else \
            torch.tensor(target, dtype=dt)
    lossfn = losses.get(loss, **loss_params)
    value = lossfn.torch_value(zs[-1], tgt, reduction)
    value.backward()
    return Pass(float(value.detach()), [z.detach().numpy() for z in zs],
                [h.detach().numpy() for h in hs],
                [z.grad.numpy() for z in zs],  # type: ignore[union-attr]
                [w.grad.numpy() for w in ws],  # type: ignore[union-attr]
                [b.grad.numpy() for b in bs])  # type: ignore[union-attr]


def init_weights(widths: Sequence[int], init: str, rng: np.random.Generator,
                 dtype: Any = np.float64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights by a named initialisation (see :data:`INITS`), biases zero."""
    if init not in INITS:
        raise ValueError(f"unknown initialisation {init!r}; expected one of "
                         f"{', '.join(INITS)}")
    ws, bs = [], []
    for n_in, n_out in itertools.pairwise(widths):
        ws.append(INITS[init](n_in, n_out, rng).astype(dtype))
        bs.append(np.zeros(n_out, dtype=dtype))
    return ws, bs


def _orthogonal(n_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q if n_out >= n_in else q.T


def _uniform(bound: float, n_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-bound, bound, (n_out, n_in))


#: name -> sampler(n_in, n_out, rng) -> W of shape (n_out, n_in). Variances in comments.
INITS: dict[str, Any] = {
    "normal_1": lambda i, o, r: r.standard_normal((o, i)),                  # Var = 1
    "normal_0.01": lambda i, o, r: 0.01 * r.standard_normal((o, i)),        # Var = 1e-4
    # torch's nn.Linear default, kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)), Var = 1/(3 fan_in)
    "torch_default": lambda i, o, r: _uniform(1 / np.sqrt(i), i, o, r),
    "xavier_normal": lambda i, o, r: np.sqrt(2 / (i + o)) * r.standard_normal((o, i)),
    "xavier_uniform": lambda i, o, r: _uniform(np.sqrt(6 / (i + o)), i, o, r),
    "he_normal": lambda i, o, r: np.sqrt(2 / i) * r.standard_normal((o, i)),
    "he_uniform": lambda i, o, r: _uniform(np.sqrt(6 / i), i, o, r),
    "lecun_normal": lambda i, o, r: np.sqrt(1 / i) * r.standard_normal((o, i)),
    "orthogonal": _orthogonal,
}


def weight_variance(init: str, n_in: int, n_out: int) -> float:
    """Var(W_ij) of an initialisation (for orthogonal: 1/max(n_in, n_out), its mean square)."""
    return {
        "normal_1": 1.0, "normal_0.01": 1e-4, "torch_default": 1 / (3 * n_in),
        "xavier_normal": 2 / (n_in + n_out), "xavier_uniform": 2 / (n_in + n_out),
        "he_normal": 2 / n_in, "he_uniform": 2 / n_in, "lecun_normal": 1 / n_in,
        "orthogonal": 1 / max(n_in, n_out),
    }[init]
