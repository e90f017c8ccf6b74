"""Numba kernels: the rules of :mod:`suite.optim.numpy_ref` as one fused loop per parameter.

Same names and signatures as the NumPy reference. Each kernel makes one pass over the parameter,
its gradient and its state, reading and writing every element once, and allocates nothing (SGD's
momentum buffer excepted, which is created on the first step as in torch). Adafactor is the
exception: its per-tensor statistics need two passes (vectors) or three (matrices), and a
factored step allocates a vector of column sums (see :func:`adafactor`). Arithmetic follows the
reference term for term; kernels are compiled without ``fastmath`` (which would re-associate) and
cached on disk. Scalars are cast to the arrays' dtype, so float32 arrays are updated in float32
arithmetic, one rounding per operation, as torch does (and the loops vectorise).

Parameters must be C-contiguous NumPy arrays (views of a flat buffer are fine); the kernels work
on ``p.reshape(-1)``, which is a view for such arrays.

Threads: every kernel is written as a serial loop over ``range(p.size)`` and run through
:func:`parallel`, which splits the arrays into one contiguous chunk per Numba thread
(``numba.prange`` over chunks, each chunk running the same serial kernel on slices) when the
parameter has at least :data:`PARALLEL_MIN_SIZE` elements and Numba has more than one thread.
The update is elementwise and each element sees the same operations in the same order whatever
chunk it lands in, so the results are bit-identical for every thread count (tested). To
parallelise a new kernel ``foo_kernel(arrays..., scalars...)``, call it through
``foo = parallel(foo_kernel)`` instead of directly: that is the whole change.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import njit, prange
from numba.extending import overload

from suite.optim import numpy_ref

State = dict[str, Any]
# error_model="numpy": division by zero gives inf/NaN as in torch (no Python check per
# element, which would also stop the loops from vectorising).
_JIT = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
# Inlined (at Numba IR level) into callers such as the batched convergence runner, which
# saves a call and the reference counting of every array argument per call.
_JIT_INLINE = {**_JIT, "inline": "always"}


@njit(**_JIT_INLINE)
def _lerp(a, b, w, one_minus_w):  # pragma: no cover - compiled
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * one_minus_w


# Every scalar argument arrives already cast to the arrays' dtype (see the wrappers below), and
# the kernels contain no integer literals, so float32 parameters are updated in float32
# arithmetic, as torch does, and the loops vectorise.
#
# Each loop body loads every element it needs into locals first, computes, and stores last.
# The arithmetic is the same term for term, but the compiler cannot prove that ``p``, ``g`` and
# the state arrays do not overlap, so a store to one array in the middle of the body forces
# later loads of the others to wait behind it (and re-load values just stored). Loading first
# made the Adam step on 8M float32 elements 1.4x faster (19 -> 13.6 ns per 8 elements).
# Arrays that alias one another (the wrappers pass ``v`` for an absent state array) are only
# ever read or written on the branch that uses them.

@njit(**_JIT_INLINE)
def sgd_kernel(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, maximize,
               first):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * pi
        if momentum != 0:
            b = gi if first else momentum * buf[i] + one_minus_dampening * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] = pi + -lr * gi


@njit(**_JIT_INLINE)
def adagrad_kernel(p, g, s, clr, weight_decay, eps, maximize):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        si = s[i]
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * pi
        si = si + gi * gi
        std = np.sqrt(si) + eps
        s[i] = si
        p[i] = pi + (-clr * gi) / std


@njit(**_JIT_INLINE)
def rmsprop_kernel(p, g, v, ga, buf, lr, alpha, one_minus_alpha, lerp_rest, eps, weight_decay,
                   momentum, centered, maximize):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        vi = v[i]
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * pi
        vi = alpha * vi + (one_minus_alpha * gi) * gi
        if centered:
            gai = _lerp(ga[i], gi, one_minus_alpha, lerp_rest)
            a = np.sqrt(vi - gai * gai)
            ga[i] = gai
        else:
            a = np.sqrt(vi)
        v[i] = vi
        a = a + eps
        if momentum > 0:
            b = momentum * buf[i] + gi / a
            buf[i] = b
            p[i] = pi + -lr * b
        else:
            p[i] = pi + (-lr * gi) / a


@njit(**_JIT_INLINE)
def adam_kernel(p, g, m, v, vmax, decay, one_minus_beta1, lerp_rest, beta2, one_minus_beta2, eps,
                weight_decay, amsgrad, maximize, decoupled, step_size, bias_correction2_sqrt
                ):  # pragma: no cover - compiled
    coupled = weight_decay != 0 and not decoupled  # one flag per branch: nested
    shrink = weight_decay != 0 and decoupled       # branches stopped the loop vectorising
    for i in range(p.size):
        pi = p[i]
        mi = m[i]
        vi = v[i]
        gi = -g[i] if maximize else g[i]
        if shrink:
            pi = pi * decay
        if coupled:
            gi = gi + weight_decay * pi
        mi = _lerp(mi, gi, one_minus_beta1, lerp_rest)
        vi = beta2 * vi + (one_minus_beta2 * gi) * gi
        if amsgrad:
            vm = vmax[i]
            if vi > vm or vi != vi:  # noqa: PLR0124 - torch.maximum: NaN wins
                vm = vi
            vmax[i] = vm
            denom = np.sqrt(vm) / bias_correction2_sqrt + eps
        else:
            denom = np.sqrt(vi) / bias_correction2_sqrt + eps
        m[i] = mi
        v[i] = vi
        p[i] = pi + (-step_size * mi) / denom


# --- threads ------------------------------------------------------------------------------------

#: Parameters smaller than this (elements; 1 MiB of float32) are stepped on one thread: below
#: it, waking Numba's threads costs more than the second core saves. From
#: :func:`suite.bench.parallel_threshold` (serial against one chunk per thread, float32 SGD with
#: momentum and Adam) on a shared 2-core AMD EPYC: two chunks first won at 2**18 elements (SGD
#: 1.2x) and lost at 2**16 (0.46x); on a machine loaded beyond its cores a 2-thread step loses
#: at every size (each parallel region waits for a free core). Re-measure on other machines.
PARALLEL_MIN_SIZE = 1 << 18
#: Chunks per step for every kernel run through :func:`parallel`, whatever the size and the
#: thread count (None: one per Numba thread above :data:`PARALLEL_MIN_SIZE`). For tests and
#: measurements: the results do not depend on it.
CHUNKS: int | None = None
#: chunk boundaries fall on multiples of this many elements (64 bytes of float32), so no two
#: threads write to the same cache line
_ALIGN = 16


def _slices(arrays: tuple, lo: int, hi: int) -> tuple:
    """``tuple(a[lo:hi] for a in arrays)``; compiled through the overload below."""
    return tuple(a[lo:hi] for a in arrays)


@overload(_slices)
def _slices_impl(arrays, lo, hi):
    # a tuple of any length: the compiled version is written out for the length at hand
    src = ("def impl(arrays, lo, hi):\n    return ("
           + "".join(f"arrays[{i}][lo:hi], " for i in range(len(arrays))) + ")\n")
    ns: dict[str, Any] = {}
    exec(src, ns)  # noqa: S102 - generated from an integer only
    return ns["impl"]


def _chunked_template(arrays, scalars, n_chunks):  # pragma: no cover - compiled per kernel
    n = arrays[0].size
    per = (n + n_chunks - 1) // n_chunks
    per = (per + _ALIGN - 1) // _ALIGN * _ALIGN
    for c in prange(n_chunks):
        lo = c * per
        hi = min(n, lo + per)
        if lo < hi:
            _target(*(_slices(arrays, lo, hi) + scalars))  # noqa: F821 - set per kernel


def parallel(kernel: Callable[..., None]) -> Callable[..., None]:
    """``kernel``, run on contiguous chunks of its arrays across Numba's threads.

    ``kernel`` is a compiled elementwise loop whose leading arguments are 1-D arrays of one
    size (parameter, gradient, state) and whose remaining arguments are scalars. The returned
    function takes the same arguments, plus ``chunks=`` (keyword) to force a number of chunks
    (default: one per Numba thread, or the plain serial call when Numba has one thread or the
    arrays are smaller than :data:`PARALLEL_MIN_SIZE`). ``.serial`` is ``kernel`` itself.
    """
    # The driver is compiled from ``_chunked_template`` with its own globals, where ``_target``
    # is the kernel as a plain (not inlined) function: Numba can neither inline a call with
    # *args nor cache a closure over a dispatcher (its pickle differs per process). The name
    # carries a hash of the kernel's bytecode, so an edited kernel gets a fresh cache entry.
    target = njit(**_JIT)(kernel.py_func)
    name = kernel.py_func.__name__
    digest = hashlib.sha256(kernel.py_func.__code__.co_code).hexdigest()[:12]
    fn = types.FunctionType(_chunked_template.__code__,
                            {**globals(), "_target": target}, f"chunked_{name}")
    fn.__qualname__ = f"chunked_{name}_{digest}"
    fn.__module__ = __name__
    chunked = njit(parallel=True, cache=True, nogil=True, error_model="numpy")(fn)

    def run(*args: Any, chunks: int | None = None) -> None:
        k = 0
        while k < len(args) and isinstance(args[k], np.ndarray):
            k += 1
        if k == 0:
            raise TypeError(f"{name}: the leading arguments must be arrays")
        size = args[0].size
        if any(a.size != size for a in args[1:k]):
            raise ValueError(f"{name}: the arrays must have one size, got "
                             f"{[a.size for a in args[:k]]}")
        if chunks is None:
            chunks = CHUNKS
        if chunks is None:
            threads = numba.get_num_threads()
            if threads == 1 or size < PARALLEL_MIN_SIZE:
                kernel(*args)
                return
            chunks = threads
        elif chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        chunked(args[:k], args[k:], chunks)

    run.serial = kernel  # type: ignore[attr-defined]
    run.chunked = chunked  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = name
    return run


sgd_step = parallel(sgd_kernel)
adagrad_step = parallel(adagrad_kernel)
rmsprop_step = parallel(rmsprop_kernel)
adam_step = parallel(adam_kernel)


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1)


def sgd(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, momentum: float,
        dampening: float, weight_decay: float, nesterov: bool, maximize: bool) -> None:
    """SGD; see :func:`suite.optim.numpy_ref.sgd` for the maths."""
    first = momentum != 0 and "momentum_buffer" not in st
    if first:
        st["momentum_buffer"] = np.empty_like(p)
    buf = st["momentum_buffer"] if momentum != 0 else p
    t = p.dtype.type
    sgd_step(_flat(p), _flat(g), _flat(buf), t(lr), t(momentum), t(1 - dampening),
               t(weight_decay), nesterov, maximize, first)


def adagrad(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, lr_decay: float,
            weight_decay: float, initial_accumulator_value: float, eps: float,
            maximize: bool) -> None:
    """Adagrad; see :func:`suite.optim.numpy_ref.adagrad` for the maths."""
    st["step"] = step = st["step"] + 1.0
    clr = lr / (1 + (step - 1) * lr_decay)
    t = p.dtype.type
    adagrad_step(_flat(p), _flat(g), _flat(st["sum"]), t(clr), t(weight_decay), t(eps),
                   maximize)


def rmsprop(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, alpha: float, eps: float,
            weight_decay: float, momentum: float, centered: bool, maximize: bool) -> None:
    """RMSprop; see :func:`suite.optim.numpy_ref.rmsprop` for the maths."""
    st["step"] = st["step"] + 1.0
    v = st["square_avg"]
    ga = st.get("grad_avg", v)
    buf = st.get("momentum_buffer", v)
    t = p.dtype.type
    w = 1 - alpha
    rmsprop_step(_flat(p), _flat(g), _flat(v), _flat(ga), _flat(buf), t(lr), t(alpha), t(w),
                   t(1 - w), t(eps), t(weight_decay), t(momentum), centered, maximize)


def adam(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, betas: tuple[float, float],
         eps: float, weight_decay: float, amsgrad: bool, maximize: bool,
         decoupled: bool = False) -> None:
    """Adam / AdamW; see :func:`suite.optim.numpy_ref.adam` for the maths."""
    beta1, beta2 = betas
    st["step"] = step = st["step"] + 1.0
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    m, v = st["exp_avg"], st["exp_avg_sq"]
    vmax = st.get("max_exp_avg_sq", v)
    t = p.dtype.type
    adam_step(_flat(p), _flat(g), _flat(m), _flat(v), _flat(vmax), t(1 - lr * weight_decay),
                t(1 - beta1), t(1 - (1 - beta1)), t(beta2), t(1 - beta2), t(eps), t(weight_decay),
                amsgrad,
                maximize, decoupled, t(step_size), t(bias_correction2_sqrt))


def adamw(p: np.ndarray, g: np.ndarray, st: State, **hyper: Any) -> None:
    """AdamW: :func:`adam` with decoupled weight decay."""
    adam(p, g, st, decoupled=True, **hyper)





# ---- NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD, Adafactor ----------------------------------
# Per-step scalars (bias corrections, NAdam's mu schedule, RAdam's rectification, ASGD's eta)
# are computed by the wrappers in double precision exactly as the reference does, and 0-dim
# scalar state (mu_product, eta, mu) is updated there, in its own dtype; the kernels see only
# per-element work.


@njit(**_JIT_INLINE)
def nadam_kernel(p, g, m, v, decay, weight_decay, decoupled, maximize, one_minus_beta1,
                 lerp_rest, beta2, one_minus_beta2, bias_correction2, eps, grad_coef,
                 exp_avg_coef):  # pragma: no cover - compiled
    coupled = weight_decay != 0 and not decoupled
    shrink = weight_decay != 0 and decoupled
    for i in range(p.size):
        pi = p[i]
        mi = m[i]
        vi = v[i]
        gi = -g[i] if maximize else g[i]
        if shrink:
            pi = pi * decay
        if coupled:
            gi = gi + weight_decay * pi
        mi = _lerp(mi, gi, one_minus_beta1, lerp_rest)
        vi = beta2 * vi + (one_minus_beta2 * gi) * gi
        denom = np.sqrt(vi / bias_correction2) + eps
        m[i] = mi
        v[i] = vi
        pi = pi + (grad_coef * gi) / denom
        p[i] = pi + (exp_avg_coef * mi) / denom


@njit(**_JIT_INLINE)
def radam_kernel(p, g, m, v, decay, weight_decay, decoupled, maximize, one_minus_beta1,
                 lerp_rest, beta2, one_minus_beta2, bias_correction1, lr, rectified,
                 bias_correction2_sqrt, eps, rect):  # pragma: no cover - compiled
    coupled = weight_decay != 0 and not decoupled
    shrink = weight_decay != 0 and decoupled
    for i in range(p.size):
        pi = p[i]
        mi = m[i]
        vi = v[i]
        gi = -g[i] if maximize else g[i]
        if shrink:
            pi = pi * decay
        if coupled:
            gi = gi + weight_decay * pi
        mi = _lerp(mi, gi, one_minus_beta1, lerp_rest)
        vi = beta2 * vi + (one_minus_beta2 * gi) * gi
        m[i] = mi
        v[i] = vi
        if rectified:
            adaptive_lr = bias_correction2_sqrt / (np.sqrt(vi) + eps)
            p[i] = pi - mi / bias_correction1 * lr * adaptive_lr * rect
        else:
            p[i] = pi - mi / bias_correction1 * lr


@njit(**_JIT_INLINE)
def adamax_kernel(p, g, m, u, weight_decay, maximize, one_minus_beta1, lerp_rest, beta2, eps,
                  clr):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        mi = m[i]
        ui = u[i]
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * pi
        mi = _lerp(mi, gi, one_minus_beta1, lerp_rest)
        a = ui * beta2
        b = abs(gi) + eps
        ui = b if (b > a or b != b) and a == a else a  # noqa: PLR0124 - torch.maximum: NaN wins
        m[i] = mi
        u[i] = ui
        p[i] = pi + (-clr * mi) / ui


@njit(**_JIT_INLINE)
def adadelta_kernel(p, g, v, u, lr, rho, one_minus_rho, eps, weight_decay, maximize
                    ):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        vi = v[i]
        ui = u[i]
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * pi
        vi = rho * vi + (one_minus_rho * gi) * gi
        std = np.sqrt(vi + eps)
        delta = np.sqrt(ui + eps) / std * gi
        ui = rho * ui + (one_minus_rho * delta) * delta
        v[i] = vi
        u[i] = ui
        p[i] = pi + -lr * delta


@njit(**_JIT_INLINE)
def _torch_sign(x):  # pragma: no cover - compiled
    # torch.sign: 0 for NaN, as for zero
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return 0.0


@njit(**_JIT_INLINE)
def rprop_kernel(p, g, prev, step_size, etaminus, etaplus, step_size_min, step_size_max,
                 maximize, one, zero):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        si = step_size[i]
        gi = -g[i] if maximize else g[i]
        s = _torch_sign(gi * prev[i])
        factor = etaplus if s > 0 else (etaminus if s < 0 else one)
        si = si * factor
        # torch.clamp: NaN stays NaN (min/max would not keep it), and max wins over min
        if si < step_size_min:  # noqa: PLR1730
            si = step_size_min
        if si > step_size_max:  # noqa: PLR1730
            si = step_size_max
        if factor == etaminus:
            gi = zero
        step_size[i] = si
        prev[i] = gi
        p[i] = pi + (-_torch_sign(gi)) * si


@njit(**_JIT_INLINE)
def asgd_kernel(p, g, ax, weight_decay, maximize, decay, neg_eta, mu, average
                ):  # pragma: no cover - compiled
    for i in range(p.size):
        pi = p[i]
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * pi
        pi = pi * decay
        pi = pi + neg_eta * gi
        if average:
            ai = ax[i]
            ax[i] = ai + (pi - ai) * mu
        else:
            ax[i] = pi
        p[i] = pi


nadam_step = parallel(nadam_kernel)
radam_step = parallel(radam_kernel)
adamax_step = parallel(adamax_kernel)
adadelta_step = parallel(adadelta_kernel)
rprop_step = parallel(rprop_kernel)
asgd_step = parallel(asgd_kernel)


# Adafactor is not elementwise: the step size needs RMS(p) before the step and RMS(U) of the
# whole update, and a factored variance needs every row and column sum of g^2 before any
# element's U is known. Its kernels therefore take two passes (vectors: fold the variance
# update, RMS(p) and RMS(U) into one pass, then apply) or three (matrices: row and column sums
# of g^2 with RMS(p); RMS(U); apply). Sums are accumulated in float64 and rounded to the
# parameter's dtype (``r1``, a 1-element array of that dtype) where torch's norm returns one.


@njit(**_JIT_INLINE)
def _clamp_rsqrt(vi, eps1_sq, one):  # pragma: no cover - compiled
    vc = vi if (vi > eps1_sq or vi != vi) else eps1_sq  # noqa: PLR0124 - clamp keeps NaN
    return one / np.sqrt(vc)


@njit(**_JIT_INLINE)
def adafactor_vector_pass(p, g, v, maximize, w, w_rest, eps1_sq, one
                          ):  # pragma: no cover - compiled
    """Updates the variance; returns (sum of p^2 before the step, sum of U^2)."""
    pp = 0.0
    uu = 0.0
    for i in range(p.size):
        pi = p[i]
        gi = -g[i] if maximize else g[i]
        vi = _lerp(v[i], gi * gi, w, w_rest)
        ui = _clamp_rsqrt(vi, eps1_sq, one) * gi
        v[i] = vi
        pp += float(pi) * float(pi)
        uu += float(ui) * float(ui)
    return pp, uu


@njit(**_JIT_INLINE)
def adafactor_factored_pass(p, g, row, col, colsum, batches, rows, cols, maximize, w, w_rest,
                            n_f, m_f, r1):  # pragma: no cover - compiled
    """Updates row_var and col_var (flattened [B*m], [B*n]); returns the sum of p^2."""
    pp = 0.0
    colsum[:] = 0.0
    for b in range(batches):
        for i in range(rows):
            k = b * rows + i
            s = 0.0
            for j in range(cols):
                idx = k * cols + j
                pi = p[idx]
                gi = -g[idx] if maximize else g[idx]
                g2 = float(gi) * float(gi)
                s += g2
                colsum[b * cols + j] += g2
                pp += float(pi) * float(pi)
            r1[0] = np.sqrt(s)  # torch.norm's result, in the parameter's dtype
            rn = r1[0]
            row[k] = _lerp(row[k], rn * rn / n_f, w, w_rest)
        for j in range(cols):
            r1[0] = np.sqrt(colsum[b * cols + j])
            cn = r1[0]
            c = b * cols + j
            col[c] = _lerp(col[c], cn * cn / m_f, w, w_rest)
    return pp


@njit(**_JIT_INLINE)
def adafactor_factored_norm(g, row, col, den, batches, rows, cols, maximize, eps1_sq, one
                            ):  # pragma: no cover - compiled
    """The sum of U^2, U = g / sqrt(max(row col / den, eps1^2))."""
    uu = 0.0
    for b in range(batches):
        for i in range(rows):
            k = b * rows + i
            rk = row[k]
            for j in range(cols):
                idx = k * cols + j
                gi = -g[idx] if maximize else g[idx]
                ui = _clamp_rsqrt(rk * col[b * cols + j] / den[b], eps1_sq, one) * gi
                uu += float(ui) * float(ui)
    return uu


@njit(**_JIT_INLINE)
def adafactor_apply(p, g, v, row, col, den, factored, batches, rows, cols, maximize, eps1_sq,
                    one, weight_decay, decay, coef):  # pragma: no cover - compiled
    """p = p (1 - lr wd) + coef U, U recomputed from g and the variance."""
    for idx in range(p.size):
        pi = p[idx]
        gi = -g[idx] if maximize else g[idx]
        if factored:
            k = idx // cols
            b = k // rows
            vi = row[k] * col[b * cols + idx % cols] / den[b]
        else:
            vi = v[idx]
        ui = _clamp_rsqrt(vi, eps1_sq, one) * gi
        if weight_decay != 0:
            pi = pi * decay
        p[idx] = pi + coef * ui


def nadam(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, betas: tuple[float, float],
          eps: float, weight_decay: float, momentum_decay: float, decoupled_weight_decay: bool,
          maximize: bool) -> None:
    """NAdam; see :func:`suite.optim.numpy_ref.nadam` for the maths."""
    beta1, beta2 = betas
    st["step"] = step = st["step"] + 1.0
    bias_correction2 = 1 - beta2**step
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product = st["mu_product"]
    mu_product[...] = mu_product * mu  # in its own dtype, as torch rounds it
    mp = float(mu_product)
    grad_coef = -lr * (1.0 - mu) / (1.0 - mp)
    exp_avg_coef = (-lr * mu_next) / (1.0 - mp * mu_next)
    t = p.dtype.type
    nadam_step(_flat(p), _flat(g), _flat(st["exp_avg"]), _flat(st["exp_avg_sq"]),
                 t(1 - lr * weight_decay), t(weight_decay), decoupled_weight_decay, maximize,
                 t(1 - beta1), t(1 - (1 - beta1)), t(beta2), t(1 - beta2), t(bias_correction2),
                 t(eps), t(grad_coef), t(exp_avg_coef))


def radam(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, betas: tuple[float, float],
          eps: float, weight_decay: float, decoupled_weight_decay: bool, maximize: bool) -> None:
    """RAdam; see :func:`suite.optim.numpy_ref.radam` for the maths."""
    beta1, beta2 = betas
    st["step"] = step = st["step"] + 1.0
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
    rectified = rho_t > 5.0
    rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
            / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5 if rectified else 0.0
    t = p.dtype.type
    radam_step(_flat(p), _flat(g), _flat(st["exp_avg"]), _flat(st["exp_avg_sq"]),
                 t(1 - lr * weight_decay), t(weight_decay), decoupled_weight_decay, maximize,
                 t(1 - beta1), t(1 - (1 - beta1)), t(beta2), t(1 - beta2), t(bias_correction1),
                 t(lr), rectified, t(bias_correction2**0.5), t(eps), t(rect))


def adamax(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, betas: tuple[float, float],
           eps: float, weight_decay: float, maximize: bool) -> None:
    """Adamax; see :func:`suite.optim.numpy_ref.adamax` for the maths."""
    beta1, beta2 = betas
    st["step"] = step = st["step"] + 1.0
    clr = lr / (1 - beta1**step)
    t = p.dtype.type
    adamax_step(_flat(p), _flat(g), _flat(st["exp_avg"]), _flat(st["exp_inf"]),
                  t(weight_decay), maximize, t(1 - beta1), t(1 - (1 - beta1)), t(beta2), t(eps),
                  t(clr))


def adadelta(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, rho: float, eps: float,
             weight_decay: float, maximize: bool) -> None:
    """Adadelta; see :func:`suite.optim.numpy_ref.adadelta` for the maths."""
    st["step"] = st["step"] + 1.0
    t = p.dtype.type
    adadelta_step(_flat(p), _flat(g), _flat(st["square_avg"]), _flat(st["acc_delta"]),
                    t(lr), t(rho), t(1 - rho), t(eps), t(weight_decay), maximize)


def rprop(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, etas: tuple[float, float],
          step_sizes: tuple[float, float], maximize: bool) -> None:
    """Rprop; see :func:`suite.optim.numpy_ref.rprop` for the maths."""
    st["step"] = st["step"] + 1.0
    t = p.dtype.type
    rprop_step(_flat(p), _flat(g), _flat(st["prev"]), _flat(st["step_size"]), t(etas[0]),
                 t(etas[1]), t(step_sizes[0]), t(step_sizes[1]), maximize, t(1), t(0))


def asgd(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, lambd: float, alpha: float,
         t0: float, weight_decay: float, maximize: bool) -> None:
    """ASGD; see :func:`suite.optim.numpy_ref.asgd` for the maths."""
    st["step"] = step = st["step"] + 1.0
    eta, mu = st["eta"], st["mu"]
    eta_value, mu_value = float(eta), float(mu)
    t = p.dtype.type
    asgd_step(_flat(p), _flat(g), _flat(st["ax"]), t(weight_decay), maximize,
                t(1 - lambd * eta_value), t(-eta_value), t(mu_value), mu_value != 1)
    rounded = numpy_ref.scalar_dtype()  # as torch.as_tensor(value), then copied into the state
    eta[...] = rounded(lr / ((1 + lambd * lr * step) ** alpha))
    mu[...] = rounded(1 / max(1, step - t0))


def adafactor(p: np.ndarray, g: np.ndarray, st: State, *, lr: float, beta2_decay: float,
              eps: tuple[float | None, float], d: float, weight_decay: float,
              maximize: bool) -> None:
    """Adafactor; see :func:`suite.optim.numpy_ref.adafactor` for the maths.

    Vectors and scalars: two passes over p and g (four arrays read and written, then four);
    matrices: three (p and g; g; p and g, then p written), against one for an elementwise
    rule. A factored step allocates one float64 vector of column sums and one mean per
    matrix in the batch, O(n) rather than O(mn).
    """
    eps1, eps2 = eps
    st["step"] = step = st["step"] + 1.0
    t = p.dtype.type
    if eps1 is None:
        eps1 = float(np.finfo(p.dtype).eps)
    w = step**beta2_decay
    rho_t = min(lr, 1 / (step**0.5))
    numel = p.size
    one, eps1_sq = t(1), t(eps1 * eps1)
    fp, fg = _flat(p), _flat(g)
    if p.ndim > 1:
        rows, cols = p.shape[-2], p.shape[-1]
        batches = numel // (rows * cols) if rows * cols else 0
        row, col = _flat(st["row_var"]), _flat(st["col_var"])
        r1 = np.empty(1, dtype=p.dtype)
        colsum = np.empty(batches * cols)
        pp = adafactor_factored_pass(fp, fg, row, col, colsum, batches, rows, cols, maximize,
                                     t(w), t(1 - w), t(cols), t(rows), r1)
        den = np.maximum(st["row_var"].mean(axis=-2).reshape(-1), t(eps1)).astype(p.dtype)
        uu = adafactor_factored_norm(fg, row, col, den, batches, rows, cols, maximize, eps1_sq,
                                     one)
        v = row
    else:
        v = _flat(st["variance"])
        pp, uu = adafactor_vector_pass(fp, fg, v, maximize, t(w), t(1 - w), eps1_sq, one)
        row = col = v
        den = v
        batches = rows = cols = 1
    alpha = max(eps2, float(t(np.sqrt(pp))) / (numel**0.5)) * rho_t
    denom = max(1.0, float(t(np.sqrt(uu))) / ((numel**0.5) * d))
    adafactor_apply(fp, fg, v, row, col, den, p.ndim > 1, batches, rows, cols, maximize,
                    eps1_sq, one, t(weight_decay), t(1 - lr * weight_decay), t(-alpha / denom))


RULES = {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adamw,
         "nadam": nadam, "radam": radam, "adamax": adamax, "adadelta": adadelta,
         "rprop": rprop, "asgd": asgd, "adafactor": adafactor}
