"""Classic optimisation test functions with analytic gradients and known minima.

>>> p = problems.get("himmelblau")
>>> p.f(x), p.grad(x)          # x: (..., dim) -- a leading batch of points is allowed
>>> p.minimizers, p.f_min, p.domain

Values and gradients are written once for NumPy arrays and torch tensors (the tests check every
gradient against autograd); :mod:`suite.studies.convergence` compiles Numba twins for its
batched runner. Minimisers are given to 16 digits (Himmelblau's usual 6-digit values leave
f ≈ 1e-11). Where a function has very many local minima (Rastrigin, Ackley, Styblinski-Tang)
only the global minimiser is listed; three-hump camel and Goldstein-Price list their local
minima after the global one. ``noisy(problem, sigma)`` adds seeded Gaussian noise to gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = Any


def _ns(x: Any) -> Any:
    return np if isinstance(x, np.ndarray | np.generic) else __import__("torch")


def _stack(xp: Any, parts: list[Any]) -> Any:
    return xp.stack(parts, axis=-1) if xp is np else xp.stack(parts, dim=-1)


def _sum(xp: Any, x: Any) -> Any:
    return x.sum(axis=-1) if xp is np else x.sum(dim=-1)


@dataclass(frozen=True)
class Problem:
    name: str
    dim: int
    f_fn: Callable[[Any], Any]
    grad_fn: Callable[[Any], Any]
    domain: tuple[float, float]
    f_min: float
    minimizers: np.ndarray
    maxima: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    notes: str = ""
    noise: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def _check(self, x: Any) -> None:
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"{self.name}: points have shape {tuple(x.shape)}; expected "
                             f"(..., {self.dim})")

    def f(self, x: Array) -> Array:
        self._check(x)
        return self.f_fn(x)

    def grad(self, x: Array, rng: np.random.Generator | None = None) -> Array:
        """∇f at ``x``; with ``noise`` > 0, plus N(0, noise²) drawn from ``rng``."""
        self._check(x)
        g = self.grad_fn(x)
        if self.noise:
            if rng is None:
                raise ValueError(f"{self.name} is noisy: pass a seeded rng to grad()")
            # drawn in float64 (the same draws for every dtype and backend), added in the
            # gradient's dtype
            noise = rng.normal(0.0, self.noise, tuple(x.shape))
            g = g + (noise.astype(g.dtype) if isinstance(g, np.ndarray) else
                     __import__("torch").as_tensor(noise, dtype=g.dtype, device=g.device))
        return g

    def in_domain(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.domain
        return np.all((x >= lo) & (x <= hi), axis=-1)

    def nearest_minimizer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the nearest known minimiser and the distance to it, per point."""
        d = np.linalg.norm(x[..., None, :] - self.minimizers, axis=-1)
        return np.argmin(d, axis=-1), np.min(d, axis=-1)


# ---- the functions ------------------------------------------------------------------------

def _himmelblau(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    return (a * a + b - 11) ** 2 + (a + b * b - 7) ** 2


def _himmelblau_g(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    u, v = a * a + b - 11, a + b * b - 7
    return _stack(_ns(x), [4 * a * u + 2 * v, 2 * u + 4 * b * v])


def _rosenbrock(x: Any) -> Any:
    xp = _ns(x)
    return _sum(xp, 100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2)


def _rosenbrock_g(x: Any) -> Any:
    xp = _ns(x)
    g = xp.zeros_like(x)
    inner = x[..., 1:] - x[..., :-1] ** 2
    g[..., :-1] = -400 * x[..., :-1] * inner - 2 * (1 - x[..., :-1])
    g[..., 1:] = g[..., 1:] + 200 * inner
    return g


def _beale(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def _beale_g(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    t1, t2, t3 = 1.5 - a + a * b, 2.25 - a + a * b**2, 2.625 - a + a * b**3
    ga = 2 * t1 * (b - 1) + 2 * t2 * (b**2 - 1) + 2 * t3 * (b**3 - 1)
    gb = 2 * t1 * a + 4 * t2 * a * b + 6 * t3 * a * b**2
    return _stack(_ns(x), [ga, gb])


def _booth(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    return (a + 2 * b - 7) ** 2 + (2 * a + b - 5) ** 2


def _booth_g(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    u, v = a + 2 * b - 7, 2 * a + b - 5
    return _stack(_ns(x), [2 * u + 4 * v, 4 * u + 2 * v])


def _rastrigin(x: Any) -> Any:
    xp = _ns(x)
    return 10 * x.shape[-1] + _sum(xp, x * x - 10 * xp.cos(2 * math.pi * x))


def _rastrigin_g(x: Any) -> Any:
    return 2 * x + 20 * math.pi * _ns(x).sin(2 * math.pi * x)


_ACKLEY = (20.0, 0.2, 2 * math.pi)


def _ackley(x: Any) -> Any:
    xp = _ns(x)
    a, b, c = _ACKLEY
    d = x.shape[-1]
    r = xp.sqrt(_sum(xp, x * x) / d)
    return -a * xp.exp(-b * r) - xp.exp(_sum(xp, xp.cos(c * x)) / d) + a + math.e


def _ackley_g(x: Any) -> Any:
    xp = _ns(x)
    a, b, c = _ACKLEY
    d = x.shape[-1]
    r = xp.sqrt(_sum(xp, x * x) / d)
    safe = xp.where(r > 0, r, xp.ones_like(r))
    k = xp.where(r > 0, a * b * xp.exp(-b * r) / (d * safe), xp.zeros_like(r))  # 0 at the tip
    e = xp.exp(_sum(xp, xp.cos(c * x)) / d)
    return k[..., None] * x + (e * c / d)[..., None] * xp.sin(c * x)


def _gp_parts(x: Any) -> tuple[Any, ...]:
    a, b = x[..., 0], x[..., 1]
    u, v = a + b + 1, 2 * a - 3 * b
    p = 19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b
    q = 18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b
    return a, b, u, v, p, q


def _goldstein_price(x: Any) -> Any:
    _, _, u, v, p, q = _gp_parts(x)
    return (1 + u * u * p) * (30 + v * v * q)


def _goldstein_price_g(x: Any) -> Any:
    a, b, u, v, p, q = _gp_parts(x)
    big_a, big_b = 1 + u * u * p, 30 + v * v * q
    dp = -14 + 6 * a + 6 * b                      # ∂p/∂a = ∂p/∂b
    da = 2 * u * p + u * u * dp                   # ∂A/∂a = ∂A/∂b
    dba = 4 * v * q + v * v * (-32 + 24 * a - 36 * b)
    dbb = -6 * v * q + v * v * (48 - 36 * a + 54 * b)
    return _stack(_ns(x), [da * big_b + big_a * dba, da * big_b + big_a * dbb])


def _styblinski_tang(x: Any) -> Any:
    return 0.5 * _sum(_ns(x), x**4 - 16 * x**2 + 5 * x)


def _styblinski_tang_g(x: Any) -> Any:
    return 2 * x**3 - 16 * x + 2.5


def _camel(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    return 2 * a * a - 1.05 * a**4 + a**6 / 6 + a * b + b * b


def _camel_g(x: Any) -> Any:
    a, b = x[..., 0], x[..., 1]
    return _stack(_ns(x), [4 * a - 4.2 * a**3 + a**5 + b, a + 2 * b])


HIMMELBLAU_MINIMA = np.array([
    [3.0, 2.0],
    [-2.8051180869527449, 3.1313125182505730],
    [-3.7793102533777469, -3.2831859912861694],
    [3.5844283403304917, -1.8481265269644036],
])
ST_X = -2.903534027771177


def quadratic_matrix(dim: int, kappa: float, seed: int = 0) -> np.ndarray:
    """Q diag(λ) Qᵀ with λ log-spaced in [1, κ] and Q a seeded random rotation."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    lam = np.logspace(0, np.log10(kappa), dim)
    return (q * lam) @ q.T


def _make(name: str, dim: int = 2, kappa: float = 100.0, seed: int = 0) -> Problem:
    if name == "himmelblau":
        return Problem(name, 2, _himmelblau, _himmelblau_g, (-5.0, 5.0), 0.0, HIMMELBLAU_MINIMA,
                       maxima=np.array([[-0.27084459066734761, -0.92303855647998146]]))
    if name == "rosenbrock":
        return Problem(name, dim, _rosenbrock, _rosenbrock_g, (-2.048, 2.048), 0.0,
                       np.ones((1, dim)), params={"dim": dim})
    if name == "beale":
        return Problem(name, 2, _beale, _beale_g, (-4.5, 4.5), 0.0, np.array([[3.0, 0.5]]))
    if name == "booth":
        return Problem(name, 2, _booth, _booth_g, (-10.0, 10.0), 0.0, np.array([[1.0, 3.0]]))
    if name == "rastrigin":
        return Problem(name, dim, _rastrigin, _rastrigin_g, (-5.12, 5.12), 0.0,
                       np.zeros((1, dim)), notes="about 10^d local minima; global listed",
                       params={"dim": dim})
    if name == "ackley":
        return Problem(name, dim, _ackley, _ackley_g, (-32.768, 32.768), 0.0,
                       np.zeros((1, dim)), notes="not differentiable at 0 (gradient set to 0)",
                       params={"dim": dim})
    if name == "goldstein_price":
        return Problem(name, 2, _goldstein_price, _goldstein_price_g, (-2.0, 2.0), 3.0,
                       np.array([[0.0, -1.0], [-0.6, -0.4], [1.8, 0.2], [1.2, 0.8]]),
                       notes="local minima f = 30, 84, 840 (rounded minimisers)")
    if name == "styblinski_tang":
        return Problem(name, dim, _styblinski_tang, _styblinski_tang_g, (-5.0, 5.0),
                       -39.16616570377142 * dim, np.full((1, dim), ST_X), params={"dim": dim})
    if name == "three_hump_camel":
        return Problem(name, 2, _camel, _camel_g, (-5.0, 5.0), 0.0,
                       np.array([[0.0, 0.0], [1.747552345830, -0.873776172915],
                                 [-1.747552345830, 0.873776172915]]),
                       notes="local minima f = 0.298638442236859")
    if name == "quadratic":
        a = quadratic_matrix(dim, kappa, seed)
        at = {}

        def f(x: Any) -> Any:
            m = _matrix(x, a, at)
            return 0.5 * _sum(_ns(x), (x @ m) * x)

        def g(x: Any) -> Any:
            return x @ _matrix(x, a, at)

        return Problem(name, dim, f, g, (-5.0, 5.0), 0.0, np.zeros((1, dim)),
                       params={"dim": dim, "kappa": kappa, "seed": seed})
    raise ValueError(f"unknown problem {name!r}; expected one of {', '.join(NAMES)}")


def _matrix(x: Any, a: np.ndarray, cache: dict[Any, Any]) -> Any:
    if isinstance(x, np.ndarray):
        return a.astype(x.dtype)
    key = (x.device, x.dtype)
    if key not in cache:
        cache[key] = __import__("torch").as_tensor(a, dtype=x.dtype, device=x.device)
    return cache[key]


NAMES = ("himmelblau", "rosenbrock", "beale", "booth", "rastrigin", "ackley", "goldstein_price",
         "styblinski_tang", "three_hump_camel", "quadratic")


def get(name: str, dim: int = 2, kappa: float = 100.0, seed: int = 0) -> Problem:
    """A problem by name; ``dim`` for the d-dimensional ones, ``kappa`` for the quadratic."""
    if name not in NAMES:
        raise ValueError(f"unknown problem {name!r}; expected one of {', '.join(NAMES)}")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r}; expected a positive integer")
    if name == "rosenbrock" and dim < 2:
        raise ValueError("rosenbrock needs dim >= 2")
    if not kappa >= 1:
        raise ValueError(f"kappa={kappa}; the condition number must be >= 1")
    return _make(name, dim, kappa, seed)


def noisy(problem: Problem, sigma: float) -> Problem:
    """``problem`` with N(0, sigma²) added to every gradient (seeded by the caller's rng)."""
    if not sigma >= 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma={sigma}; expected a finite value >= 0")
    from dataclasses import replace

    return replace(problem, noise=float(sigma), name=f"{problem.name}+noise({sigma:g})")
