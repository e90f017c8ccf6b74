"""Numba kernels: the rules of :mod:`suite.optim.numpy_ref` as one fused loop per parameter.

Same names and signatures as the NumPy reference. Each kernel makes one pass over the parameter,
its gradient and its state, reading and writing every element once, and allocates nothing (SGD's
momentum buffer excepted, which is created on the first step as in torch). Arithmetic follows the
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


RULES = {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adamw}
