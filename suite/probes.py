"""Gradient probes: the gradient sequences that optimizers are run on when they are compared.

A probe fixes the initial parameters and, at every step, hands out one gradient per parameter
(or ``None``: that parameter has no gradient this step and must not change). Gradients may depend
on the current parameters (``model``), so each run computes them from its own iterates.

Probes are designed to expose real bugs, not just to exercise code:

``scaled``     every coordinate has its own fixed magnitude, log-spaced from 1e-8 to 1e3, with a
               random sign and a factor in [0.5, 2] each step; eps placement, missing bias
               correction and coupled-vs-decoupled decay show up at one end of the range or
               the other.
``decay``      gradients shrink by 10 orders of magnitude over the run, then grow back: catches
               AMSGrad's maximum taken over the wrong quantity and accumulators that forget.
``sparse``     many exact zeros, and coordinates that switch sign every step: catches momentum
               and centred-average mistakes that cancel out on smooth gradients.
``model``      real gradients of ``Linear(2,3) -> Sigmoid -> Linear(3,1) -> Sigmoid`` plus a 0-dim
               parameter, with PyTorch's own schedule: no gradients at all at step 2 (the step must
               be a no-op) and the first layer frozen at steps 3 and 4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from suite.activations import sigmoid

Grads = list[np.ndarray | None]


@dataclass(frozen=True)
class Probe:
    """A named gradient source: initial parameters and ``grads(step, params) -> list``."""

    name: str
    init: Callable[[np.random.Generator], list[np.ndarray]]
    grads: Callable[[int, Sequence[np.ndarray], np.random.Generator], Grads]
    description: str = ""
    seed: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)

    def initial_params(self) -> list[np.ndarray]:
        return [np.array(p, dtype=np.float64) for p in self.init(self._rng(-1))]

    def _rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step + 1, 12345])

    def grad_at(self, step: int, params: Sequence[np.ndarray]) -> Grads:
        """Float64 gradients for 0-based ``step`` at ``params`` (NumPy, float64)."""
        if "fixed" in self.tags:  # independent of params: computed once per step and reused
            return _fixed_grads(self, step)
        return _as_arrays(self.grads(step, params, self._rng(step)))


def _as_arrays(grads: Grads) -> Grads:
    return [None if g is None else np.asarray(g, dtype=np.float64) for g in grads]


@functools.lru_cache(maxsize=4096)
def _fixed_grads(probe: Probe, step: int) -> Grads:
    grads = _as_arrays(probe.grads(step, probe.initial_params(), probe._rng(step)))
    for g in grads:
        if g is not None:
            g.flags.writeable = False
    return grads


_SHAPES = ((6, 5), (9,), ())


def _init_mixed(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(s) for s in _SHAPES]


def _magnitudes() -> list[np.ndarray]:
    sizes = [int(np.prod(s)) for s in _SHAPES]
    mags = np.logspace(-8, 3, sum(sizes))
    mags = np.random.default_rng(7).permutation(mags)
    out, start = [], 0
    for s, n in zip(_SHAPES, sizes, strict=True):
        out.append(mags[start:start + n].reshape(s))
        start += n
    return out


_MAGS = _magnitudes()


def _scaled(step: int, params: Sequence[np.ndarray], rng: np.random.Generator) -> Grads:
    return [m * rng.choice([-1.0, 1.0], m.shape) * rng.uniform(0.5, 2.0, m.shape) for m in _MAGS]


def _decay(step: int, params: Sequence[np.ndarray], rng: np.random.Generator) -> Grads:
    # 10^0 down to 10^-10 over the first 100 steps, then back up, repeating with period 200.
    phase = step % 200
    level = 10.0 ** (-phase / 10 if phase < 100 else -(200 - phase) / 10)
    return [level * rng.uniform(0.5, 2.0, np.shape(p)) * np.sign(rng.uniform(-0.3, 1.0, np.shape(p)))
            for p in params]


def _sparse(step: int, params: Sequence[np.ndarray], rng: np.random.Generator) -> Grads:
    out: Grads = []
    for p in params:
        shape = np.shape(p)
        g = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 2, shape)
        g = np.where(rng.uniform(size=shape) < 0.4, 0.0, g)
        alternating = (-1.0) ** step * 3.0
        out.append(np.where(rng.uniform(size=shape) < 0.2, alternating, g))
    return out


# A 2-3-1 sigmoid network on fixed data, with a scalar output offset.
_X = np.random.default_rng(3).standard_normal((16, 2))
_Y = (np.random.default_rng(4).uniform(size=(16, 1)) > 0.5).astype(np.float64)


def _init_model(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.uniform(-0.7, 0.7, (3, 2)), rng.uniform(-0.7, 0.7, (3,)),
            rng.uniform(-0.5, 0.5, (1, 3)), rng.uniform(-0.5, 0.5, (1,)), np.array(0.3)]


def model_loss_and_grads(params: Sequence[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """Mean squared error of the 2-3-1 sigmoid network plus 0.1·c², and its gradient.

    Backpropagation written out (delta rule) in float64; the tests check it against autograd.
    """
    w1, b1, w2, b2, c = (np.asarray(p, dtype=np.float64) for p in params)
    h = sigmoid(_X @ w1.T + b1)
    s = sigmoid(h @ w2.T + b2)
    out = s + c
    n = _X.shape[0]
    loss = float(np.mean((out - _Y) ** 2) + 0.1 * c**2)
    d_out = 2.0 * (out - _Y) / n
    d_z2 = d_out * s * (1.0 - s)
    d_z1 = (d_z2 @ w2) * h * (1.0 - h)
    grads = [d_z1.T @ _X, d_z1.sum(axis=0), d_z2.T @ h, d_z2.sum(axis=0),
             np.asarray(d_out.sum() + 0.2 * c)]
    return loss, grads


def _model(step: int, params: Sequence[np.ndarray], rng: np.random.Generator) -> Grads:
    if step == 2:
        return [None] * len(params)
    _, grads = model_loss_and_grads(params)
    out: Grads = list(grads)
    if step in (3, 4):
        out[0] = out[1] = None
    return out


PROBES: dict[str, Probe] = {
    "scaled": Probe("scaled", _init_mixed, _scaled,
                    "per-coordinate magnitudes 1e-8..1e3, random signs", tags=("fixed",)),
    "decay": Probe("decay", _init_mixed, _decay,
                   "magnitudes shrink 10 decades, then grow back", tags=("fixed",)),
    "sparse": Probe("sparse", _init_mixed, _sparse,
                    "exact zeros and sign-alternating coordinates", tags=("fixed",)),
    "model": Probe("model", _init_model, _model,
                   "2-3-1 sigmoid MLP, None-grad step, frozen layer", tags=("model",)),
}


def get_probe(name: str) -> Probe:
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; expected one of {', '.join(PROBES)}")
    return PROBES[name]

