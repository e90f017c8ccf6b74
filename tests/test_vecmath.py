"""suite.activations.vecmath: accuracy in ulps against independent references, the special
cases bit for bit, and that loops calling the functions compile to SIMD code.

Truth: float64 results against the x87 extended-precision libm (``np.longdouble``, 64-bit
significand: its own error is ~2^-11 of a float64 ulp), spot-checked against mpmath at 40
digits; float32 results against NumPy's float64 functions (error ~2^-29 of a float32 ulp).
"""

import math
import re

import llvmlite.binding as llvm
import mpmath
import numpy as np
import pytest
from numba import njit

from suite.activations import numba_kernels as K
from suite.activations import vecmath as vm

L = np.longdouble
NAMES = ("exp", "expm1", "log1p", "tanh")
# largest error found by the grids below (rounded up to a multiple of 1/8 ulp); an
# implementation that is wrong anywhere by more than rounding noise exceeds them
MAX_ULP_64 = {"exp": 0.875, "expm1": 1.25, "log1p": 0.875, "tanh": 1.5}
MAX_ULP_32 = {"exp": 0.875, "expm1": 1.25, "log1p": 0.875, "tanh": 1.5}


@njit(error_model="numpy")
def _all64(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[0, i] = vm.exp(x[i])
        out[1, i] = vm.expm1(x[i])
        out[2, i] = vm.log1p(x[i])
        out[3, i] = vm.tanh(x[i])


@njit(error_model="numpy")
def _all32(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[0, i] = vm.exp32(x[i])
        out[1, i] = vm.expm1_32(x[i])
        out[2, i] = vm.log1p_32(x[i])
        out[3, i] = vm.tanh32(x[i])


def _run(x):
    out = np.empty((4, x.size), x.dtype)
    (_all64 if x.dtype == np.float64 else _all32)(x, out)
    return dict(zip(NAMES, out, strict=True))


def _ulps(got, truth, dtype):
    """|got - truth| in ulps of the truth rounded to ``dtype`` (subnormal spacing below the
    normal range); the same infinity or both NaN is 0, any other non-finite result inf."""
    fi = np.finfo(dtype)
    a = np.abs(truth)
    e = np.floor(np.log2(np.where(a > 0, a, 1), dtype=truth.dtype))
    e = np.maximum(e, np.log2(fi.smallest_normal)) - fi.nmant
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = truth.astype(dtype)
        err = np.abs(got.astype(truth.dtype) - truth) / np.exp2(e)
    same = (got == rounded) | (np.isnan(got) & np.isnan(truth))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def _grid64():
    r = np.random.default_rng(16)
    tiny = np.logspace(-323, 0, 20_000)
    return np.unique(np.concatenate([
        np.linspace(-746, 710, 300_001), np.linspace(-40, 40, 200_001),
        np.linspace(-1, 1.5, 100_001), r.uniform(-1, 1, 100_000), tiny, -tiny,
        np.logspace(0, 308.2, 20_000)]))


@pytest.fixture(scope="module")
def grid64():
    if np.finfo(L).nmant < 63:
        pytest.skip("np.longdouble is not extended precision here")
    x = _grid64()
    with np.errstate(all="ignore"):
        truth = {"exp": np.exp(x.astype(L)), "expm1": np.expm1(x.astype(L)),
                 "log1p": np.log1p(x.astype(L)), "tanh": np.tanh(x.astype(L))}
    return x, truth, _run(x)


@pytest.mark.parametrize("name", NAMES)
def test_float64_ulps_on_dense_grids(grid64, name):
    x, truth, got = grid64
    keep = x >= -1 if name == "log1p" else slice(None)
    err = _ulps(got[name][keep], truth[name][keep], np.float64)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP_64[name], (name, x[keep][worst], err[worst])
    # the grids reach the regions that need care: results in the subnormals, overflow, tails
    if name == "exp":
        assert np.any((got[name] > 0) & (got[name] < 2.2e-308))
        assert np.any(np.isinf(got[name]))


def test_longdouble_truth_agrees_with_mpmath():
    x = np.array([-745.1, -700.3, -37.9, -1.3, -0.3, -1e-9, 3e-12, 0.21, 0.7, 2.5, 19.0,
                  300.2, 709.7])
    with mpmath.workdps(40):
        for name in NAMES:
            f = {"exp": mpmath.exp, "expm1": mpmath.expm1, "log1p": mpmath.log1p,
                 "tanh": mpmath.tanh}[name]
            xs = x[x > -1] if name == "log1p" else x
            ld = getattr(np, name)(xs.astype(L))
            for xi, t in zip(xs, ld, strict=True):
                m = f(mpmath.mpf(float(xi)))
                assert abs(mpmath.mpf(str(t)) - m) <= abs(m) * mpmath.mpf(2) ** -62, (name, xi)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_cases_bit_for_bit(dtype):
    t = np.dtype(dtype).type
    inf, nan = t(np.inf), t(np.nan)
    sub = t(1e-310) if dtype == np.float64 else t(1e-40)
    big = t(709.78) if dtype == np.float64 else t(88.72)  # exp finite
    over = t(709.79) if dtype == np.float64 else t(88.73)  # exp overflows
    cases = {
        "exp": [(inf, inf), (-inf, 0), (nan, nan), (0, 1), (-0.0, 1), (over, inf),
                (-inf, 0), (sub, 1)],
        "expm1": [(inf, inf), (-inf, -1), (nan, nan), (0.0, 0.0), (-0.0, -0.0), (sub, sub),
                  (-sub, -sub), (over, inf), (-100, -1)],
        "log1p": [(inf, inf), (-inf, nan), (nan, nan), (-1, -inf), (-2, nan), (0.0, 0.0),
                  (-0.0, -0.0), (sub, sub), (-sub, -sub)],
        "tanh": [(inf, 1), (-inf, -1), (nan, nan), (0.0, 0.0), (-0.0, -0.0), (sub, sub),
                 (-sub, -sub), (30, 1), (-30, -1)],
    }
    for name, pairs in cases.items():
        x = np.array([p[0] for p in pairs], dtype)
        want = np.array([p[1] for p in pairs], dtype)
        got = _run(x)[name]
        same = ((got == want) & (np.signbit(got) == np.signbit(want))) | (
            np.isnan(got) & np.isnan(want))
        assert same.all(), (name, x[~same], got[~same], want[~same])
    # the largest finite results stay finite
    assert np.isfinite(_run(np.array([big], dtype))["exp"][0])
    assert np.isfinite(_run(np.array([big], dtype))["expm1"][0])


def _float32_max_ulps(start, stop, step=1):
    """Largest error of each float32 function over the bit patterns range(start, stop, step)
    (NaN patterns included: a NaN input must give NaN)."""
    worst = dict.fromkeys(NAMES, 0.0)
    where = dict.fromkeys(NAMES, 0.0)
    chunk = 1 << 24
    for lo in range(start, stop, chunk * step):
        bits = np.arange(lo, min(lo + chunk * step, stop), step, dtype=np.int64)
        x = bits.astype(np.uint32).view(np.float32)
        got = _run(x)
        with np.errstate(all="ignore"):  # NaN patterns (signalling ones too) are inputs here
            x64 = x.astype(np.float64)
            for name in NAMES:
                err = _ulps(got[name], getattr(np, name)(x64), np.float32)
                if name == "log1p":
                    err = np.where(x64 < -1, np.where(np.isnan(got[name]), 0, np.inf), err)
                i = int(np.argmax(err))
                if err[i] > worst[name]:
                    worst[name], where[name] = float(err[i]), float(x[i])
    return worst, where


def test_float32_ulps_on_a_sample_of_all_bit_patterns():
    worst, where = _float32_max_ulps(0, 1 << 32, 4099)  # ~1M inputs, every exponent
    for name in NAMES:
        assert worst[name] <= MAX_ULP_32[name], (name, where[name], worst[name])


@pytest.mark.slow
@pytest.mark.parametrize("half", [0, 1])
def test_float32_ulps_exhaustive(half):
    """All 2^32 float32 inputs (positive half, negative half)."""
    worst, where = _float32_max_ulps(half << 31, (half + 1) << 31)
    for name in NAMES:
        assert worst[name] <= MAX_ULP_32[name], (name, where[name], worst[name])


def test_float32_versions_stay_in_float32():
    x = np.linspace(-3, 3, 7).astype(np.float32)
    out = np.empty((4, x.size), np.float32)
    _all32(x, out)
    sig = next(s for s in _all32.signatures if s[0].dtype.name == "float32")
    ir = _all32.inspect_llvm(sig)
    assert "fpext float" not in ir  # no widening to double anywhere in the float32 versions


def _simd_fmas(asm):
    return len(re.findall(r"\bvfn?m(?:add|sub)\d+p[sd]\s+[^\n]*%[yz]mm", asm))


needs_simd = pytest.mark.skipif(
    not {"avx2", "fma"} <= {k for k, v in llvm.get_host_cpu_features().items() if v},
    reason="needs an x86 CPU with AVX2 and FMA")


@needs_simd
def test_loops_over_vecmath_vectorise():
    for fn in (_all64, _all32):
        x = np.ones(8, np.float64 if fn is _all64 else np.float32)
        fn(x, np.empty((4, 8), x.dtype))
        asm = fn.inspect_asm(fn.signatures[-1])
        assert _simd_fmas(asm) >= 20, fn  # the polynomials' FMAs, on packed registers
        # and no call into libm's scalar functions
        assert not re.search(r"call\w*\s+[^\n]*\b(exp|expm1|log1p|tanh)f?\b", asm)


@needs_simd
@pytest.mark.parametrize("name", [
    "silu_fb", "softplus_fb",  # a Taylor series selected near a zero; a threshold select
    "tanh_fb",  # vecmath.tanh is inlined by Numba: LLVM leaves it out of line
    *(pytest.param(n, marks=pytest.mark.slow)  # each recompile takes a second or two
      for n in ("sigmoid_fb", "gelu_tanh_fb", "elu_fb", "selu_fb"))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_activation_loops_vectorise(name, dtype):
    """The fused kernels (recompiled here: cached functions keep no assembly) have packed
    FMAs in their loop in both dtypes: no branch or scalar call left in the element loop (a
    loop calling an out-of-line vecmath function keeps its polynomials scalar: 0 to 2
    packed FMAs)."""
    fn = njit(error_model="numpy")(getattr(K, name).py_func)
    x = np.ones(8, dtype)
    extra = {"softplus_fb": (dtype(1), dtype(20), 1.0), "elu_fb": (1.0,)}.get(name, ())
    fn(x, x, np.empty_like(x), np.empty_like(x), *extra)
    assert _simd_fmas(fn.inspect_asm(fn.signatures[0])) >= 10


def test_bitcast_scaling_reaches_every_exponent():
    """exp(k ln2) is 2^k (to an ulp) for every k from the subnormals to the largest."""
    k = np.arange(-1074, 1024)
    got = _run((k * math.log(2)).astype(np.float64))["exp"]
    np.testing.assert_allclose(got, np.ldexp(1.0, k), rtol=3e-16 * np.abs(k).max(), atol=0)
    assert np.all(got > 0)


@njit(error_model="numpy")
def _scaled_parts(x, xl, y, s, e):  # pragma: no cover - compiled
    for i in range(x.size):
        y[i], s[i] = vm.exp32_scaled_parts(x[i], xl[i])
        e[i] = vm.exp32_scaled_lo(x[i], xl[i])


def test_exp32_scaled_parts_keeps_what_rounding_one_plus_y_loses():
    """exp32_scaled_parts(x, xl) = (y, s), e^(x + xl) 2^64 = s (1 + y), on arguments split as
    the float32 gelu kernel splits -t²/2 (hi + lo exactly, t up to the kernel's clamp 14.5):
    s is a power of two, |y| < 0.42, and s (1 + y) formed in float64 is within 0.5 float32 ulp
    of the truth (measured 0.43) where exp32_scaled_lo, which rounds 1 + y to float32, is
    within 0.9 (measured 0.86) and equals (1 + y) s in float32 bit for bit."""
    rng = np.random.default_rng(3)
    t = np.concatenate([np.linspace(0, 14.5, 1_000_001),
                        np.minimum(np.abs(rng.standard_normal(10**6)) * 3, 14.5)])
    t = t.astype(np.float32)
    hi = t * t
    lo = (t.astype(np.float64) ** 2 - hi.astype(np.float64)).astype(np.float32)  # exact
    a, al = np.float32(-0.5) * hi, np.float32(-0.5) * lo
    y, s, e = (np.empty_like(a) for _ in range(3))
    _scaled_parts(a, al, y, s, e)
    truth = np.exp(a.astype(np.float64) + al.astype(np.float64)) * 2.0**64
    ulp = np.exp2(np.floor(np.log2(truth)) - 23)
    assert np.all(np.frexp(s)[0] == 0.5)
    assert np.abs(y).max() < 0.42  # e^r - 1 for |r| <= ln2 / 2 (+ rounding): √2 - 1 = 0.4142
    parts = np.abs(s.astype(np.float64) * (1 + y.astype(np.float64)) - truth) / ulp
    rounded = np.abs(e.astype(np.float64) - truth) / ulp
    assert parts.max() <= 0.5, parts.max()
    assert 0.5 < rounded.max() <= 0.9, rounded.max()
    np.testing.assert_array_equal(e, (np.float32(1) + y) * s)
