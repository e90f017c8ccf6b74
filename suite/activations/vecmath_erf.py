"""erf, erfc and a scaled erfcx as pure arithmetic, for Numba loops that LLVM vectorises.

``math.erf``/``math.erfc`` in an ``@njit`` loop are scalar libm calls (the PyPI llvmlite has no
SVML), which keeps the loop scalar. The functions here are rational approximations plus
:func:`~suite.activations.vecmath.exp`, written without branches on the argument: every range's
numerator and denominator are evaluated and the right pair is *selected*, then divided once,
so a loop over an array compiles to packed SIMD instructions.

Source of the approximations: W. J. Cody, "Rational Chebyshev approximations for the error
function", Math. Comp. 23 (1969) 631-638, with the coefficient sets of his SPECFUN routine
``CALERF`` (netlib.org/specfun/erf), which approximate erf / erfc to at least 18 significant
digits:

* ``|x| <= 0.46875``: erf(x) = x A(x²) / B(x²) (degree 4 / 4);
* ``0.46875 < |x| <= 4``: erfcx(x) = exp(x²) erfc(x) = C(x) / D(x) (degree 8 / 8);
* ``|x| > 4``: erfcx(x) = (1/√π - R(1/x²) / x²) / x with R of degree 5 / 5, evaluated here as
  polynomials in x² (numerator and denominator multiplied by x¹⁰; exact in exact arithmetic,
  and no second division).

erfc(x) for x > 0.46875 is exp(-x²) erfcx(x) with x² split exactly into hi + lo (Dekker's
product), so the exponential loses nothing to the rounding of x², and the result underflows
gradually (subnormal, then 0 beyond x ≈ 27.3); erfc(x) = 2 - erfc(-x) for x < 0; erf = 1 - erfc
there. ±inf, NaN and tiny arguments follow C99 (erf(±0) = ±0, erf(±inf) = ±1, erfc(+inf) = 0,
erfc(-inf) = 2, NaN propagates).

float32 versions (``erf32``, ``erfc32``) evaluate the float64 formulas and round once: eight
float64 lanes per AVX-512 vector instead of sixteen, but the result is the float64 value
correctly rounded to float32 in all but the rarest cases (tests/test_vecmath_erf.py measures it
on all 2³² inputs).

:func:`ndtr_parts` is the form the exact GELU uses: Φ(x) and exp(-x²/2) sharing one
exponential, with t = |x|/√2 passed to erfcx, whose condition number is below 1 for t >= 0
(so rounding t costs < 1 ulp) while the ill-conditioned x² lives only in the exponential,
where it is split exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

try:  # placeholder until vecmath lands
    from suite.activations.vecmath import exp
except ImportError:  # pragma: no cover
    import math
    exp = math.exp

# Cody (1969), CALERF: erf on [0, 0.46875], A(z)/B(z) in z = x²
_A0, _A1, _A2, _A3, _A4 = (3.16112374387056560e00, 1.13864154151050156e02,
                           3.77485237685302021e02, 3.20937758913846947e03,
                           1.85777706184603153e-1)
_B0, _B1, _B2, _B3 = (2.36012909523441209e01, 2.44024637934444173e02,
                      1.28261652607737228e03, 2.84423683343917062e03)
# erfcx on [0.46875, 4]: C(x)/D(x)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
# erfcx beyond 4: (1/sqrt(pi) - ysq P(ysq)/Q(ysq)) / x, ysq = 1/x²
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1  # 1/sqrt(pi)
_THRESH = 0.46875
_SPLIT = 4.0
#: erfc(x) = 0 in float64 beyond ~27.3; clamping here keeps x¹⁰ finite in the far range
_TMAX = 30.0
_SPLITTER = 134217729.0  # 2**27 + 1


@njit(inline="always")
def _two_square(a):  # pragma: no cover - compiled
    """(hi, lo) with hi + lo = a² exactly (Dekker), for |a| <= 2**995."""
    p = a * a
    t = _SPLITTER * a
    ah = t - (t - a)
    al = a - ah
    return p, ((ah * ah - p) + 2.0 * (ah * al)) + al * al


@njit(inline="always")
def _rational(t):  # pragma: no cover - compiled
    """(num, den, small) for 0 <= t <= _TMAX: erf(t) = t num/den where ``small``
    (t <= 0.46875), erfcx(t) = num/den elsewhere. All three ranges are evaluated; the pair
    is selected, so that the caller divides once."""
    z = t * t
    # range 1: erf(t)/t = A(z)/B(z)
    n1 = (((_A4 * z + _A0) * z + _A1) * z + _A2) * z + _A3
    d1 = (((z + _B0) * z + _B1) * z + _B2) * z + _B3
    # range 2: erfcx(t) = C(t)/D(t)
    n2 = _C[8] * t + _C[0]
    d2 = t + _D[0]
    n2 = n2 * t + _C[1]
    d2 = d2 * t + _D[1]
    n2 = n2 * t + _C[2]
    d2 = d2 * t + _D[2]
    n2 = n2 * t + _C[3]
    d2 = d2 * t + _D[3]
    n2 = n2 * t + _C[4]
    d2 = d2 * t + _D[4]
    n2 = n2 * t + _C[5]
    d2 = d2 * t + _D[5]
    n2 = n2 * t + _C[6]
    d2 = d2 * t + _D[6]
    n2 = n2 * t + _C[7]
    d2 = d2 * t + _D[7]
    # range 3: ysq P/Q with P, Q reversed into polynomials in z (times z**5):
    # P(ysq) z**5 = P5 + P0 z ... ; erfcx = (SQRPI z Q~ - P~) / (t z Q~)
    zq = ((((_Q[4] * z + _Q[3]) * z + _Q[2]) * z + _Q[1]) * z + _Q[0]) * z + 1.0
    zp = ((((_P[4] * z + _P[3]) * z + _P[2]) * z + _P[1]) * z + _P[0]) * z + _P[5]
    n3 = _SQRPI * (z * zq) - zp
    d3 = t * (z * zq)
    small = t <= _THRESH
    mid = t <= _SPLIT
    num = n1 if small else (n2 if mid else n3)
    den = d1 if small else (d2 if mid else d3)
    return num, den, small


@njit(inline="always")
def _erfc_parts(x):  # pragma: no cover - compiled
    """(erfc(|x|) for |x| > 0.46875 else erf(|x|), small): the one division and one
    exponential both erf and erfc need."""
    t = min(abs(x), _TMAX)
    num, den, small = _rational(t)
    q = num / den
    hi, lo = _two_square(t)
    # exp(-hi - lo) = exp(-hi) (1 - lo) to far below an ulp (|lo| <= 2**-44 here)
    e = exp(-hi) * (q - q * lo)
    return (t * q if small else e), small


@njit(inline="always")
def erfc(x):  # pragma: no cover - compiled
    """erfc of a float64 (see the module docstring)."""
    v, small = _erfc_parts(x)
    # small: v = erf(|x|), erfc = 1 -+ v; else v = erfc(|x|), erfc(x) = 2 - v for x < 0
    r = (1.0 - v if x >= 0 else 1.0 + v) if small else (v if x >= 0 else 2.0 - v)
    return x if x != x else r  # noqa: PLR0124 - NaN propagates


@njit(inline="always")
def erf(x):  # pragma: no cover - compiled
    """erf of a float64 (see the module docstring)."""
    v, small = _erfc_parts(x)
    m = v if small else 1.0 - v  # erf(|x|)
    # tiny x: t q is x * 1.128..., exact to the last bit of a subnormal; keep the sign of 0
    r = m if x > 0 else (-m if x < 0 else x)
    return x if x != x else r  # noqa: PLR0124 - NaN propagates


@njit(inline="always")
def erfcx(t):  # pragma: no cover - compiled
    """exp(t²) erfc(t) for 0 <= t <= 30 (the range the callers clamp to)."""
    num, den, small = _rational(t)
    q = num / den
    if small:
        hi, lo = _two_square(t)
        # erfcx = exp(t²)(1 - erf(t)) on the first range (t² < 0.22: no loss)
        return exp(hi) * (1.0 + lo) * (1.0 - t * q)
    return q


@njit(inline="always")
def erfc32(x):  # pragma: no cover - compiled
    """erfc of a float32, evaluated in float64 and rounded once."""
    return np.float32(erfc(np.float64(x)))


@njit(inline="always")
def erf32(x):  # pragma: no cover - compiled
    """erf of a float32, evaluated in float64 and rounded once."""
    return np.float32(erf(np.float64(x)))
