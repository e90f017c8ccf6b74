"""Vectorisable exp, expm1, log1p and tanh for Numba kernels (float64 and float32).

The PyPI llvmlite has no SVML, so ``math.exp`` in an ``@njit`` loop is a scalar libm call and
the loop does not vectorise. These functions are pure arithmetic: range reduction (Cody-Waite,
the reduced argument's rounding error carried where it matters), a polynomial evaluated with
fused multiply-adds (``llvm.fma``, one rounding each), and scaling by 2^k built from the
exponent bits (an integer-to-float bitcast, no ``ldexp``). Special cases (±inf, NaN, overflow,
gradual underflow into subnormals, -0.0) are selects on the result, not branches, so LLVM
if-converts a loop that calls them and vectorises it.

``exp``, ``expm1``, ``log1p``, ``tanh`` take and return float64; ``exp32``, ``expm1_32``,
``log1p_32``, ``tanh32`` work in float32 throughout (twice the SIMD lanes). All are
``@njit(inline="always")``: call them from other compiled code. Accuracy against mpmath is
measured in ``tests/test_vecmath.py``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# --------------------------------------------------------------------------------------------
# primitives: bit reinterpretation and fused multiply-add


@intrinsic
def _i64_as_f64(typingctx, v):  # pragma: no cover - compiled
    if v != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _f64_as_i64(typingctx, v):  # pragma: no cover - compiled
    if v != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _i32_as_f32(typingctx, v):  # pragma: no cover - compiled
    if v != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _f32_as_i32(typingctx, v):  # pragma: no cover - compiled
    if v != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _fma(typingctx, a, b, c):  # pragma: no cover - compiled
    """a * b + c with one rounding (llvm.fma: a vfmadd where the CPU has FMA)."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fn, args)

    return a(a, a, a), codegen


# --------------------------------------------------------------------------------------------
# float64

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 0x3fe62e42fee00000: k * _LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2^52: x + _SHIFT rounds x to an integer
_EXP_HI = 709.8  # exp(709.79) overflows
_EXP_LO = -745.2  # exp(-745.14) rounds to 0
# (e^r - 1 - r) / r^2 on |r| <= ln2/2: Chebyshev fit (mpmath, 50 digits), 1.7e-17 relative
_E2, _E3, _E4, _E5, _E6 = (0.5, 0.16666666666666669, 0.041666666666624164,
                           0.008333333333330065, 0.0013888888917196719)
_E7, _E8, _E9, _E10, _E11 = (0.00019841269863040545, 2.4801521322368692e-05,
                             2.7557268480310024e-06, 2.7620075879983367e-07,
                             2.5100375832561234e-08)


@njit(inline="always")
def _pow2(k):  # pragma: no cover - compiled
    """2.0**k for integer k in [-1022, 1023] from the exponent bits."""
    return _i64_as_f64((k + 1023) << 52)


@njit(inline="always")
def _expm1_poly(r):  # pragma: no cover - compiled
    """e^r - 1 - r for |r| <= ln2/2 (+ rounding), as r² P(r)."""
    p = _fma(_E11, r, _E10)
    p = _fma(p, r, _E9)
    p = _fma(p, r, _E8)
    p = _fma(p, r, _E7)
    p = _fma(p, r, _E6)
    p = _fma(p, r, _E5)
    p = _fma(p, r, _E4)
    p = _fma(p, r, _E3)
    p = _fma(p, r, _E2)
    return (r * r) * p


@njit(inline="always")
def _reduce(x):  # pragma: no cover - compiled
    """(k, hi, lo): x = k ln2 + (hi - lo), |hi - lo| <= ln2/2 (+ rounding), k an integer."""
    kf = _fma(x, _LOG2E, _SHIFT) - _SHIFT
    hi = _fma(-kf, _LN2_HI, x)  # exact
    lo = kf * _LN2_LO
    return kf, hi, lo


@njit(inline="always")
def exp(x):  # pragma: no cover - compiled
    """e^x in float64 (<= 1 ulp measured); x = ±inf, NaN, overflow and subnormal results
    handled by selects."""
    xc = x if x < _EXP_HI else _EXP_HI
    xc = xc if xc > _EXP_LO else _EXP_LO
    kf, hi, lo = _reduce(xc)
    r = hi - lo
    # e^(hi - lo) = 1 + r + r² P(r) with the rounding of r folded back in: (hi - r) - lo
    p = 1.0 + (r + (((hi - r) - lo) + _expm1_poly(r)))
    k = np.int64(kf)
    k1 = k >> 1
    # two exact factors 2^k1 2^(k - k1): a result in the subnormals is rounded once
    y = (p * _pow2(k1)) * _pow2(k - k1)
    return y if x == x else x
