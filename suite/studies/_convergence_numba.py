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


# ---- the same runner, vectorised across starts ------------------------------------------------
#
# ``run_blocks`` takes the arguments of ``run_batch`` and returns the same results, bit for bit
# (tested): every start sees the same operations in the same order. It steps LANES starts at
# once in structure-of-arrays form: a block's coordinate j of lane l is ``P[j * LANES + l]``, so
# each coordinate of the block is one contiguous run of LANES doubles, and the optimizer state
# has the same layout. The step loop runs inside the block loop (the block stays in L1), and
# every phase of a step is a loop over lanes with no branch on the lane's data (selects
# instead), which LLVM vectorises: the problem's gradient, the optimizer update (the kernels of
# ``optim.numba_kernels`` over the block's d * LANES elements, as for one flat parameter), the
# value, the best value and the first hits. Threads: ``prange`` over blocks. The last block is
# padded with copies of its last start, whose results are dropped.
#
# The block twins of the problems below repeat the per-point formulas above term for term (the
# per-point ones stay the reference; the equality test guards the pair). Rastrigin and Ackley
# call cos/sin/exp/sqrt, which Numba compiles to scalar libm calls: their lane loops do not
# vectorise (the rest of their step does).
#
# Compiled with error_model="numpy": a division by zero gives inf/NaN instead of a Python
# exception check per element (which would stop the loops vectorising). ``run_batch`` raises
# ZeroDivisionError there instead (possible only with eps = 0 and a zero denominator).

#: starts stepped together in one block (a multiple of the SIMD width; see :func:`run_blocks`)
LANES = 64

_JB = {"cache": True, "nogil": True, "inline": "always", "error_model": "numpy"}


@njit(**_JB)
def _himmelblau_fb(x, y, out, f_min):  # pragma: no cover - compiled
    for i in range(out.size):
        a, b = x[i], y[i]
        out[i] = (a * a + b - 11) ** 2 + (a + b * b - 7) ** 2 - f_min


@njit(**_JB)
def _himmelblau_gb(x, y, gx, gy):  # pragma: no cover - compiled
    for i in range(x.size):
        a, b = x[i], y[i]
        u = a * a + b - 11
        v = a + b * b - 7
        gx[i] = 4 * a * u + 2 * v
        gy[i] = 2 * u + 4 * b * v


@njit(**_JB)
def _beale_fb(x, y, out, f_min):  # pragma: no cover - compiled
    for i in range(out.size):
        a, b = x[i], y[i]
        out[i] = ((1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2
                  + (2.625 - a + a * b**3) ** 2) - f_min


@njit(**_JB)
def _beale_gb(x, y, gx, gy):  # pragma: no cover - compiled
    for i in range(x.size):
        a, b = x[i], y[i]
        t1, t2, t3 = 1.5 - a + a * b, 2.25 - a + a * b**2, 2.625 - a + a * b**3
        gx[i] = 2 * t1 * (b - 1) + 2 * t2 * (b**2 - 1) + 2 * t3 * (b**3 - 1)
        gy[i] = 2 * t1 * a + 4 * t2 * a * b + 6 * t3 * a * b**2


@njit(**_JB)
def _booth_fb(x, y, out, f_min):  # pragma: no cover - compiled
    for i in range(out.size):
        a, b = x[i], y[i]
        out[i] = (a + 2 * b - 7) ** 2 + (2 * a + b - 5) ** 2 - f_min


@njit(**_JB)
def _booth_gb(x, y, gx, gy):  # pragma: no cover - compiled
    for i in range(x.size):
        a, b = x[i], y[i]
        u, v = a + 2 * b - 7, 2 * a + b - 5
        gx[i] = 2 * u + 4 * v
        gy[i] = 4 * u + 2 * v


@njit(**_JB)
def _goldstein_price_fb(x, y, out, f_min):  # pragma: no cover - compiled
    for i in range(out.size):
        a, b = x[i], y[i]
        u, v = a + b + 1, 2 * a - 3 * b
        p = 19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b
        q = 18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b
        out[i] = (1 + u * u * p) * (30 + v * v * q) - f_min


@njit(**_JB)
def _goldstein_price_gb(x, y, gx, gy):  # pragma: no cover - compiled
    for i in range(x.size):
        a, b = x[i], y[i]
        u, v = a + b + 1, 2 * a - 3 * b
        p = 19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b
        q = 18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b
        big_a, big_b = 1 + u * u * p, 30 + v * v * q
        da = 2 * u * p + u * u * (-14 + 6 * a + 6 * b)
        dba = 4 * v * q + v * v * (-32 + 24 * a - 36 * b)
        dbb = -6 * v * q + v * v * (48 - 36 * a + 54 * b)
        gx[i] = da * big_b + big_a * dba
        gy[i] = da * big_b + big_a * dbb


@njit(**_JB)
def _three_hump_camel_fb(x, y, out, f_min):  # pragma: no cover - compiled
    for i in range(out.size):
        a, b = x[i], y[i]
        out[i] = (2 * a * a - 1.05 * a**4 + a**6 / 6 + a * b + b * b) - f_min


@njit(**_JB)
def _three_hump_camel_gb(x, y, gx, gy):  # pragma: no cover - compiled
    for i in range(x.size):
        a, b = x[i], y[i]
        gx[i] = 4 * a - 4.2 * a**3 + a**5 + b
        gy[i] = a + 2 * b


# d-dimensional problems: P and G hold the block as d rows of ``n`` lanes (row j = P[j*n:(j+1)*n])

@njit(**_JB)
def _rosenbrock_fb(P, d, out, f_min):  # pragma: no cover - compiled
    n = out.size
    out[:] = 0.0
    for j in range(d - 1):
        x, xn = P[j * n:(j + 1) * n], P[(j + 1) * n:(j + 2) * n]
        for i in range(n):
            out[i] += 100 * (xn[i] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2
    for i in range(n):
        out[i] = out[i] - f_min


@njit(**_JB)
def _rosenbrock_gb(P, d, G, n):  # pragma: no cover - compiled
    G[:] = 0.0
    for j in range(d - 1):
        x, xn = P[j * n:(j + 1) * n], P[(j + 1) * n:(j + 2) * n]
        g, gn = G[j * n:(j + 1) * n], G[(j + 1) * n:(j + 2) * n]
        for i in range(n):
            inner = xn[i] - x[i] ** 2
            g[i] += -400 * x[i] * inner - 2 * (1 - x[i])
            gn[i] += 200 * inner


@njit(**_JB)
def _rastrigin_fb(P, d, out, f_min):  # pragma: no cover - compiled
    n = out.size
    out[:] = 10.0 * d
    for j in range(d):
        x = P[j * n:(j + 1) * n]
        for i in range(n):
            out[i] += x[i] * x[i] - 10 * math.cos(2 * math.pi * x[i])
    for i in range(n):
        out[i] = out[i] - f_min


@njit(**_JB)
def _rastrigin_gb(P, d, G, n):  # pragma: no cover - compiled
    for k in range(d * n):
        G[k] = 2 * P[k] + 20 * math.pi * math.sin(2 * math.pi * P[k])


@njit(**_JB)
def _ackley_fb(P, d, out, f_min):  # pragma: no cover - compiled
    n = out.size
    for i in range(n):
        s2, sc = 0.0, 0.0
        for j in range(d):
            xj = P[j * n + i]
            s2 += xj * xj
            sc += math.cos(2 * math.pi * xj)
        out[i] = (-20 * math.exp(-0.2 * math.sqrt(s2 / d)) - math.exp(sc / d) + 20
                  + math.e) - f_min


@njit(**_JB)
def _ackley_gb(P, d, G, n):  # pragma: no cover - compiled
    for i in range(n):
        s2, sc = 0.0, 0.0
        for j in range(d):
            xj = P[j * n + i]
            s2 += xj * xj
            sc += math.cos(2 * math.pi * xj)
        r = math.sqrt(s2 / d)
        k = 20 * 0.2 * math.exp(-0.2 * r) / (d * r) if r > 0 else 0.0
        e = math.exp(sc / d)
        for j in range(d):
            xj = P[j * n + i]
            G[j * n + i] = k * xj + e * 2 * math.pi / d * math.sin(2 * math.pi * xj)


@njit(**_JB)
def _styblinski_tang_fb(P, d, out, f_min):  # pragma: no cover - compiled
    n = out.size
    out[:] = 0.0
    for j in range(d):
        x = P[j * n:(j + 1) * n]
        for i in range(n):
            out[i] += x[i] ** 4 - 16 * x[i] ** 2 + 5 * x[i]
    for i in range(n):
        out[i] = 0.5 * out[i] - f_min


@njit(**_JB)
def _styblinski_tang_gb(P, d, G, n):  # pragma: no cover - compiled
    for k in range(d * n):
        G[k] = 2 * P[k] ** 3 - 16 * P[k] + 2.5


@njit(**_JB)
def _quadratic_fb(P, d, out, f_min, data):  # pragma: no cover - compiled
    n = out.size
    out[:] = 0.0
    for j in range(d):
        x = P[j * n:(j + 1) * n]
        for k in range(d):
            xk = P[k * n:(k + 1) * n]
            q = data[j, k]
            for i in range(n):
                out[i] += x[i] * q * xk[i]
    for i in range(n):
        out[i] = 0.5 * out[i] - f_min


@njit(**_JB)
def _quadratic_gb(P, d, G, n, data):  # pragma: no cover - compiled
    for k in range(d):
        g = G[k * n:(k + 1) * n]
        g[:] = 0.0
        for j in range(d):
            x = P[j * n:(j + 1) * n]
            q = data[j, k]
            for i in range(n):
                g[i] += x[i] * q
    # (the per-point gradient starts its sum at 0.0 too: 0.0 + a == a, -0.0 included)


@njit(**_JB)
def _values_b(pid, P, d, data, f_min, out):  # pragma: no cover - compiled
    """out[l] = f(lane l) - f_min for the block P (d rows of out.size lanes)."""
    n = out.size
    x, y = P[:n], P[n:2 * n]
    if pid == 0:
        _himmelblau_fb(x, y, out, f_min)
    elif pid == 1:
        _rosenbrock_fb(P, d, out, f_min)
    elif pid == 2:
        _beale_fb(x, y, out, f_min)
    elif pid == 3:
        _booth_fb(x, y, out, f_min)
    elif pid == 4:
        _rastrigin_fb(P, d, out, f_min)
    elif pid == 5:
        _ackley_fb(P, d, out, f_min)
    elif pid == 6:
        _goldstein_price_fb(x, y, out, f_min)
    elif pid == 7:
        _styblinski_tang_fb(P, d, out, f_min)
    elif pid == 8:
        _three_hump_camel_fb(x, y, out, f_min)
    else:
        _quadratic_fb(P, d, out, f_min, data)


@njit(**_JB)
def _gradients_b(pid, P, d, data, G, n):  # pragma: no cover - compiled
    x, y, gx, gy = P[:n], P[n:2 * n], G[:n], G[n:2 * n]
    if pid == 0:
        _himmelblau_gb(x, y, gx, gy)
    elif pid == 1:
        _rosenbrock_gb(P, d, G, n)
    elif pid == 2:
        _beale_gb(x, y, gx, gy)
    elif pid == 3:
        _booth_gb(x, y, gx, gy)
    elif pid == 4:
        _rastrigin_gb(P, d, G, n)
    elif pid == 5:
        _ackley_gb(P, d, G, n)
    elif pid == 6:
        _goldstein_price_gb(x, y, gx, gy)
    elif pid == 7:
        _styblinski_tang_gb(P, d, G, n)
    elif pid == 8:
        _three_hump_camel_gb(x, y, gx, gy)
    else:
        _quadratic_gb(P, d, G, n, data)


@njit(parallel=True, cache=True, error_model="numpy")
def run_blocks(x0, steps, pid, data, f_min, code, consts, h, targets, every,
               out_x, out_f, hits, best, rec_f, rec_x, lanes):  # pragma: no cover - compiled
    n, d = x0.shape
    nl = lanes
    n_targets = targets.size
    for blk in prange((n + nl - 1) // nl):
        lo = blk * nl
        m = min(nl, n - lo)  # real starts in this block; lanes m.. repeat the last one
        p = np.empty(d * nl)
        g = np.empty(d * nl)
        s1 = np.zeros(d * nl)
        s2 = np.zeros(d * nl)
        s3 = np.zeros(d * nl)
        fv = np.empty(nl)
        bst = np.full(nl, np.inf)  # best_gap: iterates after 1..steps updates, not the start
        hit = np.full(n_targets * nl, -1, dtype=np.int64)
        for j in range(d):
            for i in range(nl):
                p[j * nl + i] = x0[lo + min(i, m - 1), j]
        if code == 1:
            s1[:] = h[2]  # Adagrad's initial accumulator
        _values_b(pid, p, d, data, f_min, fv)
        r = 0
        if every > 0:
            for i in range(m):
                rec_f[0, lo + i] = fv[i]
                for j in range(d):
                    rec_x[0, lo + i, j] = p[j * nl + i]
            r = 1
        for t in range(steps):
            _gradients_b(pid, p, d, data, g, nl)
            _opt_step(code, p, g, s1, s2, s3, t == 0, consts[t], h)
            _values_b(pid, p, d, data, f_min, fv)
            for i in range(nl):
                # NaN never becomes the best (the order of the comparison matters)
                bst[i] = fv[i] if fv[i] < bst[i] else bst[i]  # noqa: FURB136
            k1 = t + 1
            for k in range(n_targets):
                tk = targets[k]
                hk = hit[k * nl:(k + 1) * nl]
                for i in range(nl):
                    hk[i] = k1 if (hk[i] < 0) & (fv[i] < tk) else hk[i]
            if every > 0 and (k1 % every == 0 or k1 == steps):
                for i in range(m):
                    rec_f[r, lo + i] = fv[i]
                    for j in range(d):
                        rec_x[r, lo + i, j] = p[j * nl + i]
                r += 1
        for i in range(m):
            for j in range(d):
                out_x[lo + i, j] = p[j * nl + i]
            out_f[lo + i] = fv[i] + f_min
            best[lo + i] = bst[i]
            for k in range(n_targets):
                hits[lo + i, k] = hit[k * nl + i]
