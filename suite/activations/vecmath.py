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
``@njit``: call them from other compiled code. Accuracy against mpmath is
measured in ``tests/test_vecmath.py``.

Inlining: the helpers are plain ``@njit`` functions, and LLVM inlines them into the calling
loops, which then vectorise (``tests/test_vecmath_erf.py`` reads the machine code). Numba's
own ``inline="always"`` copies a callee's IR at every call site, recursively, which tripled
the time to compile the activation kernels (155 s against 50 s on a cold cache, same machine
code, results identical bit for bit); only ``tanh`` and ``tanh32`` here, and vecmath_erf's
public functions, which LLVM leaves out of line (their loops then stay scalar), keep it.
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
def order_key(typingctx, v):  # pragma: no cover - compiled
    """An int64 that orders like the float32/float64 ``v`` (-0.0 just below +0.0, NaNs beyond
    ±inf): integer max/min reductions vectorise where float ones (NaN-strict) do not."""
    if v not in (types.float32, types.float64):
        return None
    w = 32 if v == types.float32 else 64

    def codegen(context, builder, sig, args):
        ity = ir.IntType(w)
        b = builder.bitcast(args[0], ity)
        mask = builder.lshr(builder.ashr(b, ir.Constant(ity, w - 1)), ir.Constant(ity, 1))
        k = builder.xor(b, mask)  # negative: -1 - magnitude bits
        return builder.sext(k, ir.IntType(64)) if w == 32 else k

    return types.int64(v), codegen


@intrinsic
def from_order_key(typingctx, k, like):  # pragma: no cover - compiled
    """The float of type ``like`` whose ``order_key`` is k."""
    if k != types.int64 or like not in (types.float32, types.float64):
        return None
    w = 32 if like == types.float32 else 64

    def codegen(context, builder, sig, args):
        ity = ir.IntType(w)
        b = args[0] if w == 64 else builder.trunc(args[0], ity)
        mask = builder.lshr(builder.ashr(b, ir.Constant(ity, w - 1)), ir.Constant(ity, 1))
        return builder.bitcast(builder.xor(b, mask), context.get_value_type(like))

    return like(k, like), codegen


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
# (e^r - 1 - r) / r^2 on |r| <= ln2/2: Chebyshev fit (mpmath, 50 digits, degree 10), 1.4e-18
# absolute (e^r - 1 - r needs it: expm1 subtracts the 1)
_EP = (2.0914679376583935e-09, 2.510520637395701e-08, 2.7557273661348637e-07,
       2.7557255425746435e-06, 2.4801587325533363e-05, 0.00019841269874800493,
       0.0013888888888883752, 0.008333333333326141, 0.04166666666666667, 0.1666666666666667,
       0.5)
# (tanh(a) - a) / a^3 as a polynomial in z = a^2 on a <= 0.55: Chebyshev fit (mpmath), 2.3e-18
# relative to tanh
_TANH_SMALL = 0.55
_TP = (-2.060276537636634e-05, 8.511313685577671e-05, -0.0002346347410887237,
       0.0005889360520074057, -0.001455661830100716, 0.003592110378689024,
       -0.008863234397814355, 0.021869488493666944, -0.053968253967434016,
       0.13333333333332714, -0.3333333333333333)
_TINY = 2.0**-54
# log(1 + f) = f - f²/2 + s (f²/2 + R(s²)), s = f / (2 + f): fdlibm's e_log.c coefficients
_LG1, _LG2, _LG3, _LG4 = (6.666666666666735130e-01, 3.999999999940941908e-01,
                          2.857142874366239149e-01, 2.222219843214978396e-01)
_LG5, _LG6, _LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01


@njit
def _clamp(x, lo, hi):  # pragma: no cover - compiled
    """x limited to [lo, hi] by two selects (NaN becomes hi; callers select NaN back)."""
    x = x if x < hi else hi  # noqa: FURB136 - the NaN order is explicit
    return x if x > lo else lo  # noqa: FURB136


@njit
def _pow2(k):  # pragma: no cover - compiled
    """2.0**k for integer k in [-1022, 1023] from the exponent bits."""
    return _i64_as_f64((k + 1023) << 52)


@njit
def _expm1_poly(r):  # pragma: no cover - compiled
    """e^r - 1 - r for |r| <= ln2/2 (+ rounding), as r² P(r)."""
    p = _EP[0]
    for i in range(1, len(_EP)):  # unrolled: _EP is a compile-time tuple
        p = _fma(p, r, _EP[i])
    return (r * r) * p


@njit
def _reduce(x):  # pragma: no cover - compiled
    """(k, hi, lo): x = k ln2 + (hi - lo), |hi - lo| <= ln2/2 (+ rounding), k an integer."""
    kf = _fma(x, _LOG2E, _SHIFT) - _SHIFT
    hi = _fma(-kf, _LN2_HI, x)  # exact
    lo = kf * _LN2_LO
    return kf, hi, lo


@njit
def exp(x):  # pragma: no cover - compiled
    """e^x in float64 (<= 1 ulp measured); x = ±inf, NaN, overflow and subnormal results
    handled by selects."""
    kf, hi, lo = _reduce(_clamp(x, _EXP_LO, _EXP_HI))
    r = hi - lo
    # e^(hi - lo) = 1 + r + r² P(r) with the rounding of r folded back in: (hi - r) - lo
    p = 1.0 + (r + (((hi - r) - lo) + _expm1_poly(r)))
    k = np.int64(kf)
    k1 = k >> 1
    # two exact factors 2^k1 2^(k - k1): a result in the subnormals is rounded once
    y = (p * _pow2(k1)) * _pow2(k - k1)
    return y if x == x else x  # noqa: PLR0124 - NaN


@njit
def expm1(x):  # pragma: no cover - compiled
    """e^x - 1 in float64: x = k ln2 + r, e^x - 1 = 2^k (e^r - 1) + (2^k - 1) with one fused
    rounding; |x| < 2^-54 returns x (keeps -0.0)."""
    # exp's reduction and polynomial, the same expressions: where a loop computes both exp(x)
    # and expm1(x) (elu and its derivative) LLVM evaluates them once
    kf, hi, lo = _reduce(_clamp(x, _EXP_LO, _EXP_HI))
    r = hi - lo
    cp = ((hi - r) - lo) + _expm1_poly(r)  # e^(hi - lo) - 1 = r + cp
    em = r + cp
    k = np.int64(kf)
    t = _pow2(max(min(k, 1000), -1000))  # k < -60: the result rounds to -1 all the same
    # (t - 1) + t r + t cp, the largest part (t - 1) + t r rounded once, then the small t cp
    # added; t - 1 is exact for k <= 52, above that the -1 goes into cp as -2^-k
    y = _fma(t, cp, _fma(t, r, t - 1.0))
    y = _fma(t, cp - _pow2(-min(k, 1000)), _fma(t, r, t)) if k > 52 else y
    k1 = k >> 1
    big = ((1.0 + em) * _pow2(k1)) * _pow2(k - k1)  # k up to 1024: may overflow to inf
    y = big if k > 1000 else y
    return x if not abs(x) >= _TINY else y  # NaN, ±0, |x| < 2^-54


@njit
def log1p(x):  # pragma: no cover - compiled
    """log(1 + x) in float64 (fdlibm's reduction and polynomial, as selects): 1 + x = 2^k m,
    m in [√2/2, √2), with the rounding of 1 + x corrected by c / u."""
    u = 1.0 + x
    us = u if u > 0 else 1.0  # x <= -1 is selected away below; avoids a division by 0
    hu = _f64_as_i64(us) + (0x3FF0000000000000 - 0x3FE6A09E667F3BCD)
    k = (hu >> 52) - 1023
    m = _i64_as_f64((hu & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E667F3BCD)
    c = ((1.0 - (us - x)) if k >= 2 else (x - (us - 1.0))) / us
    c = c if k < 54 else 0.0
    f = m - 1.0
    f = x if k == 0 else f
    c = 0.0 if k == 0 else c
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * _fma(w, _fma(w, _LG6, _LG4), _LG2)
    t2 = z * _fma(w, _fma(w, _fma(w, _LG7, _LG5), _LG3), _LG1)
    dk = np.float64(k)
    y = s * (hfsq + (t2 + t1)) + _fma(dk, _LN2_LO, c) - hfsq + f + dk * _LN2_HI
    y = y if x < np.inf else x  # +inf
    y = y if u > 0 else (-np.inf if u == 0 else np.nan)  # x = -1, x < -1
    return x if not abs(x) >= _TINY else y  # NaN, ±0, |x| < 2^-54


@njit(inline="always")
def tanh(x):  # pragma: no cover - compiled
    """tanh in float64: |x| < 0.55: x + x³ P(x²); else (1 - e) / (1 + e), e = e^(-2|x|)
    (the e of tanh' = 4e / (1 + e)²: a loop computing both evaluates it once); the sign
    copied from x (-0.0 kept)."""
    a = abs(x)
    z = a * a
    p = _TP[0]
    for i in range(1, len(_TP)):
        p = _fma(p, z, _TP[i])
    ys = _fma(a * z, p, a)
    e = exp(-abs(2.0 * x))
    yl = (1.0 - e) / (1.0 + e)
    y = ys if a < _TANH_SMALL else yl
    y = -y if _f64_as_i64(x) < 0 else y
    return y if x == x else x  # noqa: PLR0124 - NaN


# --------------------------------------------------------------------------------------------
# float32: the same algorithms in float32 arithmetic (constants typed float32; every
# operation stays in float32), exponents in int32 bits

_f32 = np.float32
_LOG2E_F = _f32(1.44269504)
_SHIFT_F = _f32(12582912.0)  # 1.5 * 2^23
_LN2_HI_F = _f32(0.693359375)  # 9 significant bits: k * _LN2_HI_F is exact for |k| < 2^15
_LN2_LO_F = _f32(-2.12194440e-4)
_EXP_HI_F = _f32(88.8)  # expf(88.73) overflows
_EXP_LO_F = _f32(-104.0)  # expf(-103.98) rounds to 0
_ONE_F, _TWO_F, _HALF_F, _ZERO_F = _f32(1.0), _f32(2.0), _f32(0.5), _f32(0.0)
_TINY_F = _f32(2.0**-25)
# (e^r - 1 - r) / r^2 on |r| <= ln2/2, degree 5: Chebyshev fit (mpmath), 1.4e-9 absolute
_EP_F = tuple(_f32(c) for c in (0.00019890980869750327, 0.0013933641031986701,
                                0.008333310934448869, 0.04166646500604005,
                                0.16666666681614256, 0.5000000013457727))
# (tanh(a) - a) / a^3 in z = a^2 on a <= 0.55, degree 4: 3.9e-9 relative to tanh
_TP_F = tuple(_f32(c) for c in (-0.006610227831114734, 0.021309388664443474,
                                -0.05390942882746055, 0.1333311372902087,
                                -0.3333333200797698))
_TANH_SMALL_F = _f32(0.55)
# musl's log1pf: log(1 + f) = f - f²/2 + s (f²/2 + R(s²)), and ln2 split
_LGF = tuple(_f32(c) for c in (0xAAAAAA * 2.0**-24, 0xCCCE13 * 2.0**-25,
                               0x91E9EE * 2.0**-25, 0xF89E26 * 2.0**-26))
_LN2_HI_LOG_F = _f32(6.9313812256e-01)
_LN2_LO_LOG_F = _f32(9.0580006145e-06)


@njit
def _clamp32(x, lo, hi):  # pragma: no cover - compiled
    x = x if x < hi else hi  # noqa: FURB136 - the NaN order is explicit
    return x if x > lo else lo  # noqa: FURB136


@njit
def _pow2_32(k):  # pragma: no cover - compiled
    """2.0**k in float32 for integer k in [-126, 127]."""
    return _i32_as_f32(np.int32((k + 127) << 23))


@njit
def _expm1_poly32(r):  # pragma: no cover - compiled
    p = _EP_F[0]
    for i in range(1, len(_EP_F)):
        p = _fma(p, r, _EP_F[i])
    return (r * r) * p


@njit
def _reduce32(x):  # pragma: no cover - compiled
    kf = _fma(x, _LOG2E_F, _SHIFT_F) - _SHIFT_F
    hi = _fma(-kf, _LN2_HI_F, x)  # exact
    lo = kf * _LN2_LO_F  # ln2 = _LN2_HI_F + _LN2_LO_F
    return kf, hi, lo


@njit
def exp32(x):  # pragma: no cover - compiled
    """e^x for float32 x, in float32 arithmetic (see ``exp``)."""
    kf, hi, lo = _reduce32(_clamp32(x, _EXP_LO_F, _EXP_HI_F))
    r = hi - lo
    p = _ONE_F + (r + (((hi - r) - lo) + _expm1_poly32(r)))
    # int32 exponents (cast back after each operation: numba widens int32 arithmetic to int64,
    # and int64 lanes would halve the vector width of this part)
    k = np.int32(kf)
    k1 = np.int32(k >> 1)
    y = (p * _pow2_32(k1)) * _pow2_32(np.int32(k - k1))
    return y if x == x else x  # noqa: PLR0124 - NaN


_SCALE_F = 64
_TWO_M64_F = _f32(2.0**-64)
_SCALED_LO_F = _f32(-120.0)


@njit
def exp32_scaled(x):  # pragma: no cover - compiled
    """e^x · 2^64 for float32 x <= 0, in float32 arithmetic (exp32's reduction and
    polynomial, one exact scaling): normal down to x = -104, so that a product with a result
    in the subnormals (e^x for x < -87.3) keeps its digits and rounds once when the caller
    multiplies it by 2^-64 (:data:`_TWO_M64_F`) at the end. Below x = -120 it is 0 (x e^x
    rounds to 0 from x = -109); x > 0 is not supported (2^64 e^x overflows from x = 44);
    NaN propagates."""
    far = x < _SCALED_LO_F  # false for NaN, which then runs through the arithmetic
    y = exp32_scaled_lo(_SCALED_LO_F if far else x, _ZERO_F)
    return _ZERO_F if far else y



@njit
def exp32_scaled_lo(x, xl):  # pragma: no cover - compiled
    """e^(x + xl) · 2^64 for float32 -120 <= x <= 0 (not checked) and a low-order part xl
    (|xl| <= ulp(x)), in float32 arithmetic: :func:`exp32_scaled` whose reduction subtracts xl
    from its low part, so that an argument known as an unevaluated sum (x² split exactly by a
    fused multiply-add) loses nothing to its rounding. NaN propagates."""
    y, scale = exp32_scaled_parts(x, xl)
    return (_ONE_F + y) * scale


@njit
def exp32_scaled_parts(x, xl):  # pragma: no cover - compiled
    """(y, s) with e^(x + xl) · 2^64 = s (1 + y), for :func:`exp32_scaled_lo`'s arguments: s a
    power of two, |y| < 0.42 unrounded to 1 + y (a caller that forms 1 + y in float64 saves
    that rounding, up to 0.5 ulp)."""
    kf, hi, lo = _reduce32(x)
    lo = lo - xl
    r = hi - lo
    y = r + (((hi - r) - lo) + _expm1_poly32(r))
    return y, _pow2_32(np.int32(np.int32(kf) + _SCALE_F))

@njit
def expm1_32(x):  # pragma: no cover - compiled
    """e^x - 1 for float32 x, in float32 arithmetic (see ``expm1``)."""
    kf, hi, lo = _reduce32(_clamp32(x, _f32(-20.0), _EXP_HI_F))  # expm1f(-20) rounds to -1
    r = hi - lo
    cp = ((hi - r) - lo) + _expm1_poly32(r)
    em = r + cp
    k = np.int32(kf)
    t = _pow2_32(min(k, 100))
    y = _fma(t, cp, _fma(t, r, t - _ONE_F))  # t - 1 exact for k <= 23
    y = _fma(t, cp - _pow2_32(-min(k, 100)), _fma(t, r, t)) if k > 23 else y
    k1 = np.int32(k >> 1)
    big = ((_ONE_F + em) * _pow2_32(k1)) * _pow2_32(np.int32(k - k1))
    y = big if k > 100 else y
    return x if not abs(x) >= _TINY_F else y  # NaN, ±0, |x| < 2^-25


@njit
def log1p_32(x):  # pragma: no cover - compiled
    """log(1 + x) for float32 x, in float32 arithmetic (see ``log1p``)."""
    u = _ONE_F + x
    us = u if u > _ZERO_F else _ONE_F
    hu = np.int64(_f32_as_i32(us)) + (0x3F800000 - 0x3F3504F3)
    k = (hu >> 23) - 127
    m = _i32_as_f32(np.int32((hu & 0x007FFFFF) + 0x3F3504F3))
    c = ((_ONE_F - (us - x)) if k >= 2 else (x - (us - _ONE_F))) / us
    c = c if k < 25 else _ZERO_F
    f = m - _ONE_F
    f = x if k == 0 else f
    c = _ZERO_F if k == 0 else c
    hfsq = _HALF_F * f * f
    s = f / (_TWO_F + f)
    z = s * s
    w = z * z
    t1 = w * _fma(w, _LGF[3], _LGF[1])
    t2 = z * _fma(w, _LGF[2], _LGF[0])
    dk = _f32(k)
    y = s * (hfsq + (t2 + t1)) + _fma(dk, _LN2_LO_LOG_F, c) - hfsq + f + dk * _LN2_HI_LOG_F
    y = y if x < np.inf else x
    y = y if u > _ZERO_F else (_f32(-np.inf) if u == _ZERO_F else _f32(np.nan))
    return x if not abs(x) >= _TINY_F else y


@njit(inline="always")
def tanh32(x):  # pragma: no cover - compiled
    """tanh for float32 x, in float32 arithmetic (see ``tanh``)."""
    a = abs(x)
    z = a * a
    p = _TP_F[0]
    for i in range(1, len(_TP_F)):
        p = _fma(p, z, _TP_F[i])
    ys = _fma(a * z, p, a)
    yl = _ONE_F - _TWO_F / (exp32(_TWO_F * min(a, _f32(10.0))) + _ONE_F)  # tanhf(10) is 1
    y = ys if a < _TANH_SMALL_F else yl
    y = -y if _f32_as_i32(x) < 0 else y
    return y if x == x else x  # noqa: PLR0124 - NaN
