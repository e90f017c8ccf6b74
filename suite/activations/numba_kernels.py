"""Numba backend of :mod:`suite.activations`: scalar formulas compiled into loops.

Each elementwise activation has one scalar function ``(x, p) -> (f(x), f'(x))`` per dtype
(float32 inputs in float32 arithmetic where the error analysis allows it, float64 inputs in
float64; no fastmath, cached), and plain loops over contiguous arrays that call it: forward,
derivative, the vector-Jacobian product ``dy * f'(x)`` and the fused ``forward_backward``
(strided inputs are copied to contiguous ones). relu and leaky_relu are ufuncs. Loops are
compiled on first use per dtype (eager ufunc signatures compiled every kernel at import: about
three minutes on a cold cache). Softmax and log_softmax run one compiled loop per row of the
reduced axis. exp, expm1, log1p and tanh are :mod:`suite.activations.vecmath`'s
pure-arithmetic versions, so the loops and the row passes compile to SIMD code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, types, vectorize
from numba.extending import overload

from suite.activations import vecmath, vecmath_erf
from suite.activations._series import SERIES, WINDOW
from suite.activations.vecmath_erf import _rational as _erf_rational
from suite.activations.vecmath_erf import _two_square, erf_small

# float32 loops first: a ufunc takes the first loop its inputs cast to safely.
_SIG1 = ["float32(float32)", "float64(float64)"]
_SIG2 = ["float32(float32, float32)", "float64(float64, float64)"]
_OPTS: dict[str, Any] = {"cache": True, "nopython": True}
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_BETA = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5
_KAPPA = 0.044715
_SQRT1_2 = 0.70710678118654752440
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# The scalar maths the kernels call, in one place: vectorisable pure-arithmetic versions
# (suite.activations.vecmath), so that LLVM vectorises the loops that call them.
exp = vecmath.exp
expm1 = vecmath.expm1
log1p = vecmath.log1p
log = math.log
tanh = vecmath.tanh


def _series_at_zero(x0_hi: float, x0_lo: float, c: tuple[float, ...]) -> Any:
    """A compiled ``f(x, closed)``: the Taylor series c_1 h + ... + c_n h^n at h = (x - x0_hi)
    - x0_lo where |h| < WINDOW, else ``closed``. Horner's steps written out with the
    coefficients as literals (a loop over a 24-element constant stays a loop, and a loop
    inside the element loop stops it vectorising); both are evaluated and one is selected."""
    lines = ["def at_zero(x, closed):", f"    h = (x - {x0_hi!r}) - {x0_lo!r}",
             f"    p = {c[-1]!r}"]
    lines += [f"    p = fma(p, h, {ck!r})" for ck in reversed(c[:-1])]
    lines += [f"    return p * h if abs(h) < {WINDOW!r} else closed"]
    namespace: dict[str, Any] = {"fma": vecmath._fma}
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from the constants above
    return njit(inline="always")(namespace["at_zero"])


_SILU0, _GELU0, _GELU_TANH0 = (_series_at_zero(hi, lo, c) for hi, lo, c in
                               (SERIES["silu"], SERIES["gelu"], SERIES["gelu_tanh"]))


def _series_at_zero32(x0: float, c: tuple[float, ...], terms: int) -> Any:
    """:func:`_series_at_zero` in float32 arithmetic, for float32 kernels: x0 split into two
    float32s (x - X0_HI is exact near x0), the first ``terms`` coefficients as float32
    constants (fewer terms reach float32's precision on the same window)."""
    hi = np.float32(x0)
    lo = np.float32(x0 - np.float64(hi))
    cs = [np.float32(ck) for ck in c[:terms]]
    namespace: dict[str, Any] = {"fma": vecmath._fma, "X0_HI": hi, "X0_LO": lo,
                                 "WINDOW": np.float32(WINDOW),
                                 **{f"C{k}": ck for k, ck in enumerate(cs)}}
    lines = ["def at_zero(x, closed):", "    h = (x - X0_HI) - X0_LO", f"    p = C{terms - 1}"]
    lines += [f"    p = fma(p, h, C{k})" for k in reversed(range(terms - 1))]
    lines += ["    return p * h if abs(h) < WINDOW else closed"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from the constants above
    return njit(inline="always")(namespace["at_zero"])


@njit(cache=True, inline="always")
def _at_zero(x, s, closed):  # pragma: no cover - compiled
    """closed, or the Taylor series ``s`` (one of the above) near its zero x0."""
    return s(x, closed)


def _by_dtype(f32: Any, f64: Any) -> Any:
    """One scalar function for compiled code that runs ``f32`` on a float32 argument and
    ``f64`` on a float64 one (chosen when numba types the call, inlined). float32 kernels
    compute in float32 where their error analysis allows it (twice the SIMD lanes of
    float64); the float64 kernels below serve float64 inputs."""
    def stub(x):  # pragma: no cover - compiled code calls the overload
        raise NotImplementedError("compiled code only")

    @overload(stub, inline="always")
    def _typed(x):  # the same signature as the stub (numba compares them)
        if x == types.float32:
            return lambda x: f32(x)
        if x == types.float64:
            return lambda x: f64(x)
        return None

    return stub


def _by_dtype2(f32: Any, f64: Any) -> Any:
    """:func:`_by_dtype` for functions of (x, parameter): the dtype of x decides."""
    def stub(x, p):  # pragma: no cover - compiled code calls the overload
        raise NotImplementedError("compiled code only")

    @overload(stub, inline="always")
    def _typed(x, p):  # the same signature as the stub (numba compares them)
        if x == types.float32:
            return lambda x, p: f32(x, p)
        if x == types.float64:
            return lambda x, p: f64(x, p)
        return None

    return stub


_F1 = np.float32(1.0)


_TWO_M64_F = vecmath._TWO_M64_F


@njit(cache=True, inline="always")
def _one_plus_e32(x):  # pragma: no cover - compiled
    """e = exp(-|x|) for the float32 sigmoid family: (es, e, d, dl, r0) with es = 2^64 e
    (vecmath.exp32_scaled, < 0.9 ulp; normal where e is subnormal), 1 + e = d + dl exactly
    (fast two-sum, 1 >= e) and r0 = 1 / d rounded (the one division)."""
    es = vecmath.exp32_scaled(-abs(x))
    e = es * _TWO_M64_F
    d = _F1 + e
    dl = (_F1 - d) + e
    return es, e, d, dl, _F1 / d


@njit(cache=True, inline="always")
def _sig_parts32(x):  # pragma: no cover - compiled
    """(r, qs) = (1 / (1 + e), 2^64 e / (1 + e)), e = exp(-|x|), in float32 arithmetic: σ(|x|)
    and σ(-|x|) · 2^64 (scaled so that it stays normal, with all its digits, where σ(-|x|)
    is subnormal: products with it round once when scaled back). es = 2^64 e from
    vecmath.exp32_scaled (< 0.9 ulp); 1 + e = d + dl exactly (fast two-sum, 1 >= e); one
    division r0 = 1 / d, then one Newton step each that takes dl and r0's rounding out (both
    nearly correctly rounded)."""
    es, e, d, dl, r0 = _one_plus_e32(x)
    rc = r0 * (vecmath._fma(-r0, d, _F1) - r0 * dl)  # 1 / (1 + e) = r0 + rc (+ O(u²))
    q0 = es * r0
    qc = r0 * (vecmath._fma(-q0, d, es) - q0 * dl)  # 2^64 e / (1 + e) = q0 + qc (+ O(u²))
    return r0 + rc, q0 + qc, (r0, rc, q0, qc), (e, d, dl)


@njit(cache=True, inline="always")
def _sig_both32(x):  # pragma: no cover - compiled
    """(σ(x), σ'(x)) in float32 arithmetic: σ = r or q by the sign, σ' = q r (see
    _sig_parts32). Accuracy table (tests/test_activation_accuracy.py): σ <= 1.0 ulp,
    σ' <= 1.6 ulp + κ."""
    es, _, d, dl, r0 = _one_plus_e32(x)
    q0 = es * r0
    qs = vecmath._fma(r0, vecmath._fma(-q0, d, es) - q0 * dl, q0)
    q = qs * _TWO_M64_F
    # σ(|x|) = 1 - q (within 1.2 ulp: q <= 1/2) and σ' = q (1 - q) in one fma: no second
    # correction for 1 / (1 + e)
    return (_F1 - q if x >= 0 else q), vecmath._fma(-qs, q, qs) * _TWO_M64_F


@njit(cache=True, inline="always")
def _silu_both32(x):  # pragma: no cover - compiled
    """(x σ(x), σ(x) (1 + x σ(-x))) in float32 arithmetic, from the unrounded parts of
    σ(x) = s0 + sc and σ(-x) = n0 + nc. e = exp(-|x|) (vecmath.exp32_scaled, < 0.9 ulp),
    1 + e = d + dl exactly, r = 1 / (1 + e) = r0 + rc (one division, one Newton step that
    takes dl and r0's rounding out) and q = num · r = q0 + qc (the product's error by a
    fused multiply-add, no second Newton step), where num is e for x >= 0 and 2^64 e for
    x < 0: σ(x) = r, σ(-x) = q for x >= 0 (σ(-x) is only added to 1 there: no scaling); σ(x)
    = 2^-64 q, σ(-x) = r for x < 0. 1 + x σ(-x): x n0 = ph + pl exactly, 1 + ph is exact
    for ph in [-4, -0.5] (elsewhere the sum does not cancel), so it is rounded once; σ(x)
    times it in one fma (rounding σ(-x) and 1 + x σ(-x) separately cost up to 2.7 ulp near
    x = -2.4, where κ is 0). Near silu''s zero only σ(-x)'s own error is magnified, less
    than the condition number κ there: no Taylor series needed. For x < 0 the results are
    scaled back by 2^-64 last (one rounding into the subnormals for x < -87)."""
    es, e, d, dl, r0 = _one_plus_e32(x)
    pos = x >= 0
    num = e if pos else es
    rc = r0 * vecmath._fma(-r0, dl, vecmath._fma(-r0, d, _F1))  # 1/(1+e) = r0 + rc (+ O(u²))
    q0 = num * r0
    qc = vecmath._fma(num, rc, vecmath._fma(num, r0, -q0))  # num/(1+e) = q0 + qc (+ O(u²))
    s0, sc = (r0, rc) if pos else (q0, qc)
    n0, nc = (q0, qc) if pos else (r0, rc)
    scale = _F1 if pos else _TWO_M64_F
    ph = x * n0
    pl = vecmath._fma(x, n0, -ph)
    t = (_F1 + ph) + vecmath._fma(x, nc, pl)
    return (x * (s0 + sc)) * scale, vecmath._fma(s0, t, sc * t) * scale


@njit(cache=True, inline="always")
def _sig(x):  # pragma: no cover - compiled
    e = exp(-abs(x))
    n = 1.0 if x >= 0 else e
    return n * (1 / (1 + e))


# sigmoid and its derivative from the same e and 1 / (1 + e) (a fused loop computes both once:
# LLVM merges the identical expressions; one division, the slowest vector operation)
@njit(cache=True, inline="always")
def _sigp(x):  # pragma: no cover - compiled
    """s(x) s(-x) = e / (1 + e)², e = exp(-|x|)."""
    e = exp(-abs(x))
    inv = 1 / (1 + e)
    return (e * inv) * inv


@njit(cache=True, inline="always")
def _sig_both64(x):  # pragma: no cover - compiled
    return _sig(x), _sigp(x)


_sig_both = _by_dtype(_sig_both32, _sig_both64)


@njit(cache=True, inline="always")
def _tanh_f(x):  # pragma: no cover - compiled
    return tanh(x)


@njit(cache=True, inline="always")
def _tanh_d(x):  # pragma: no cover - compiled
    return 4 * _sigp(2 * x)


@njit(cache=True, inline="always")
def _silu_d(x):  # pragma: no cover - compiled
    e = exp(-abs(x))
    pos = x >= 0
    inv = 1 / (1 + e)
    s, s_neg = (1 if pos else e) * inv, (e if pos else 1) * inv
    return _at_zero(x, _SILU0, s * (1 + x * s_neg))


# Exact GELU: Φ and φ from one exponential, E = exp(-x²/2) with x² split exactly, and Cody's
# rational erfcx(t), t = |x|/√2 (vecmath_erf: pure arithmetic, so the loops vectorise):
#   |t| <= 0.46875: Φ = ½ + ½ erf(x/√2);  x < 0: Φ = ½ E erfcx(t);  x > 0: 1 - that.
# erfcx is well conditioned (|t erfcx'/erfcx| < 1), so rounding t costs < 1 ulp; the x² that
# makes Φ(x) ill-conditioned for x < 0 only enters the exponential, exactly. In the tail the
# products are ordered E * (...) last, so that a subnormal E rounds once. Near gelu''s zero
# the Taylor series of _series replaces the cancelling Φ + xφ (selected, not branched).
_EXP_M64 = math.exp(-64.0)


@njit(cache=True, inline="always")
def _gelu_both(x):  # pragma: no cover - compiled
    """(gelu(x), gelu'(x)) of a float64."""
    xc = min(max(x, -40.0), 40.0)
    t = abs(xc) * _SQRT1_2
    num, den, small = _erf_rational(t)
    q = num / den
    hi, lo = _two_square(xc)
    # exp(-x²/2): |lo| < 2**-43, so exp(-lo/2) = 1 - lo/2. Where it would be subnormal
    # (x² > 1400) it is computed times e**64 (adding 64 to -x²/2 in [-800, -700] is exact) and
    # the tail's product scaled back at the end, so that it rounds once (gelu' multiplies E
    # by up to 16)
    far = hi > 1400.0
    ef = exp(-0.5 * hi + (64.0 if far else 0.0)) * (1.0 - 0.5 * lo)
    back = _EXP_M64 if far else 1.0
    neg = xc < 0
    cdf0 = 0.5 + 0.5 * erf_small(xc * _SQRT1_2, q)  # near 0: Φ = ½ + ½ erf(x/√2)
    d0 = cdf0 + xc * (ef * _INV_SQRT_2PI)
    # tails: ½ q = ½ erfcx(t), Φ(-|x|) = E ½ q
    hq = 0.5 * q
    fwd_tail = (ef * (xc * hq)) * back if neg else xc - ef * (xc * hq)
    d_tail = ((ef * (hq + xc * _INV_SQRT_2PI)) * back if neg
              else 1.0 + ef * (xc * _INV_SQRT_2PI - hq))
    fwd = xc * cdf0 if small else fwd_tail
    d = d0 if small else d_tail
    d = _GELU0(xc, d)
    # beyond the clamp: gelu = x (x > 40), -0 below (x Φ(x) underflows; -inf: x * 0 = nan)
    fwd = x if x > 40.0 else (x * 0.0 if x < -40.0 else fwd)
    return (x, x) if x != x else (fwd, d)  # noqa: PLR0124 - NaN propagates


# Exact GELU of a float32: float32 approximations whose errors the float64 combination damps.
#   The Mills ratio m(t) = Φ(-t)/φ(t), t = |x|, over the whole range 0 <= t <= 14.5 as
#     m = w G(w), w = 1/(1 + 0.3 t) (0.187 <= w <= 1), G of degree 10: its last three Horner
#     steps in float64 with w refined by one Newton step, the rest in float32 at w's float32
#     quotient (the rest is a small part of G near t = 0, where Φ needs it most: its error and
#     w's are damped);
#   E = exp(-x²/2) from x² = hi + lo split exactly, as 2^(k+64) (1 + y): exp32's reduction and
#     polynomial in float32, y left unrounded to 1 + y and the sum formed in float64 (the float32
#     1 + y would cost up to 0.5 ulp of Φ near 0); the 2^64 keeps it normal below x = -13.2,
#     where E is subnormal in float32; R = E/√(2π) in float64;
#   Φ = 1 - R m for x >= 0, R m for x < 0; gelu = x Φ, gelu' = Φ + x R, in float64, rounded
#     once.
# Near gelu''s zero (x = -0.7518) Φ + x R cancels in float64 from float32-accurate parts:
# error ~1.3 ulp of m times m/|m - t|, below κ = |x gelu''/gelu'| ~ 1.08/|m - t| there.
# The coefficients: least squares (numpy.polynomial.polynomial.polyfit) of m(t)/w against w on
# 400000 float32 points of [0, 14.5] (half linear, half geometric from 1e-4), m from
# scipy.special.erfcx, weights 1/value reweighted 40 times by the square root of each point's
# relative error (Lawson's iteration towards the minimax fit);
# tests/test_activation_float32.py checks the fit's error against scipy and the kernel's against
# the bound; over all 2^32 inputs: largest error - κ 1.07 forward, 1.54 derivative. (An earlier
# kernel took Φ = ½ + x P(x²) for |x| <= 0.66 and the Mills ratio beyond, both evaluated and
# selected: 1.53 against 1.32 ns per element, timed in one process.)
# x < -14.5: gelu and gelu' round to -0 in float32 (gelu = x * 0: NaN for -inf);
# x > 14.5: gelu = x, gelu' = 1.
_f32 = np.float32
_GELU_LIM_F = _f32(14.5)
#: m(t) = w G(w), w = 1 / (1 + GELU_W32 t), 0 <= t <= 14.5 (G's coefficients, constant first)
GELU_G32 = (0.30001656830047624, 0.2995732063634982, 0.2777862353328923, 0.18826159423209038,
            0.27020956639238736, -0.2674875312455346, 0.5883502510719838, -0.6845047552300721,
            0.35669812672997037, -0.08042543370070758, 0.004836306121422922)
GELU_W32 = 0.3
_GELU_G_F = tuple(_f32(c) for c in GELU_G32[:2:-1])  # float32 part, highest power first
_GELU_W_F = _f32(GELU_W32)
_GELU_R = 2.0**-64 / math.sqrt(2.0 * math.pi)  # undoes the 2^64 of E's scale
_MHALF_F = _f32(-0.5)


@njit(cache=True, inline="always")
def _gelu_both32(x):  # pragma: no cover - compiled
    """(gelu(x), gelu'(x)) of a float32 (float32 results)."""
    xc = min(max(x, -_GELU_LIM_F), _GELU_LIM_F)
    t = abs(xc)
    hi = xc * xc
    lo = vecmath._fma(xc, xc, -hi)
    y, scale = vecmath.exp32_scaled_parts(_MHALF_F * hi, _MHALF_F * lo)  # E 2^64 = scale (1 + y)
    w = _F1 / vecmath._fma(_GELU_W_F, t, _F1)
    g = vecmath_erf._horner(_GELU_G_F, w)
    xd = np.float64(xc)
    wd = np.float64(w)
    wd = wd * vecmath._fma(-vecmath._fma(GELU_W32, abs(xd), 1.0), wd, 2.0)  # Newton step
    gd = vecmath._fma(wd, np.float64(g), GELU_G32[2])
    m = wd * vecmath._fma(wd, vecmath._fma(wd, gd, GELU_G32[1]), GELU_G32[0])
    sr = np.float64(scale) * _GELU_R
    r = vecmath._fma(np.float64(y), sr, sr)  # φ(x)
    q = r * m  # Φ(-t)
    cdf = 1.0 - q if xc >= 0 else q
    fwd = np.float32(xd * cdf)
    d = np.float32(vecmath._fma(xd, r, cdf))
    fwd = x if x > _GELU_LIM_F else (x * _f32(0.0) if x < -_GELU_LIM_F else fwd)
    d = _f32(-0.0) if x < -_GELU_LIM_F else d  # gelu' rounds to -0 below -14.5 (and at -inf)
    return (x, x) if x != x else (fwd, d)  # noqa: PLR0124 - NaN propagates


_gelu_pair = _by_dtype(_gelu_both32, _gelu_both)


@njit(cache=True, inline="always")
def _gelu_tanh_v(x):  # pragma: no cover - compiled
    """(x clamped, x², v = 2β(x + κx³)): the same expressions in f and f' (a fused loop
    evaluates one exp). |x| <= 1e4 keeps x³ finite; s(v) is 0 or 1 beyond."""
    xc = min(max(x, -1e4), 1e4)
    x_sq = xc * xc
    return xc, x_sq, 2 * (_BETA * (xc + _KAPPA * x_sq * xc))


@njit(cache=True, inline="always")
def _gelu_tanh_f(x):  # pragma: no cover - compiled
    return x * _sig(_gelu_tanh_v(x)[2])


@njit(cache=True, inline="always")
def _gelu_tanh_d(x):  # pragma: no cover - compiled
    xc, x_sq, v = _gelu_tanh_v(x)
    return _at_zero(x, _GELU_TANH0,
                    _sig(v) + xc * (2 * _BETA * (1 + 3 * _KAPPA * x_sq)) * _sigp(v))


@njit(cache=True, inline="always")
def _gelu_tanh_both64(x):  # pragma: no cover - compiled
    return _gelu_tanh_f(x), _gelu_tanh_d(x)


# gelu(tanh) of a float32: v = 2β(x + κx³) in float64, split into float32 vh + vl (v computed
# in float32 cost up to 2.2 ulps + κ at x = -1.4); e = exp(-|v|) = exp32(-|vh|)(1 ∓ vl) and
# the unrounded parts of σ(±|v|) from e in float32 (_sig_pair32); f and f' combined from them
# in float64 and rounded once; near f''s zero the float32 Taylor series (11 terms: the rest
# is < 0.01 ulp on |h| < 0.25)
_GELU_TANH0_32 = _series_at_zero32(SERIES["gelu_tanh"][0], SERIES["gelu_tanh"][2], 11)
_2BETA_F = np.float32(2 * _BETA)
_2BETA_3KAPPA_F = np.float32(2 * _BETA * 3 * _KAPPA)
_LIM = 1e4


@njit(cache=True, inline="always")
def _sig_pair32(e):  # pragma: no cover - compiled
    """(r0, rc, q0, qc) in float32 with 1 / (1 + e) = r0 + rc and e / (1 + e) = q0 + qc to
    O(u²) (for e = exp(-|v|): σ(|v|) and σ(-|v|)): 1 + e = d + dl exactly, one division
    r0 = 1 / d and a Newton step each (the sigmoid's compensated division)."""
    d = _F1 + e
    dl = (_F1 - d) + e
    r0 = _F1 / d
    rc = r0 * (vecmath._fma(-r0, d, _F1) - r0 * dl)
    q0 = e * r0
    qc = r0 * (vecmath._fma(-q0, d, e) - q0 * dl)
    return r0, rc, q0, qc


@njit(cache=True, inline="always")
def _gelu_tanh_both32(x):  # pragma: no cover - compiled
    """(gelu(x), gelu'(x)), tanh form, of a float32."""
    xd = min(max(np.float64(x), -_LIM), _LIM)
    v = 2 * (_BETA * (xd + _KAPPA * (xd * xd) * xd))
    vh = np.float32(v)
    vl = np.float32(v - np.float64(vh))
    pos = vh >= 0
    e = vecmath.exp32(-abs(vh))
    # exp(-|vh + vl|) = e (1 -+ vl) to first order (|vl| <= 2**-24 |v|; e = 0 beyond |v| > 104)
    e = vecmath._fma(e, -vl if pos else vl, e)
    r0, rc, q0, qc = _sig_pair32(e)
    s0, sc, o0, oc = (r0, rc, q0, qc) if pos else (q0, qc, r0, rc)  # σ(v), 1 - σ(v)
    s = np.float64(s0) + np.float64(sc)
    om = np.float64(o0) + np.float64(oc)
    # f = x σ(v), f' = σ(v) (1 + x v'(x) (1 - σ(v))) in float64 from the unrounded σ(±|v|)
    # (from σ(v) rounded to float32: up to 1.95 ulps + κ in f' at x = -1.22 on every 61st
    # float32; the float32 σ(v) + x v' σ'(v): ~3 ulps at x = -1.7)
    t = xd * (2 * _BETA * (1 + 3 * _KAPPA * (xd * xd)))
    d = np.float32(s * (1 + t * om))
    return np.float32(np.float64(x) * s), _GELU_TANH0_32(np.float32(xd), d)


_gelu_tanh_both = _by_dtype(_gelu_tanh_both32, _gelu_tanh_both64)


@njit(cache=True, inline="always")
def _softplus_body(x, beta):  # pragma: no cover - compiled
    bx = x * beta
    return (max(bx, 0.0) + log1p(exp(-abs(bx)))) / beta


@njit(cache=True, inline="always")
def _softplus_both64(x, beta):  # pragma: no cover - compiled
    return _softplus_body(x, beta), _sig(x * beta)


_SQRT2_F = np.float32(1.41421356)
_F0, _FHALF, _F2 = np.float32(0.0), np.float32(0.5), np.float32(2.0)


@njit(cache=True, inline="always")
def _log1p_unit32(e, d, dl, r0):  # pragma: no cover - compiled
    """log(1 + e) for e in [0, 1] in float32 arithmetic, from _sig_parts32's 1 + e = d + dl
    and r0 ~ 1 / d: vecmath.log1p_32's reduction and polynomial (musl's log1pf) with k in
    {0, 1} and the correction dl / d taken as dl r0 (no second division); d - 1 and d / 2 - 1
    are exact."""
    big = d > _SQRT2_F
    f = (d * _FHALF if big else d) - _F1
    k = _F1 if big else _F0
    c = dl * r0
    hfsq = _FHALF * f * f
    s = f / (_F2 + f)
    z = s * s
    w = z * z
    t1 = w * vecmath._fma(w, vecmath._LGF[3], vecmath._LGF[1])
    t2 = z * vecmath._fma(w, vecmath._LGF[2], vecmath._LGF[0])
    return (s * (hfsq + (t2 + t1)) + vecmath._fma(k, vecmath._LN2_LO_LOG_F, c) - hfsq + f
            + k * vecmath._LN2_HI_LOG_F)


@njit(cache=True, inline="always")
def _softplus_both32(x, beta):  # pragma: no cover - compiled
    """(softplus(x), σ(βx)) for float32 x: βx (β as two float32 parts, rounded once),
    log(1 + exp(-|βx|)) and σ(βx) in float32
    (one exp and one division shared, _sig_parts32), max(βx, 0) + log1p rounded in
    float32, then the division by β in float64 and one rounding (exact for β = 1)."""
    b_hi = np.float32(beta)
    bx = vecmath._fma(x, b_hi, x * np.float32(beta - np.float64(b_hi)))  # β split: one rounding
    r, qs, (r0, _, _, _), (e, d, dl) = _sig_parts32(bx)
    lp = _log1p_unit32(e, d, dl, r0)
    y = (bx if bx > _F0 else _F0) + lp  # noqa: FURB136 - a select (NaN: lp carries it)
    return np.float32(np.float64(y) * (1.0 / beta)), (r if bx >= _F0 else qs * _TWO_M64_F)


_softplus_both = _by_dtype2(_softplus_both32, _softplus_both64)


# sigmoid
# tanh
# relu
@vectorize(_SIG1, **_OPTS)
def relu_f(x):  # pragma: no cover - compiled
    if x != x:  # noqa: PLR0124 - NaN propagates (math.isnan is not a select)
        return x
    return x if x > 0 else 0.0


@vectorize(_SIG1, **_OPTS)
def relu_d(x):  # pragma: no cover - compiled
    return 0.0 if x <= 0 else 1.0


@vectorize(_SIG2, **_OPTS)
def relu_b(x, dy):  # pragma: no cover - compiled
    return 0.0 if x <= 0 else dy


# leaky_relu(negative_slope); the slope arrives as float64 whatever the input's dtype
@vectorize(["float32(float32, float64)", "float64(float64, float64)"], **_OPTS)
def leaky_relu_f(x, slope):  # pragma: no cover - compiled
    return x if x > 0 else np.float64(x) * slope


@vectorize(["float32(float32, float64)", "float64(float64, float64)"], **_OPTS)
def leaky_relu_d(x, slope):  # pragma: no cover - compiled
    return 1.0 if x > 0 else slope


@vectorize(["float32(float32, float32, float64)", "float64(float64, float64, float64)"],
           **_OPTS)
def leaky_relu_b(x, dy, slope):  # pragma: no cover - compiled
    return dy if x > 0 else np.float64(dy) * slope


# elu(alpha), selu


@njit(cache=True, inline="always")
def _elu_f(x, alpha):  # pragma: no cover - compiled
    v = alpha * expm1(min(x, 0.0))
    return x if x > 0 else v


@njit(cache=True, inline="always")
def _elu_d(x, alpha):  # pragma: no cover - compiled
    v = alpha * exp(min(x, 0.0))
    return v if x <= 0 else 1.0


@njit(cache=True, inline="always")
def _elu_both64(x, p):  # pragma: no cover - compiled
    alpha, scale = p
    return scale * _elu_f(x, alpha), scale * _elu_d(x, alpha)


@njit(cache=True, inline="always")
def _split32(c):  # pragma: no cover - compiled
    """A float64 constant as hi + lo float32 parts: fma(hi, v, lo * v) is c v rounded once."""
    hi = np.float32(c)
    return hi, np.float32(c - np.float64(hi))


@njit(cache=True, inline="always")
def _elu_both32(x, p):  # pragma: no cover - compiled
    """(scale elu(x, α), scale elu'(x, α)) for float32 x in float32 arithmetic: e^x - 1 and
    e^x for x <= 0 from one reduction and polynomial (vecmath's expm1_32 and exp32, the
    shared expressions written once), times scale α split in two float32 parts (rounded
    once); x > 0: scale x the same way, scale itself for the derivative."""
    alpha, scale = p
    a_hi, a_lo = _split32(scale * alpha)
    s_hi, s_lo = _split32(scale)
    xn = min(x, _F0)
    kf, hi, lo = vecmath._reduce32(vecmath._clamp32(xn, vecmath._EXP_LO_F, _F0))
    r = hi - lo
    cp = ((hi - r) - lo) + vecmath._expm1_poly32(r)
    k = np.int32(kf)
    t = vecmath._pow2_32(max(k, -30))  # k < -25: e^x - 1 rounds to -1 all the same
    em1 = vecmath._fma(t, cp, vecmath._fma(t, r, t - _F1))
    em1 = xn if not abs(xn) >= vecmath._TINY_F else em1  # -0.0, tiny x
    k1 = np.int32(k >> 1)
    ex = ((_F1 + (r + cp)) * vecmath._pow2_32(k1)) * vecmath._pow2_32(np.int32(k - k1))
    ex = ex if xn >= vecmath._EXP_LO_F else _F0
    f_neg = vecmath._fma(a_hi, em1, a_lo * em1)
    d_neg = vecmath._fma(a_hi, ex, a_lo * ex)
    f = vecmath._fma(s_hi, x, s_lo * x) if x > _F0 else f_neg
    d = s_hi if x > _F0 else d_neg
    return (x, x) if x != x else (f, d)  # noqa: PLR0124 - NaN propagates


_elu_both = _by_dtype2(_elu_both32, _elu_both64)
_SELU = (SELU_ALPHA, SELU_SCALE)


# softplus(beta, threshold): x itself where x * beta > threshold, compared in x's dtype as
# torch does (beta_t, threshold_t in x's dtype; beta in float64 for the formula)


# gelu (exact) and gelu (tanh)
# silu
@njit(cache=True, inline="always")
def _silu_both64(x):  # pragma: no cover - compiled
    return x * _sig(x), _silu_d(x)


_silu_both = _by_dtype(_silu_both32, _silu_both64)


# softmax / log_softmax over the last axis of a 2-D C-contiguous array, in float64:
# d = x - max with its rounding error r (two-sum) folded into e = exp(d)(1 + r); the sum of the
# other elements (all but the first maximum) compensated (Neumaier); softmax = e / (1 + sum),
# log_softmax = (d + r) - log1p(sum), which keeps the dominant logit's -log(1 + tiny).
# Each row in passes that LLVM vectorises: the exps (a map into e), the sum in four
# interleaved partial sums (four independent chains; float addition is not reassociated), the
# outputs (a map).
@njit(inline="always")
def _two_sum_lane(s, c, v):  # pragma: no cover - compiled
    """(s + v, c + its rounding error) (Neumaier's step, the branch as a select)."""
    t = s + v
    err = (s - t) + v if abs(s) >= abs(v) else (v - t) + s
    return t, c + err


@njit(inline="always")
def _sum4(e, m, exact):  # pragma: no cover - compiled
    """Σ e[:m] in interleaved partial sums: four compensated where ``exact``, else eight
    pairs (independent chains; the eight-wide blocks vectorise)."""
    m4 = m - m % 4
    if exact:
        s0 = s1 = s2 = s3 = 0.0
        c0 = c1 = c2 = c3 = 0.0
        for j in range(0, m4, 4):
            s0, c0 = _two_sum_lane(s0, c0, e[j])
            s1, c1 = _two_sum_lane(s1, c1, e[j + 1])
            s2, c2 = _two_sum_lane(s2, c2, e[j + 2])
            s3, c3 = _two_sum_lane(s3, c3, e[j + 3])
        for j in range(m4, m):
            s0, c0 = _two_sum_lane(s0, c0, e[j])
        s, c = _two_sum_lane(s0, c0, s1)
        s, c = _two_sum_lane(s, c, s2)
        s, c = _two_sum_lane(s, c, s3)
        return s + (c + (c1 + (c2 + c3)))
    acc = np.zeros(16, np.float64)
    m16 = m - m % 16
    for j in range(0, m16, 16):
        for k in range(16):
            acc[k] += e[j + k]
    s = 0.0
    for j in range(m16, m):
        s += e[j]
    for k in range(16):
        s += acc[k]
    return s


@njit(inline="always")
def _softmax_row(x, i, e, dr, exact):  # pragma: no cover - compiled
    """Fills e (exp(d) (1 + r)) and dr (d + r) for row i; returns the sum of the others."""
    m = x.shape[1]
    # the maximum through integer keys (an integer max reduction vectorises), NaNs counted
    mk = vecmath.order_key(x[i, 0])
    nans = 0
    for j in range(m):
        v = x[i, j]
        mk = max(mk, vecmath.order_key(v))
        nans += v != v  # noqa: PLR0124
    mx = np.nan if nans else np.float64(vecmath.from_order_key(mk, x[i, 0]))
    arg = m  # the first maximum's index (an integer min reduction in the exp pass)
    for j in range(m):
        a = np.float64(x[i, j])
        arg = min(arg, j if a == mx else m)
        d = a - mx
        if exact:
            bb = d - a
            r = (a - (d - bb)) + (-mx - bb)
            r = r if abs(r) < np.inf else 0.0  # not finite (an infinite logit): no correction
            ej = exp(d)
            e[j] = ej + ej * r
            dr[j] = d + r
        else:
            e[j] = exp(d)
            dr[j] = d
    arg = arg if arg < m else 0  # a NaN row
    keep = e[arg]
    e[arg] = 0.0  # the maximum's own 1 stays out of the sum
    s = _sum4(e, m, exact)
    e[arg] = keep
    return s


@njit(cache=True, error_model="numpy")
def _softmax_rows(x, out, log, exact):  # pragma: no cover - compiled
    """``exact`` for float64 logits (two-sum and compensation); float32 logits in float64
    are exact enough without them."""
    n, m = x.shape
    e = np.empty(m, np.float64)
    dr = np.empty(m, np.float64)
    for i in range(n):
        _softmax_out_row(x, i, out, e, dr, log, exact)


@njit(inline="always")
def _softmax_out_row(x, i, out, e, dr, log, exact):  # pragma: no cover - compiled
    """Row i of ``_softmax_rows``."""
    m = x.shape[1]
    s = _softmax_row(x, i, e, dr, exact)
    if log:
        ls = log1p(s)
        for j in range(m):
            out[i, j] = dr[j] - ls
    else:
        inv = 1 / (1 + s)
        for j in range(m):
            out[i, j] = e[j] * inv


# Fused forward + backward: one pass, the function evaluated once per element, both outputs
# written. Each body calls the same scalar functions as the separate forward and VJP loops
# below, in the same order, so the results are the same bits (tests/test_activations_losses.py
# checks it). elu, selu and gelu(tanh) share no work between forward and backward, but one pass
# still reads x once. Plain loops over flat arrays, not scalar-core gufuncs: the gufunc
# machinery's per-element call made relu's fused pass 4x slower than its two vectorised ufuncs.
# The bodies are branch-free (selects), so LLVM vectorises them (vecmath's functions are pure
# arithmetic); error_model "numpy" keeps divisions free of zero checks.
_FB_OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy"}


@njit(**_FB_OPTS)
def sigmoid_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        f, d = _sig_both(x[i])
        y[i] = f
        dx[i] = dy[i] * d


@njit(**_FB_OPTS)
def tanh_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = np.float64(x[i])
        y[i] = _tanh_f(xi)
        dx[i] = np.float64(dy[i]) * _tanh_d(xi)


@njit(**_FB_OPTS)
def relu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        if xi != xi:  # noqa: PLR0124 - NaN propagates
            y[i] = xi
        else:
            y[i] = xi if xi > 0 else 0.0
        dx[i] = 0.0 if xi <= 0 else dy[i]


@njit(**_FB_OPTS)
def leaky_relu_fb(x, dy, y, dx, slope):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        y[i] = xi if xi > 0 else np.float64(xi) * slope
        dx[i] = dy[i] if xi > 0 else np.float64(dy[i]) * slope


@njit(**_FB_OPTS)
def softplus_fb(x, dy, y, dx, beta_t, threshold_t, beta):  # pragma: no cover - compiled
    for i in range(x.size):
        xi = x[i]
        dyi = dy[i]
        lin = xi * beta_t > threshold_t
        yv, sv = _softplus_both(xi, beta)
        dv = dyi * sv
        # both evaluated, then selected (a branch would stop the loop vectorising)
        y[i] = xi if lin else yv
        dx[i] = dyi if lin else dv


@njit(**_FB_OPTS)
def gelu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        f, d = _gelu_pair(x[i])
        y[i] = f
        dx[i] = dy[i] * d


@njit(**_FB_OPTS)
def elu_fb(x, dy, y, dx, alpha):  # pragma: no cover - compiled
    for i in range(x.size):
        f, d = _elu_both(x[i], (alpha, 1.0))
        y[i] = f
        dx[i] = dy[i] * d


@njit(**_FB_OPTS)
def selu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        f, d = _elu_both(x[i], _SELU)
        y[i] = f
        dx[i] = dy[i] * d


@njit(**_FB_OPTS)
def gelu_tanh_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        f, d = _gelu_tanh_both(x[i])
        y[i] = f
        dx[i] = dy[i] * d


@njit(**_FB_OPTS)
def silu_fb(x, dy, y, dx):  # pragma: no cover - compiled
    for i in range(x.size):
        f, d = _silu_both(x[i])
        y[i] = f
        dx[i] = dy[i] * d


@njit(cache=True, error_model="numpy")
def _softmax_fb_rows(x, dy, y, dx, log, exact):  # pragma: no cover - compiled
    """Row by row (the row stays in cache): y as in ``_softmax_rows``, then dx from the stored
    y. ``y`` and ``dx`` may be the same array: each y is read before its dx is written."""
    n, m = x.shape
    e = np.empty(m, np.float64)
    dr = np.empty(m, np.float64)
    g = np.empty(m, np.float64)
    for i in range(n):
        _softmax_fb_row(x, dy, y, dx, i, e, dr, g, log, exact)


@njit(inline="always")
def _softmax_fb_row(x, dy, y, dx, i, e, dr, g, log, exact):  # pragma: no cover - compiled
    """Row i of ``_softmax_fb_rows``."""
    m = x.shape[1]
    s = _softmax_row(x, i, e, dr, exact)
    inv = 1 / (1 + s)
    if log:
        ls = log1p(s)
        for j in range(m):
            y[i, j] = dr[j] - ls
        for j in range(m):
            g[j] = dy[i, j]
        sd = _sum4(g, m, False)
        # exp(y) = e / (1 + s) from the unrounded e (torch: exp of the rounded output)
        for j in range(m):
            dx[i, j] = dy[i, j] - (e[j] * inv) * sd
    else:
        for j in range(m):
            y[i, j] = e[j] * inv
        for j in range(m):
            g[j] = dy[i, j] * y[i, j]
        sd = _sum4(g, m, False)
        for j in range(m):
            dx[i, j] = y[i, j] * (dy[i, j] - sd)


# softmax / log_softmax of float32 logits, in float32 lanes (twice float64's) where the error
# analysis allows it, in four passes over each row (the row stays in cache):
#   1. the maximum mx, through int32 order keys (max and min reductions; NaNs are keys beyond
#      ±inf's);
#   2. e = 2^64 exp(x - mx) into a float32 row (scaled: never subnormal, one power of two):
#      d = x - mx rounded and its error dl (two-sum, exact), then vecmath's float32 exp with
#      dl taken into the reduction (a dropped dl would cost up to |d|/2 ulps; d runs to -104);
#      <= 0.86 ulp measured on 2e7 pairs (x, mx);
#   3. the sums in float64 in one loop compiled with ``reassoc`` (so that it vectorises): the
#      others s = Σ e over x != mx plus one for each repeat of mx (the dominant logit keeps its
#      log1p(s)), and Σ dy e (softmax) or Σ dy (log_softmax) for the backward;
#   4. the outputs: softmax y = e / (1 + s) with the reciprocal as a float32 pair (one
#      rounding); log_softmax y = x - (mx + log1p(s)) with mx + log1p(s) as a float32 pair and
#      x minus its high part by two-sum (exact); backward dx = y (dy - Σ dy y) and
#      dy - exp(y) Σ dy, with Σ dy y = (Σ dy e) / (1 + s) and exp(y) = e / (1 + s).
# Measured: softmax <= 1.35 ulp, log_softmax <= 0.5 ulp (tests/test_activations_losses.py's
# hard rows). Rows with a NaN or an infinite maximum run the float64-arithmetic row code above
# (NaN rows, and x - inf = NaN as torch has it), as float32 rows did before.
_D_FLOOR = np.float32(-110.0)  # exp(d) rounds to 0 in float32 below -104
_KEY_PINF = 0x7F800000  # order key (int32) of +inf; of -inf: -1 - that
_KEY_NINF = -1 - 0x7F800000
_TWO_M64 = 2.0**-64  # e is kept times 2^64


@njit(inline="always")
def _key32(v):  # pragma: no cover - compiled
    """The int32 order key of a float32 (as vecmath.order_key, kept in int32: int64 lanes
    would halve the vector width); its own inverse up to the bitcast."""
    b = vecmath._f32_as_i32(v)
    return np.int32(b ^ np.int32(np.int32(b >> 31) & np.int32(0x7FFFFFFF)))


@njit(inline="always")
def _exp32_pair(d, dl):  # pragma: no cover - compiled
    """2^64 e^(d + dl) in float32 for d in [-110, 0] and |dl| <= ulp(d)/2 (scaled so that it
    is never subnormal: one power of two, one product): vecmath.exp32 with dl taken into the
    reduction's low part (lo - dl rounds by < 2^-30; lo = k ln2's low part, |lo| < 0.04)."""
    kf, hi, lo = vecmath._reduce32(d)
    lo = lo - dl
    r = hi - lo
    p = _F1 + (r + (((hi - r) - lo) + vecmath._expm1_poly32(r)))
    return p * vecmath._pow2_32(np.int32(np.int32(kf) + np.int32(64)))


@njit(error_model="numpy", cache=True)
def _max32(x, i):  # pragma: no cover - compiled
    """(largest, smallest) order key of row i."""
    m = x.shape[1]
    hi = lo = _key32(x[i, 0])
    for j in range(m):
        k = _key32(x[i, j])
        hi = max(hi, k)
        lo = min(lo, k)
    return hi, lo


@njit(error_model="numpy", cache=True)
def _exp32_row(x, i, mx, e):  # pragma: no cover - compiled
    """e[j] = exp(x[i, j] - mx) for a finite mx (x = -inf gives 0)."""
    nmx = -mx
    for j in range(x.shape[1]):
        a = x[i, j]
        d = a + nmx
        bb = d - a
        dl = (a - (d - bb)) + (nmx - bb)
        keep = d > _D_FLOOR  # false for d = -inf, where dl is NaN
        e[j] = _exp32_pair(d if keep else _D_FLOOR, dl if keep else _F0)


@njit(error_model="numpy", cache=True, fastmath={"reassoc", "contract"})
def _sums32(x, dy, i, mx, e, log):  # pragma: no cover - compiled
    """(Σ e[j] over x[i, j] != mx, the count of x[i, j] == mx, Σ dy (log) or Σ dy e), the
    sums in float64. One function for the forward and the backward, so that both get the
    same bits (the order of a re-associated sum is the compiled code's)."""
    s = 0.0
    sd = 0.0
    t = np.int32(0)
    for j in range(x.shape[1]):
        top = x[i, j] == mx
        ej = np.float64(e[j])
        s += 0.0 if top else ej
        t = np.int32(t + np.int32(top))
        dyj = np.float64(dy[i, j])
        sd += dyj if log else dyj * ej
    return s, t, sd


@njit(error_model="numpy", cache=True)
def _softmax32_rows(x, dy, y, dx, log, backward):  # pragma: no cover - compiled
    """float32 softmax (log: log_softmax) of each row of x into y, and where ``backward``
    dx from dy. ``y`` and ``dx`` may be the same array (each y is written before its dx)."""
    n, m = x.shape
    e = np.empty(m, np.float32)
    e64 = np.empty(m, np.float64)
    dr = np.empty(m, np.float64)
    g = np.empty(m, np.float64)
    for i in range(n):
        hk, lk = _max32(x, i)
        if not (_KEY_NINF < hk < _KEY_PINF and lk >= _KEY_NINF):
            # a NaN, or an infinite maximum: the float64 row code
            if backward:
                _softmax_fb_row(x, dy, y, dx, i, e64, dr, g, log, False)
            else:
                _softmax_out_row(x, i, y, e64, dr, log, False)
            continue
        mx = vecmath._i32_as_f32(np.int32(hk ^ np.int32(np.int32(hk >> 31) & 0x7FFFFFFF)))
        _exp32_row(x, i, mx, e)
        s, t, sd = _sums32(x, dy, i, mx, e, log)  # the forward passes x as dy
        s = s * _TWO_M64 + np.float64(t - 1)  # each repeat of the maximum adds exp(0) = 1
        inv = 1.0 / (1.0 + s)
        if log:
            ls = log1p(s)
            c = np.float64(mx) + ls
            ch = np.float32(c)
            cl = np.float32((np.float64(mx) - np.float64(ch)) + ls)
            nch = -ch
            gl = np.float32(inv * sd)
            for j in range(m):
                a = x[i, j]
                u = a + nch
                bb = u - a
                v = u + (((a - (u - bb)) + (nch - bb)) - cl)
                y[i, j] = v if v == v else u  # noqa: PLR0124 - u = -inf: two-sum's NaN
                if backward:
                    dx[i, j] = vecmath._fma(-(e[j] * _TWO_M64_F), gl, dy[i, j])
        else:
            inv *= _TWO_M64
            ih = np.float32(inv)
            il = np.float32(inv - np.float64(ih))
            sdf = np.float32(sd * inv)
            for j in range(m):
                ej = e[j]
                yj = vecmath._fma(ej, ih, ej * il)
                y[i, j] = yj
                if backward:
                    dx[i, j] = yj * (dy[i, j] - sdf)


_FUSED = {"sigmoid", "tanh", "relu", "leaky_relu", "softplus", "gelu", "silu", "elu", "selu"}


# Separate forward, derivative and backward: plain loops over contiguous arrays (a ufunc's
# strided element loop does not vectorise) over the same scalar (x, p) -> (f, f') functions as
# the fused loops (the same bits: tests/test_activations_losses.py).
@njit(cache=True, inline="always")
def _sig_p(x, p):  # pragma: no cover - compiled
    return _sig_both(x)


@njit(cache=True, inline="always")
def _silu_p(x, p):  # pragma: no cover - compiled
    return _silu_both(x)


@njit(cache=True, inline="always")
def _tanh_p(x, p):  # pragma: no cover - compiled
    xd = np.float64(x)
    return _tanh_f(xd), _tanh_d(xd)


@njit(cache=True, inline="always")
def _softplus_p(x, p):  # pragma: no cover - compiled
    beta_t, threshold_t, beta = p
    f, d = _softplus_both(x, beta)
    lin = x * beta_t > threshold_t
    return (x if lin else f), (np.float64(1.0) if lin else np.float64(d))


@njit(cache=True, inline="always")
def _gelu_p(x, p):  # pragma: no cover - compiled
    return _gelu_pair(x)


@njit(cache=True, inline="always")
def _gelu_tanh_p(x, p):  # pragma: no cover - compiled
    return _gelu_tanh_both(x)


@njit(**_FB_OPTS)
def _gelu_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _gelu_p(x[i], p)[0]


@njit(**_FB_OPTS)
def _gelu_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _gelu_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _gelu_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _gelu_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _gelu_tanh_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _gelu_tanh_p(x[i], p)[0]


@njit(**_FB_OPTS)
def _gelu_tanh_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _gelu_tanh_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _gelu_tanh_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _gelu_tanh_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _sigmoid_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _sig_p(x[i], p)[0]


@njit(**_FB_OPTS)
def _sigmoid_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _sig_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _sigmoid_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _sig_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _silu_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _silu_p(x[i], p)[0]


@njit(**_FB_OPTS)
def _silu_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _silu_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _silu_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _silu_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _tanh_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _tanh_p(x[i], p)[0]


@njit(**_FB_OPTS)
def _tanh_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _tanh_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _tanh_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _tanh_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _softplus_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _softplus_p(x[i], p)[0]


@njit(**_FB_OPTS)
def _softplus_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _softplus_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _softplus_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _softplus_p(x[i], p)[1]


@njit(**_FB_OPTS)
def _elu_fwd(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _elu_both(x[i], p)[0]


@njit(**_FB_OPTS)
def _elu_der(x, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _elu_both(x[i], p)[1]


@njit(**_FB_OPTS)
def _elu_bwd(x, dy, out, p):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = dy[i] * _elu_both(x[i], p)[1]


# written out per function: loops made by a factory are closures, whose cache entries numba
# keys by the pickled closure (a new key in every process: nothing was ever reused)
_MAPS = {name: (globals()[f"_{key}_fwd"], globals()[f"_{key}_der"], globals()[f"_{key}_bwd"])
         for name, key in (("sigmoid", "sigmoid"), ("silu", "silu"), ("tanh", "tanh"),
                           ("softplus", "softplus"), ("elu", "elu"), ("selu", "elu"),
                           ("gelu", "gelu"), ("gelu_tanh", "gelu_tanh"))}


def _key(name: str, params: dict[str, Any]) -> str:
    return "gelu_tanh" if name == "gelu" and params.get("approximate") == "tanh" else name


def _map_args(name: str, params: dict[str, Any], dtype: np.dtype) -> Any:
    if name == "elu":
        return (float(params["alpha"]), 1.0)
    if name == "selu":
        return _SELU
    if name == "softplus":
        return _extra(name, params, dtype)
    return 0.0


def _run_map(name: str, params: dict[str, Any], which: int, x: np.ndarray,
             *dy: np.ndarray) -> Any:
    """forward (0), derivative (1) or backward (2, with dy) through the loops above; strided
    inputs are copied to contiguous ones first. A 0-d input gives a NumPy scalar, as a ufunc
    would."""
    out = np.empty(x.shape, x.dtype)
    flat = [np.ascontiguousarray(a).reshape(-1) for a in (x, *dy)]
    _MAPS[_key(name, params)][which](*flat, out.reshape(-1), _map_args(name, params, x.dtype))
    return out[()] if out.ndim == 0 else out


def _rows(x: np.ndarray, dim: int) -> tuple[np.ndarray, Any]:
    moved = np.moveaxis(x, dim, -1)
    shape = moved.shape
    flat = np.ascontiguousarray(moved).reshape(-1, shape[-1] if shape else 1)
    return flat, lambda r: np.moveaxis(r.reshape(shape), -1, dim)


def _extra(name: str, params: dict[str, Any], dtype: np.dtype) -> tuple[Any, ...]:
    t = dtype.type
    if name == "leaky_relu":
        return (float(params["negative_slope"]),)
    if name == "elu":
        return (float(params["alpha"]),)
    if name == "softplus":
        return (t(params["beta"]), t(params["threshold"]), float(params["beta"]))
    return ()


def _ufuncs(name: str, params: dict[str, Any]) -> tuple[Any, Any, Any]:
    g = globals()
    key = "gelu_tanh" if name == "gelu" and params.get("approximate") == "tanh" else name
    return g[f"{key}_f"], g[f"{key}_d"], g[f"{key}_b"]


def _softmax_fb(rows: np.ndarray, drows: np.ndarray, y: np.ndarray, dx: np.ndarray,
                log: bool) -> None:
    if rows.dtype == np.float32:
        _softmax32_rows(rows, drows, y, dx, log, True)
    else:
        _softmax_fb_rows(rows, drows, y, dx, log, rows.dtype == np.float64)


def forward(name: str, x: np.ndarray, **params: Any) -> np.ndarray:
    if name in ("softmax", "log_softmax"):
        rows, back = _rows(x, params["dim"])
        out = np.empty_like(rows)
        if rows.dtype == np.float32:
            _softmax32_rows(rows, rows, out, out, name == "log_softmax", False)
        else:
            _softmax_rows(rows, out, name == "log_softmax", x.dtype == np.float64)
        return np.ascontiguousarray(back(out))
    if _key(name, params) in _MAPS:
        return _run_map(name, params, 0, x)
    return _ufuncs(name, params)[0](x, *_extra(name, params, x.dtype))


def derivative(name: str, x: np.ndarray, **params: Any) -> np.ndarray:
    if _key(name, params) in _MAPS:
        return _run_map(name, params, 1, x)
    return _ufuncs(name, params)[1](x, *_extra(name, params, x.dtype))


def backward(name: str, x: np.ndarray, dy: np.ndarray, **params: Any) -> np.ndarray:
    if name in ("softmax", "log_softmax"):
        rows, back = _rows(x, params["dim"])
        drows, _ = _rows(dy, params["dim"])
        out = np.empty_like(rows)
        # the fused kernel with y and dx in one array: each element of y is read before its
        # dx overwrites it
        _softmax_fb(rows, drows, out, out, name == "log_softmax")
        return np.ascontiguousarray(back(out))
    if _key(name, params) in _MAPS:
        return _run_map(name, params, 2, x, dy)
    return _ufuncs(name, params)[2](x, dy, *_extra(name, params, x.dtype))


def forward_backward(name: str, x: np.ndarray, dy: np.ndarray, **params: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(forward(...), backward(...))``, fused where the two share their work (see above)."""
    if name in ("softmax", "log_softmax"):
        rows, back = _rows(x, params["dim"])
        drows, _ = _rows(dy, params["dim"])
        y, dx = np.empty_like(rows), np.empty_like(rows)
        _softmax_fb(rows, drows, y, dx, name == "log_softmax")
        return np.ascontiguousarray(back(y)), np.ascontiguousarray(back(dx))
    if name not in _FUSED:
        return forward(name, x, **params), backward(name, x, dy, **params)
    key = "gelu_tanh" if name == "gelu" and params.get("approximate") == "tanh" else name
    xf = np.ascontiguousarray(x).reshape(-1)
    dyf = np.ascontiguousarray(dy).reshape(-1)
    y, dx = np.empty_like(xf), np.empty_like(xf)
    globals()[f"{key}_fb"](xf, dyf, y, dx, *_extra(name, params, x.dtype))
    return y.reshape(x.shape), dx.reshape(x.shape)
