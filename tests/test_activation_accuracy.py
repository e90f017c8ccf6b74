"""The accuracy table: its measuring stick (ulps, truth, κ) checked by hand, and the bounds."""

import math

import mpmath
import numpy as np
import pytest
import scipy.special

from suite import activations as A
from suite.activations import _series, accuracy


def test_ulp_error_by_hand():
    one = np.array([1.0])
    assert accuracy.ulp_error(np.array([1.0 + 2.0**-52]), one, np.zeros(1), "float64")[0] == 1
    # in float32 units the same difference is 2**-29 ulp
    assert accuracy.ulp_error(np.array([1.0 + 2.0**-52]), one, np.zeros(1), "float32")[0] == \
        2.0**-29
    # the lo part counts: truth 1 + 2**-60 against got 1 is 2**-8 ulp
    assert accuracy.ulp_error(one, one, np.array([2.0**-60]), "float64")[0] == 2.0**-8
    # non-finite where the truth is finite is infinitely wrong; the same infinity is exact
    err = accuracy.ulp_error(np.array([np.nan, np.inf, np.inf]), np.array([1.0, 1.0, np.inf]),
                             np.zeros(3), "float64")
    assert err.tolist() == [np.inf, np.inf, 0.0]
    # a finite float64 truth beyond float32's range plus half its last spacing rounds to inf
    # in float32: the kernel's inf is then exact; just below that line the truth rounds to
    # FLT_MAX and an inf is infinitely wrong
    top = float(np.finfo(np.float32).max)
    half = 2.0**103
    err = accuracy.ulp_error(np.array([np.inf, -np.inf, np.inf, top, np.inf]),
                             np.array([3.5e38, -3.5e38, top + half, 3.5e38, top + half / 2]),
                             np.zeros(5), "float32")
    assert err[:3].tolist() == [0.0, 0.0, 0.0]
    assert err[3] == (3.5e38 - top) / 2.0**104
    assert err[4] == np.inf
    # subnormal truth: spacing is the smallest subnormal
    assert accuracy.ulp(np.array([5e-324]), "float64")[0] == 5e-324


def test_truth_against_independent_values():
    x = np.array([-30.0, -3.0, -0.5, 0.25, 2.0, 12.0])
    hi, _lo, kappa = accuracy.truth("sigmoid", x)
    np.testing.assert_allclose(hi, scipy.special.expit(x), rtol=4e-16)
    hi, _, _ = accuracy.truth("gelu", x)
    np.testing.assert_allclose(hi, x * scipy.special.ndtr(x), rtol=1e-13)
    hi, _, _ = accuracy.truth("tanh", x, "derivative")
    np.testing.assert_allclose(hi, np.cosh(x) ** -2.0, rtol=1e-14)
    # far tails, where float64 formulas give 0: closed forms by hand
    hi, _, _ = accuracy.truth("sigmoid", np.array([700.0]), "derivative")
    assert math.isclose(hi[0], math.exp(-700.0), rel_tol=1e-15)
    hi, _, _ = accuracy.truth("gelu", np.array([-20.0]))
    assert math.isclose(hi[0], -20.0 * 0.5 * math.erfc(20 / math.sqrt(2)), rel_tol=1e-13)
    # softplus keeps torch's definition above the threshold
    hi, _, kappa = accuracy.truth("softplus", np.array([20.5, 19.5]))
    assert hi[0] == 20.5
    assert kappa[0] == 1.0
    assert math.isclose(hi[1], math.log1p(math.exp(19.5)), rel_tol=1e-15)


@pytest.mark.parametrize(("name", "params"), [("sigmoid", {}), ("gelu", {}), ("silu", {}),
                                              ("gelu", {"approximate": "tanh"}), ("elu", {})])
def test_condition_number_is_x_g_prime_over_g(name, params):
    x = np.array([-9.0, -1.5, -0.3, 0.7, 4.0])
    for quantity in ("forward", "derivative"):
        _hi, _lo, kappa = accuracy.truth(name, x, quantity, **params)
        for xi, k in zip(x, kappa, strict=True):
            with mpmath.workdps(40):
                num = accuracy._fns(name, A._check_params(A.ACTIVATIONS[name], params))
                f = num(mpmath, mpmath.mpf(xi))
                val, der = (f[0], f[1]) if quantity == "forward" else (f[1], f[2])
                fd = mpmath.diff(lambda t, i=(0 if quantity == "forward" else 1), g=num:
                                 g(mpmath, t)[i], mpmath.mpf(xi))
            assert math.isclose(k, float(abs(xi * fd / val)), rel_tol=1e-10), (name, xi)
            assert math.isclose(float(der), float(fd), rel_tol=1e-10)


def test_series_constants_regenerate():
    for key, (name, params, guess) in {"silu": ("silu", {}, -1.28), "gelu": ("gelu", {}, -0.75),
                                       "gelu_tanh": ("gelu", {"approximate": "tanh"}, -0.75)
                                       }.items():
        hi, lo, c = accuracy.derivative_zero_series(name, 24, guess, **params)
        s_hi, s_lo, s_c = _series.SERIES[key]
        assert (hi, lo) == (s_hi, s_lo)
        np.testing.assert_allclose(c, s_c, rtol=1e-12, atol=0)


def test_table_ours_within_bounds_and_torch_fails_where_known():
    table = accuracy.table(n=40)
    assert len(table) == 2 * 4 * (2 * 10 + 2)  # dtypes x impls x (10 elementwise x 2 + 2)
    ours = table[table.implementation != "torch.nn.functional"]
    bad = ours[~ours.passed]
    assert bad.empty, bad.to_string()
    # float32 goes through float64 on the numpy and torch backends: correctly rounded on the
    # whole grid (numba computes some float32 kernels in float32: its bound, checked above)
    f32 = ours[(ours.dtype == "float32") & (ours.implementation != "numba")]
    assert (f32.max_ulp <= 0.5 + 1e-6).all(), f32[f32.max_ulp > 0.5 + 1e-6].to_string()
    assert (ours.false_zeros == 0).all()
    assert (ours.nonfinite == 0).all()
    torch = table[table.implementation == "torch.nn.functional"].set_index(
        ["function", "quantity", "dtype"])
    # the cells the notes measured: sigmoid', tanh' vanish; exact gelu cancels in 1 + erf
    for cell in [("sigmoid", "derivative", "float64"), ("tanh", "derivative", "float64"),
                 ("gelu", "forward", "float64"), ("sigmoid", "derivative", "float32"),
                 ("log_softmax", "forward", "float64")]:
        assert not torch.loc[cell, "passed"], cell
        assert torch.loc[cell, "max_ulp"] > 1e5, cell
    assert torch.loc[("sigmoid", "derivative", "float64"), "false_zeros"] > 0
    # and where torch is right, it passes the same bound
    for cell in [("relu", "forward", "float64"), ("tanh", "forward", "float64"),
                 ("elu", "forward", "float64")]:
        assert torch.loc[cell, "passed"], cell


def test_table_catches_a_cancelling_formula(monkeypatch):
    """s(1 - s) for sigmoid' (what torch does) fails the bound on our backend too."""
    spec = A.ACTIVATIONS["sigmoid"]

    def bad(x):
        s = A.sigmoid(x)
        return s * (1 - s)

    monkeypatch.setitem(A.ACTIVATIONS, "sigmoid", A.ActivationSpec(
        "sigmoid", spec.forward, bad, torch_name="sigmoid", max_derivative=0.25))
    table = accuracy.table([("sigmoid", {})], dtypes=("float64",), implementations=("numpy",),
                           n=40)
    row = table[table.quantity == "derivative"].iloc[0]
    assert not row.passed
    assert row.false_zeros > 0
    assert row.worst_x > 36


def test_softmax_truth_rows():
    x = accuracy.softmax_rows("float64", 50)
    hi, _lo = accuracy.softmax_truth(x)
    np.testing.assert_allclose(hi.sum(axis=1), 1, rtol=1e-15)
    lhi, _ = accuracy.softmax_truth(x, log=True)
    np.testing.assert_allclose(np.exp(lhi), hi, rtol=1e-14)
    np.testing.assert_allclose(hi, scipy.special.softmax(x, axis=1), rtol=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params", "quantity"), [
    (n, p, q) for n, p in accuracy.VARIANTS if n not in ("softmax", "log_softmax")
    for q in ("forward", "derivative")], ids=str)
def test_exhaustive_float32(name, params, quantity):
    """All 2**32 float32 inputs: numba's float32 result against numpy's float64 path, within
    2 ulp + κ. 15 to 45 minutes per case on one core (the float64 reference, evaluated three
    times for a derivative's κ, dominates)."""
    res = accuracy.exhaustive_float32(name, quantity, backend="numba", **params)
    assert res["inputs"] == 2**32 - 2**24  # every pattern but the infinities and NaNs
    assert res["over_bound"] == 0, res


def test_exhaustive_float32_holds_kernels_to_the_bound_with_kappa():
    """The exhaustive check's bound is the module's, 2 ulp + κ: on the 2**16 float32 patterns
    around gelu''s zero (x = -0.7518) the relative error is unbounded (the true value passes
    through 0) yet nothing is over the bound; without κ thousands of inputs would be. κ of
    the derivative (a central difference of the float64 derivative) against silu's closed
    form |x f''/f'|."""
    zero = int(np.float32(-0.75179).view(np.uint32))
    res = accuracy.exhaustive_float32("gelu", "derivative", start=zero - (1 << 15),
                                      stop=zero + (1 << 15))
    assert res["inputs"] == 1 << 16
    assert res["max_ulp"] > 1e4
    assert res["over_bound"] == 0, res
    assert res["max_excess"] <= 2.0, res
    # selu overflows float32 above FLT_MAX / 1.0507: the kernel's inf there is the correctly
    # rounded value, not an error (the 2^16 patterns below the first x whose selu overflows)
    first = int(np.float32(np.finfo(np.float32).max / 1.0507009873554805).view(np.uint32))
    top = accuracy.exhaustive_float32("selu", start=first - (1 << 15), stop=first + (1 << 15))
    assert top["inputs"] == 1 << 16
    assert top["over_bound"] == 0, top
    assert top["max_ulp"] <= 0.5, top
    # where every result is exact the report still names an input (it read NaN)
    exact = accuracy.exhaustive_float32("relu", start=0x41800000, stop=0x41800000 + 1000)
    assert exact["max_ulp"] == 0.0
    assert exact["worst_x"] == 16.0
    x = np.array([-30.0, -2.4, -1.2785, 0.5, 3.0, 1e-30])
    s = 1 / (1 + np.exp(-x))
    d1 = s * (1 + x * (1 - s))
    d2 = s * (1 - s) * (2 - x * np.tanh(x / 2))
    ref = A.get("silu", backend="numpy")
    kappa = accuracy._kappa64(ref, "derivative", x, ref.derivative(x))
    # (at x = 1e-30 the difference is 0 in float64: κ = 1e-30 there, negligible in ulps)
    np.testing.assert_allclose(kappa, np.abs(x * d2 / d1), rtol=1e-6, atol=1e-9)
    kappa_f = accuracy._kappa64(ref, "forward", x, ref.forward(x))
    np.testing.assert_allclose(kappa_f, np.abs(x * d1 / (x * s)), rtol=1e-9)


def test_run_part_and_report_section(tmp_path, monkeypatch):
    import pandas as pd

    from suite.cli import main

    monkeypatch.setitem(accuracy.RUN_POINTS, "quick", 20)
    assert main(["run", "--size", "quick", "--parts", "accuracy", "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.glob("run-*")
    frame = pd.read_parquet(run / "accuracy.parquet")
    assert set(frame.implementation) == set(accuracy.IMPLEMENTATIONS)
    page = (run / "index.html").read_text()
    assert "Activation accuracy" in page
    assert "torch.nn.functional" in page
    # the torch cells over the bound are listed (sigmoid' float64 among them)
    over = frame[~frame.passed]
    assert ((over.function == "sigmoid") & (over.quantity == "derivative")).any()
    assert set(over.implementation) == {"torch.nn.functional"}  # never one of ours
    ours = frame.implementation != "torch.nn.functional"
    assert f"references: 0 of {int(ours.sum())} cells over the bound" in page
    assert f"torch.nn.functional: {len(over)} of {int((~ours).sum())}" in page


def _float32_sample(zero):
    """float32 inputs of both signs: every (2**17 + 1)-th bit pattern from 2**-12 to 16, 2000
    uniform draws in [-4, 4], and the 401 float32s around ``zero`` (f''s zero)."""
    lo, hi = np.array([2.0**-12, 16.0], np.float32).view(np.uint32)
    pos = np.arange(lo, hi, 2**17 + 1, dtype=np.uint32).view(np.float32)
    draws = np.random.default_rng(5).uniform(-4, 4, 2000).astype(np.float32)
    z = np.array([zero], np.float32).view(np.int32)[0]  # negative: bits grow away from 0
    near = np.arange(z - 200, z + 201, dtype=np.int32).view(np.float32)
    return np.unique(np.concatenate([pos, -pos, draws, near]))


@pytest.mark.parametrize(("name", "params", "zero"), [
    ("gelu", {}, _series.SERIES["gelu"][0]),
    ("gelu", {"approximate": "tanh"}, _series.SERIES["gelu_tanh"][0])], ids=str)
def test_numba_float32_path_within_bound(name, params, zero):
    """The numba kernels that compute float32 inputs in float32 arithmetic, on a dense float32
    sample against mpmath: within 2 ulps + κ, forward and derivative (about a second each)."""
    x = _float32_sample(zero)
    act = A.get(name, backend="numba", **params)
    for quantity, got in (("forward", act.forward(x)), ("derivative", act.derivative(x))):
        assert got.dtype == np.float32
        hi, lo, kappa = accuracy.truth(name, x, quantity, **params)
        excess = accuracy.ulp_error(got, hi, lo, "float32") - kappa
        k = int(np.argmax(excess))
        assert excess[k] <= accuracy.BOUNDS["numba"]["float32"], (quantity, x[k], excess[k])
