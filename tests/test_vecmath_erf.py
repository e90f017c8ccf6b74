"""suite.activations.vecmath_erf in ulps against mpmath (float64, dense grids) and against
SciPy's erf/erfc (float32, every input, slow); its special cases; that a loop over it, and the
exact GELU kernel built on it, compile to packed SIMD code."""

import math
import re

import mpmath
import numpy as np
import pytest
import scipy.special
from numba import njit

from suite import activations as A
from suite.activations import accuracy
from suite.activations import numba_kernels as K
from suite.activations import vecmath_erf as V


@njit(error_model="numpy", cache=True)
def _erf_loop(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = V.erf(x[i])


@njit(error_model="numpy", cache=True)
def _erfc_loop(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = V.erfc(x[i])


@njit(error_model="numpy", cache=True)
def _erfcx_loop(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = V.erfcx(x[i])


@njit(error_model="numpy", cache=True)
def _erf32_loop(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = V.erf32(x[i])


@njit(error_model="numpy", cache=True)
def _erfc32_loop(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = V.erfc32(x[i])


LOOPS = {"erf": _erf_loop, "erfc": _erfc_loop, "erfcx": _erfcx_loop}
TRUTH = {"erf": mpmath.erf, "erfc": mpmath.erfc,
         "erfcx": lambda t: mpmath.exp(t * t) * mpmath.erfc(t)}


def _run(name, x):
    out = np.empty_like(x)
    LOOPS[name](x, out)
    return out


def _ulps(name, x, got):
    """|got - truth| in float64 ulps of the truth (mpmath, 40 digits)."""
    hi, lo = np.empty(x.size), np.empty(x.size)
    with mpmath.workdps(40):
        for i, xi in enumerate(x.tolist()):
            v = TRUTH[name](mpmath.mpf(xi))
            hi[i] = float(v)
            lo[i] = float(v - hi[i]) if math.isfinite(hi[i]) else 0.0
    return accuracy.ulp_error(got, hi, lo, "float64")


def _grid(lo, hi, n, seed=0):
    """n points spread over [lo, hi]: linear, plus uniform draws, plus the ends."""
    rng = np.random.default_rng(seed)
    return np.unique(np.concatenate([np.linspace(lo, hi, n // 2), rng.uniform(lo, hi, n // 2),
                                     [lo, hi]]))


# (range, bound in ulps): each of Cody's ranges on both sides, the tails (erfc subnormal from
# x ~ 26.55, zero from ~27.3), and tiny arguments (erf(x) ~ 2x/√pi down to subnormals). The
# bounds are the accuracy vecmath_erf states (largest errors measured on 12000-point grids:
# erf 0.64 / 3.54 / 0.5, erfc 0.80 / 5.33 (x > 0) / 1.25 (x < 0) / 3.25, erfcx 1.90 / 3.94 /
# 1.97): Cody's degree-8 rational of the middle range, evaluated in double, costs ~4 ulps.
RANGES = {
    "erf": [((-0.46875, 0.46875), 1.0), ((0.46875, 4.0), 4.0), ((-4.0, -0.46875), 4.0),
            ((4.0, 6.0), 1.0), ((-6.0, -4.0), 1.0)],
    "erfc": [((-0.46875, 0.46875), 1.0), ((0.46875, 4.0), 6.0), ((-4.0, -0.46875), 1.5),
             ((4.0, 27.5), 4.0), ((26.0, 27.3), 4.0), ((-10.0, -4.0), 1.0)],
    "erfcx": [((0.0, 0.46875), 2.5), ((0.46875, 4.0), 4.5), ((4.0, 30.0), 2.5)],
}


@pytest.mark.parametrize("name", ["erf", "erfc", "erfcx"])
def test_float64_ulps_against_mpmath(name):
    worst = {}
    for (lo, hi), bound in RANGES[name]:
        x = _grid(lo, hi, 600)
        err = _ulps(name, x, _run(name, x))
        worst[(lo, hi)] = (float(err.max()), float(x[np.argmax(err)]))
        assert err.max() <= bound, (name, (lo, hi), worst[(lo, hi)])
    if name != "erfcx":
        # magnitudes 1e-300 .. 1e-3 on both sides: erf ~ 2x/√pi, erfc ~ 1
        m = np.logspace(-300, -3, 200)
        x = np.concatenate([m, -m, [5e-324, -5e-324, 2.2250738585072014e-308]])
        err = _ulps(name, x, _run(name, x))
        assert err.max() <= 1.0, (name, float(x[np.argmax(err)]), float(err.max()))


def test_special_cases():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 30.0, 27.5, -27.5, 1e300, -1e300])
    erf, erfc = _run("erf", x), _run("erfc", x)
    want_erf = [0.0, -0.0, 1.0, -1.0, np.nan, 1.0, 1.0, -1.0, 1.0, -1.0]
    want_erfc = [1.0, 1.0, 0.0, 2.0, np.nan, 0.0, 0.0, 2.0, 0.0, 2.0]  # erfc(27.5) ~ 2e-330
    np.testing.assert_array_equal(erf, want_erf)
    np.testing.assert_array_equal(erfc, want_erfc)
    np.testing.assert_array_equal(np.signbit(erf[:2]), [False, True])  # erf keeps -0.0
    # the last subnormals of erfc: within an ulp of the truth (the smallest subnormal)
    x = np.array([26.55, 26.9, 27.2, 27.22])
    got = _run("erfc", x)
    want = np.array([float(mpmath.erfc(v)) for v in x])
    assert (want < 2.2250738585072014e-308).all()
    assert (got > 0).all()
    assert (np.abs(got - want) <= 5e-324).all(), (got, want)


def test_first_range_coefficients_rederive_from_cody():
    """The numerator A(z) - (2/√π) B(z) of the first range, from Cody's published A, B."""
    with mpmath.workdps(50):
        a = [mpmath.mpf(s) for s in ("1.85777706184603153e-1", "3.16112374387056560e00",
                                     "1.13864154151050156e02", "3.77485237685302021e02",
                                     "3.20937758913846947e03")]
        b = [mpmath.mpf(s) for s in ("1", "2.36012909523441209e01", "2.44024637934444173e02",
                                     "1.28261652607737228e03", "2.84423683343917062e03")]
        c = 2 / mpmath.sqrt(mpmath.pi)
        assert tuple(float(ai - c * bi) for ai, bi in zip(a, b, strict=True)) == V._AN
        assert float(c) == V._TWO_SQRTPI_HI
        assert float(c - V._TWO_SQRTPI_HI) == V._TWO_SQRTPI_LO
    assert tuple(float(v) for v in b) == V._BN


def _slice_32(fn, ref, start, stop):
    """max float32 ulp error of fn over the finite float32 bit patterns in [start, stop),
    against SciPy's float64 ``ref`` (Cephes: another algorithm) rounded at the end."""
    worst, worst_x, count = 0.0, float("nan"), 0
    for lo in range(start, stop, 1 << 24):
        bits = np.arange(lo, min(lo + (1 << 24), stop), dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        x = x[np.isfinite(x)]
        got = np.empty_like(x)
        fn(x, got)
        want = ref(x.astype(np.float64))
        err = accuracy.ulp_error(got, want, np.zeros_like(want), "float32")
        count += x.size
        k = int(np.argmax(err))
        if err[k] > worst:
            worst, worst_x = float(err[k]), float(x[k])
    return worst, worst_x, count


def test_float32_slice():
    """A slice of the exhaustive test below (2**12 patterns from every 2**24: all exponents,
    both signs), in the default run."""
    for fn, ref in ((_erf32_loop, scipy.special.erf), (_erfc32_loop, scipy.special.erfc)):
        worst = 0.0
        for start in range(0, 1 << 32, 1 << 24):
            w, _, _ = _slice_32(fn, ref, start, start + (1 << 12))
            worst = max(worst, w)
        assert worst <= 0.5 + 1e-6, (fn, worst)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["erf32", "erfc32"])
def test_float32_exhaustive(name):
    """All 2**32 float32 inputs: erf32 / erfc32 against SciPy's float64 erf / erfc (error of
    the reference < 1e-8 float32 ulp). Within 0.5 ulp + 1e-6: the float64 value rounds to
    the correctly rounded float32 except where it lies within ~1e-7 ulp of a midpoint.
    A few minutes per function on one core."""
    fn, ref = {"erf32": (_erf32_loop, scipy.special.erf),
               "erfc32": (_erfc32_loop, scipy.special.erfc)}[name]
    worst, worst_x, count = _slice_32(fn, ref, 0, 1 << 32)
    assert count == 2**32 - 2**24
    assert worst <= 0.5 + 1e-6, (worst, worst_x)


# ---- vectorisation ---------------------------------------------------------------------

def _packed(asm, op):
    """Lines of ``asm`` with the packed-double instruction ``op`` on ymm or zmm registers."""
    return [line for line in asm.splitlines() if re.search(rf"\b{op}\b.*%[yz]mm", line)]


def _has_avx2():
    import llvmlite.binding as ll

    return "+avx2" in ll.get_host_cpu_features().flatten()


@pytest.mark.skipif(not _has_avx2(), reason="packed 256-bit code needs AVX2")
def test_loops_vectorise():
    """The division every path takes is packed (vdivpd / vdivps on ymm/zmm) and no libm call
    is left: the loop over erfc, and the exact GELU fused kernel in both dtypes (float32: its
    float32 quotient w and its float64 finish), run in SIMD lanes."""
    x = np.linspace(-5, 5, 64)
    loop = njit(error_model="numpy")(_erfc_loop.py_func)  # cached code cannot be inspected
    loop(x, np.empty_like(x))
    (asm,) = loop.inspect_asm().values()
    assert _packed(asm, "vdivpd"), "erfc loop not vectorised"
    assert not re.search(r"call.*\b(erfc|exp)\b", asm)
    # the GELU kernel, recompiled the same way
    fb = njit(error_model="numpy")(K.gelu_fb.py_func)
    fb(x, x, np.empty_like(x), np.empty_like(x))
    x32 = x.astype(np.float32)
    fb(x32, x32, np.empty_like(x32), np.empty_like(x32))
    asm64, asm32 = (fb.inspect_asm(sig) for sig in fb.signatures)
    assert _packed(asm64, "vdivpd"), "gelu_fb (float64) not vectorised"
    assert _packed(asm32, "vdivps"), "gelu_fb (float32) not vectorised"
    assert _packed(asm32, "vfmadd\\d+ps"), "gelu_fb (float32) not vectorised"
    assert _packed(asm32, "vfmadd\\d+pd"), "gelu_fb (float32): float64 finish not vectorised"
    for asm in (asm64, asm32):
        assert not re.search(r"call.*\b(erfc|exp|expf)\b", asm)


# ---- the exact GELU on top of it ---------------------------------------------------------

def test_gelu_far_tail_float64():
    """Where exp(-x²/2) is subnormal (x < -37.4) gelu and gelu' are still within the Numba
    bound (4 + κ ulps): the tail is computed times e**64 and scaled back once. Also the
    deep negative tail where torch's 1 + erf cancels (x = -8.4 .. -30)."""
    x = np.array([-38.6, -38.5, -38.0, -37.9, -37.5, -37.3, -30.0, -20.0, -12.5, -8.4, -5.0])
    act = A.get("gelu", backend="numba")
    for quantity, got in (("forward", act.forward(x)), ("derivative", act.derivative(x))):
        hi, lo, kappa = accuracy.truth("gelu", x, quantity)
        err = accuracy.ulp_error(got, hi, lo, "float64")
        assert (err <= accuracy.BOUNDS["numba"]["float64"] + kappa).all(), (quantity, err)
        # subnormal results: within one subnormal spacing, although E alone is subnormal
        # there (a product computed from a subnormal E was 8 spacings off at x = -38.5)
        sub = np.abs(hi) < np.finfo(np.float64).tiny
        assert sub.sum() >= 4
        assert (err[sub] <= 1.0).all(), (quantity, x[sub], err[sub])
        # zero exactly where the truth rounds to zero (gelu(-38.6) does; gelu(-38.5) does not)
        np.testing.assert_array_equal(got == 0, hi == 0)
        assert (hi != 0).sum() >= x.size - 1


def test_gelu_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 41.0, -41.0])
    for dt in (np.float32, np.float64):
        act = A.get("gelu", backend="numba")
        with np.errstate(over="ignore"):
            xs = x.astype(dt)
        y, dx = act.forward_backward(xs, np.ones_like(xs))
        # gelu(inf) = inf, gelu'(inf) = 1; -inf * Φ(-inf) = -inf * 0 is NaN, as torch
        np.testing.assert_array_equal(y[:5], [np.nan, np.inf, np.nan, 0.0, 0.0])
        np.testing.assert_array_equal(dx[:5], [np.nan, 1.0, 0.0, 0.5, 0.5])
        np.testing.assert_array_equal([y[7], dx[7], y[8], dx[8]], [41.0, 1.0, 0.0, 0.0])
        if dt is np.float64:
            np.testing.assert_array_equal([y[5], dx[5], y[6]], [1e300, 1.0, 0.0])
            assert np.signbit(y[6])
        np.testing.assert_array_equal(y, act.forward(xs))
        np.testing.assert_array_equal(dx, act.derivative(xs))
