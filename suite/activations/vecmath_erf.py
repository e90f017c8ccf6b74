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

* ``|x| <= 0.46875``: erf(x) = x A(x²) / B(x²) (degree 4 / 4), evaluated as
  x 2/√π + x (A - (2/√π) B) / B, which rounds once where x A / B rounds ~3 times;
* ``0.46875 < |x| <= 4``: erfcx(x) = exp(x²) erfc(x) = C(x) / D(x) (degree 8 / 8);
* ``|x| > 4``: erfcx(x) = (1/√π - R(1/x²) / x²) / x with R of degree 5 / 5, evaluated here as
  polynomials in x² (numerator and denominator multiplied by x¹⁰; exact in exact arithmetic,
  and no second division).

erfc(x) for x > 0.46875 is exp(-x²) erfcx(x) with x² split exactly into hi + lo (a fused
multiply-add gives lo), so the exponential loses nothing to the rounding of x², and the result underflows
gradually (subnormal, then 0 beyond x ≈ 27.3); erfc(x) = 2 - erfc(-x) for x < 0; erf = 1 - erfc
there. ±inf, NaN and tiny arguments follow C99 (erf(±0) = ±0, erf(±inf) = ±1, erfc(+inf) = 0,
erfc(-inf) = 2, NaN propagates).

Accuracy (float64, against mpmath on 12000-point grids per range; tests/test_vecmath_erf.py):
erf <= 0.64 ulp for |x| <= 0.46875, <= 3.6 ulp on 0.46875 < |x| <= 4 (1 - erfc), 0.5 beyond;
erfc <= 0.8 ulp for |x| <= 0.46875, <= 5.4 ulp on 0.46875 < x <= 4, <= 1.3 for x < 0, <= 3.3
beyond 4 (subnormal results within an ulp of the smallest subnormal); erfcx <= 4 ulp. Most
of it is the degree-8 rational of the middle range evaluated in double (glibc's erfc is
listed at 5 ulp).

float32 versions (``erf32``, ``erfc32``) evaluate the float64 formulas and round once: eight
float64 lanes per AVX-512 vector instead of sixteen, but the result is the float64 value
correctly rounded to float32 in all but the rarest cases (tests/test_vecmath_erf.py measures it
on all 2³² inputs).

The float64 exact GELU (:mod:`suite.activations.numba_kernels`; its float32 kernel has its own
fitted approximations) uses the pieces directly: Φ(x) and φ(x) share one exp(-x²/2), and erfcx
takes t = |x|/√2, whose rounding costs < 1 ulp because |t erfcx'(t) / erfcx(t)| < 1 for
t >= 0; the ill-conditioned x² only enters the exponential, split exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from suite.activations.vecmath import _fma, exp

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
# the same coefficients as polynomials for _horner (highest power first). Range 1 as
# erf(t)/t = 2/√π + (A - (2/√π) B)/B: the numerator A(z) - (2/√π) B(z), its coefficients
# computed from Cody's with mpmath (tests/test_vecmath_erf.py re-derives them), so that
# erf(t) = t 2/√π + t (lo + N/B) rounds once (<1 ulp instead of ~3 for t A/B)
_AN = (-0.9426014609109095, -23.47008128331435, -161.48816355220197, -1069.7925297128231,
       -9.850932577494938e-17)
_TWO_SQRTPI_HI = 1.1283791670955126
_TWO_SQRTPI_LO = 1.533545961316588e-17
_BN = (1.0, _B0, _B1, _B2, _B3)
_CN = (_C[8], *_C[:8])
_DN = (1.0, *_D)
_QN = (_Q[4], _Q[3], _Q[2], _Q[1], _Q[0], 1.0)
_PN = (_P[4], _P[3], _P[2], _P[1], _P[0], _P[5])


@njit
def _two_square(a):  # pragma: no cover - compiled
    """(hi, lo) with hi + lo = a² exactly (a fused multiply-add recovers the rounding)."""
    p = a * a
    return p, _fma(a, a, -p)


@njit
def _horner(c, x):  # pragma: no cover - compiled
    """c[0] x^n + c[1] x^(n-1) + ... + c[n], fused multiply-adds (unrolled: c is a tuple)."""
    p = c[0]
    for i in range(1, len(c)):
        p = _fma(p, x, c[i])
    return p


@njit
def _rational(t):  # pragma: no cover - compiled
    """(num, den, small) for 0 <= t <= _TMAX: erf(t) = :func:`erf_small` (t, num/den) where
    ``small`` (t <= 0.46875), erfcx(t) = num/den elsewhere. All three ranges are evaluated; the pair
    is selected, so that the caller divides once."""
    z = t * t
    n1 = _horner(_AN, z)  # range 1: erf(t)/t - 2/√π = (A(z) - 2/√π B(z))/B(z)
    d1 = _horner(_BN, z)
    n2 = _horner(_CN, t)  # range 2: erfcx(t) = C(t)/D(t)
    d2 = _horner(_DN, t)
    # range 3: ysq P(ysq)/Q(ysq) with ysq = 1/z, times z**5 / z**5: polynomials in z;
    # erfcx = (z Q~ / sqrt(pi) - P~) / (t z Q~)
    zq = z * _horner(_QN, z)
    n3 = _fma(_SQRPI, zq, -_horner(_PN, z))
    d3 = t * zq
    small = t <= _THRESH
    mid = t <= _SPLIT
    num = n1 if small else (n2 if mid else n3)
    den = d1 if small else (d2 if mid else d3)
    return num, den, small


@njit
def erf_small(t, q):  # pragma: no cover - compiled
    """erf(t) for |t| <= 0.46875 from q = num/den of :func:`_rational`."""
    return _fma(t, _TWO_SQRTPI_HI, t * (_TWO_SQRTPI_LO + q))


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
    return (erf_small(t, q) if small else e), small


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
    # tiny x: erf_small is x * 1.128... rounded once, subnormals included; 0 keeps its sign
    r = m if x > 0 else (-m if x < 0 else x)
    return x if x != x else r  # noqa: PLR0124 - NaN propagates


@njit(inline="always")
def erfcx(t):  # pragma: no cover - compiled
    """exp(t²) erfc(t) for 0 <= t <= 30 (the range the callers clamp to; not checked)."""
    num, den, small = _rational(t)
    q = num / den
    hi, lo = _two_square(t)
    # first range: exp(t²)(1 - erf(t)), t² < 0.22 (no loss); selected, not branched
    near0 = exp(hi) * (1.0 + lo) * (1.0 - erf_small(t, q))
    return near0 if small else q


@njit(inline="always")
def erfc32(x):  # pragma: no cover - compiled
    """erfc of a float32, evaluated in float64 and rounded once."""
    return np.float32(erfc(np.float64(x)))


@njit(inline="always")
def erf32(x):  # pragma: no cover - compiled
    """erf of a float32, evaluated in float64 and rounded once."""
    return np.float32(erf(np.float64(x)))
