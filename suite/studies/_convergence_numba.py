"""Compiled twins of the test functions and the batched runner (see ``convergence``).

Each problem has ``f(x, data) -> float`` and ``grad(x, data, out)`` on one point ``x`` of
length d; ``data`` holds problem parameters (the quadratic's matrix). The runner keeps each
start's parameters and optimizer state in small local arrays and runs all its steps in one
loop, in parallel over starts, calling the same Numba update kernels as ``optim``'s backend.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from suite.optim.numba_kernels import adagrad_kernel, adam_kernel, rmsprop_kernel, sgd_kernel

_J = {"cache": True, "nogil": True, "inline": "always"}


@njit(**_J)
def himmelblau_f(x, data):  # pragma: no cover - compiled
    return (x[0] * x[0] + x[1] - 11) ** 2 + (x[0] + x[1] * x[1] - 7) ** 2


@njit(**_J)
def himmelblau_g(x, data, out):  # pragma: no cover - compiled
    u = x[0] * x[0] + x[1] - 11
    v = x[0] + x[1] * x[1] - 7
    out[0] = 4 * x[0] * u + 2 * v
    out[1] = 2 * u + 4 * x[1] * v


@njit(**_J)
def rosenbrock_f(x, data):  # pragma: no cover - compiled
    s = 0.0
    for i in range(x.size - 1):
        s += 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
    return s


@njit(**_J)
def rosenbrock_g(x, data, out):  # pragma: no cover - compiled
    out[:] = 0.0
    for i in range(x.size - 1):
        inner = x[i + 1] - x[i] ** 2
        out[i] += -400 * x[i] * inner - 2 * (1 - x[i])
        out[i + 1] += 200 * inner


@njit(**_J)
def beale_f(x, data):  # pragma: no cover - compiled
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


@njit(**_J)
def beale_g(x, data, out):  # pragma: no cover - compiled
    a, b = x[0], x[1]
    t1, t2, t3 = 1.5 - a + a * b, 2.25 - a + a * b**2, 2.625 - a + a * b**3
    out[0] = 2 * t1 * (b - 1) + 2 * t2 * (b**2 - 1) + 2 * t3 * (b**3 - 1)
    out[1] = 2 * t1 * a + 4 * t2 * a * b + 6 * t3 * a * b**2


@njit(**_J)
def booth_f(x, data):  # pragma: no cover - compiled
    return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2


@njit(**_J)
def booth_g(x, data, out):  # pragma: no cover - compiled
    u, v = x[0] + 2 * x[1] - 7, 2 * x[0] + x[1] - 5
    out[0] = 2 * u + 4 * v
    out[1] = 4 * u + 2 * v


@njit(**_J)
def rastrigin_f(x, data):  # pragma: no cover - compiled
    s = 10.0 * x.size
    for i in range(x.size):
        s += x[i] * x[i] - 10 * math.cos(2 * math.pi * x[i])
    return s


@njit(**_J)
def rastrigin_g(x, data, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = 2 * x[i] + 20 * math.pi * math.sin(2 * math.pi * x[i])


@njit(**_J)
def ackley_f(x, data):  # pragma: no cover - compiled
    d = x.size
    s2, sc = 0.0, 0.0
    for i in range(d):
        s2 += x[i] * x[i]
        sc += math.cos(2 * math.pi * x[i])
    return -20 * math.exp(-0.2 * math.sqrt(s2 / d)) - math.exp(sc / d) + 20 + math.e


@njit(**_J)
def ackley_g(x, data, out):  # pragma: no cover - compiled
    d = x.size
    s2, sc = 0.0, 0.0
    for i in range(d):
        s2 += x[i] * x[i]
        sc += math.cos(2 * math.pi * x[i])
    r = math.sqrt(s2 / d)
    k = 20 * 0.2 * math.exp(-0.2 * r) / (d * r) if r > 0 else 0.0
    e = math.exp(sc / d)
    for i in range(d):
        out[i] = k * x[i] + e * 2 * math.pi / d * math.sin(2 * math.pi * x[i])


@njit(**_J)
def goldstein_price_f(x, data):  # pragma: no cover - compiled
    a, b = x[0], x[1]
    u, v = a + b + 1, 2 * a - 3 * b
    p = 19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b
    q = 18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b
    return (1 + u * u * p) * (30 + v * v * q)


@njit(**_J)
def goldstein_price_g(x, data, out):  # pragma: no cover - compiled
    a, b = x[0], x[1]
    u, v = a + b + 1, 2 * a - 3 * b
    p = 19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b
    q = 18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b
    big_a, big_b = 1 + u * u * p, 30 + v * v * q
    da = 2 * u * p + u * u * (-14 + 6 * a + 6 * b)
    dba = 4 * v * q + v * v * (-32 + 24 * a - 36 * b)
    dbb = -6 * v * q + v * v * (48 - 36 * a + 54 * b)
    out[0] = da * big_b + big_a * dba
    out[1] = da * big_b + big_a * dbb


@njit(**_J)
def styblinski_tang_f(x, data):  # pragma: no cover - compiled
    s = 0.0
    for i in range(x.size):
        s += x[i] ** 4 - 16 * x[i] ** 2 + 5 * x[i]
    return 0.5 * s


@njit(**_J)
def styblinski_tang_g(x, data, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = 2 * x[i] ** 3 - 16 * x[i] + 2.5


@njit(**_J)
def three_hump_camel_f(x, data):  # pragma: no cover - compiled
    a, b = x[0], x[1]
    return 2 * a * a - 1.05 * a**4 + a**6 / 6 + a * b + b * b


@njit(**_J)
def three_hump_camel_g(x, data, out):  # pragma: no cover - compiled
    a, b = x[0], x[1]
    out[0] = 4 * a - 4.2 * a**3 + a**5 + b
    out[1] = a + 2 * b


@njit(**_J)
def quadratic_f(x, data):  # pragma: no cover - compiled
    s = 0.0
    for i in range(x.size):
        for j in range(x.size):
            s += x[i] * data[i, j] * x[j]
    return 0.5 * s


@njit(**_J)
def quadratic_g(x, data, out):  # pragma: no cover - compiled
    for j in range(x.size):
        s = 0.0
        for i in range(x.size):
            s += x[i] * data[i, j]
        out[j] = s


PROBLEM_IDS = {name: i for i, name in enumerate(
    ("himmelblau", "rosenbrock", "beale", "booth", "rastrigin", "ackley", "goldstein_price",
     "styblinski_tang", "three_hump_camel", "quadratic"))}


def problem_data(prob: Any) -> tuple[int, np.ndarray]:
    """(problem id, parameter array) for the compiled runner."""
    base = prob.name.split("+")[0]
    if base == "quadratic":
        from suite.problems import quadratic_matrix

        p = prob.params
        return PROBLEM_IDS[base], quadratic_matrix(p["dim"], p["kappa"], p["seed"])
    return PROBLEM_IDS[base], np.zeros((1, 1))


# One dispatch over problem ids (inlined), so that the runner compiles once and is cached on
# disk; functions passed as arguments would be recompiled in every process.
@njit(**_J)
def _value(pid, x, data):  # pragma: no cover - compiled
    if pid == 0:
        return himmelblau_f(x, data)
    if pid == 1:
        return rosenbrock_f(x, data)
    if pid == 2:
        return beale_f(x, data)
    if pid == 3:
        return booth_f(x, data)
    if pid == 4:
        return rastrigin_f(x, data)
    if pid == 5:
        return ackley_f(x, data)
    if pid == 6:
        return goldstein_price_f(x, data)
    if pid == 7:
        return styblinski_tang_f(x, data)
    if pid == 8:
        return three_hump_camel_f(x, data)
    return quadratic_f(x, data)


@njit(**_J)
def _gradient(pid, x, data, out):  # pragma: no cover - compiled
    if pid == 0:
        himmelblau_g(x, data, out)
    elif pid == 1:
        rosenbrock_g(x, data, out)
    elif pid == 2:
        beale_g(x, data, out)
    elif pid == 3:
        booth_g(x, data, out)
    elif pid == 4:
        rastrigin_g(x, data, out)
    elif pid == 5:
        ackley_g(x, data, out)
    elif pid == 6:
        goldstein_price_g(x, data, out)
    elif pid == 7:
        styblinski_tang_g(x, data, out)
    elif pid == 8:
        three_hump_camel_g(x, data, out)
    else:
        quadratic_g(x, data, out)


def step_constants(name: str, hyper: dict[str, Any], lrs: np.ndarray) -> np.ndarray:
    """Per-step scalars, computed once in double precision exactly as the reference does:
    column 0 the learning rate, 1 Adagrad's decayed lr or Adam's step size, 2 Adam's
    sqrt(1 - beta2^t)."""
    out = np.zeros((len(lrs), 3))
    out[:, 0] = lrs
    for t, lr in enumerate(lrs):
        step = float(t + 1)
        if name == "adagrad":
            out[t, 1] = lr / (1 + (step - 1) * hyper["lr_decay"])
        elif name in ("adam", "adamw"):
            b1, b2 = hyper["betas"]
            out[t, 1] = lr / (1 - b1**step)
            out[t, 2] = (1 - b2**step) ** 0.5
    return out


@njit(cache=True, nogil=True, inline="always")
def _opt_step(code, p, g, s1, s2, s3, first, c, h):  # pragma: no cover - compiled
    if code == 0:
        sgd_kernel(p, g, s1, c[0], h[0], 1.0 - h[1], h[2], h[3] > 0, h[4] > 0, first)
    elif code == 1:
        adagrad_kernel(p, g, s1, c[1], h[1], h[3], h[4] > 0)
    elif code == 2:
        w = 1.0 - h[0]
        rmsprop_kernel(p, g, s1, s2, s3, c[0], h[0], w, 1.0 - w, h[1], h[2], h[3], h[4] > 0,
                       h[5] > 0)
    else:
        w1 = 1.0 - h[0]
        adam_kernel(p, g, s1, s2, s3, 1.0 - c[0] * h[3], w1, 1.0 - w1, h[1], 1.0 - h[1], h[2],
                    h[3], h[4] > 0, h[5] > 0, code == 4, c[1], c[2])


@njit(parallel=True, cache=True)
def run_batch(x0, steps, pid, data, f_min, code, consts, h, targets, every,
              out_x, out_f, hits, best, rec_f, rec_x):  # pragma: no cover - compiled
    n, d = x0.shape
    for i in prange(n):
        p = x0[i].copy()
        g = np.empty(d)
        s1 = np.zeros(d)
        s2 = np.zeros(d)
        s3 = np.zeros(d)
        if code == 1:
            s1[:] = h[2]  # Adagrad's initial accumulator
        fv = _value(pid, p, data) - f_min
        bst = np.inf  # best_gap counts the iterates after 1..steps updates, not the start
        r = 0
        if every > 0:
            rec_f[0, i] = fv
            rec_x[0, i, :] = p
            r = 1
        for t in range(steps):
            _gradient(pid, p, data, g)
            _opt_step(code, p, g, s1, s2, s3, t == 0, consts[t], h)
            fv = _value(pid, p, data) - f_min
            if fv < bst:  # noqa: PLR1730 - NaN must not become the best value
                bst = fv
            for k in range(targets.size):
                if hits[i, k] < 0 and fv < targets[k]:
                    hits[i, k] = t + 1
            if every > 0 and ((t + 1) % every == 0 or t + 1 == steps):
                rec_f[r, i] = fv
                rec_x[r, i, :] = p
                r += 1
        out_x[i, :] = p
        out_f[i] = fv + f_min
        best[i] = bst
