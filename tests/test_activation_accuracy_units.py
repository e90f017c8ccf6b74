"""The pieces of suite.activations.accuracy on small inputs, against closed forms, mpmath's own
differentiation and hand counts: the grid, the formulas behind the truth, ulps, one table row,
small tables, the pivot and a slice of the exhaustive float32 scan. Fast (no full table)."""

import math
import re

import mpmath
import numpy as np
import pandas as pd
import pytest
import scipy.special

from suite import activations as A
from suite.activations import accuracy

# ---- labels and the grid ----------------------------------------------------------------


def test_label():
    assert accuracy.label("relu", {}) == "relu"
    assert accuracy.label("gelu", {"approximate": "tanh"}) == "gelu(approximate=tanh)"
    assert accuracy.label("softplus", {"beta": 2.0, "threshold": 5}) == \
        "softplus(beta=2.0, threshold=5)"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grid_contents(dtype):
    n = 50
    x = accuracy.grid(dtype, n)
    dt = np.dtype(dtype)
    assert x.dtype == dt
    assert np.all(np.diff(x) > 0)                       # sorted, unique
    tail = {"float32": 90.0, "float64": 710.0}[dtype]
    assert x[0] == -1e3
    assert x[-1] == 1e3
    # the tails, linearly: 0, tail / (n - 1), ..., tail, both signs
    for v in (tail, -tail, tail / (n - 1), -tail * (n - 2) / (n - 1)):
        assert dt.type(v) in x, v
    # the log-spaced magnitudes, both signs: 1e-30 .. 1e3
    # (below 1e-30 only 0's neighbours, the smallest subnormals)
    pos, neg = x[x > 0], -x[x < 0][::-1]
    for side in (pos, neg):
        assert side[0] == np.nextafter(dt.type(0), dt.type(1))
        assert math.isclose(side[1], 1e-30, rel_tol=1e-6)
        assert side[-1] == 1e3
    # every special point and both its neighbours
    for s in accuracy.SPECIAL:
        s = dt.type(s)
        assert s in x
        assert np.nextafter(s, dt.type(np.inf)) in x
        assert np.nextafter(s, dt.type(-np.inf)) in x
    # the uniform draws: what the other parts do not give, n of them in [-10, 10]
    mag = np.logspace(-30, 3, n)
    lin = np.linspace(0, tail, n)
    s = np.asarray(accuracy.SPECIAL, dt)
    known = np.concatenate([mag, -mag, lin, -lin]).astype(dt)
    known = np.concatenate([known, s, np.nextafter(s, dt.type(np.inf)),
                            np.nextafter(s, dt.type(-np.inf))])
    draws = np.setdiff1d(x, known)
    assert len(draws) == n
    assert draws.min() >= -10
    assert draws.max() <= 10
    assert draws.min() < -8
    assert draws.max() > 8
    # the density and the seed count; the default is n = 200, seed 0
    assert len(accuracy.grid(dtype, 2 * n)) > len(x) + 3 * n
    assert not np.array_equal(accuracy.grid(dtype, n, seed=1), x)
    assert np.array_equal(accuracy.grid(dtype), accuracy.grid(dtype, 200, 0))
    assert np.setdiff1d(accuracy.grid(dtype), accuracy.grid(dtype, 199)).size > 0


# ---- the formulas behind the truth ------------------------------------------------------

def _phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


CLOSED = {   # f at x, by hand with math
    ("sigmoid", ()): lambda x: 1 / (1 + math.exp(-x)),
    ("tanh", ()): math.tanh,
    ("relu", ()): lambda x: max(x, 0.0),
    ("leaky_relu", (("negative_slope", 0.2),)): lambda x: x if x > 0 else 0.2 * x,
    ("elu", (("alpha", 1.5),)): lambda x: x if x > 0 else 1.5 * math.expm1(x),
    ("selu", ()): lambda x: 1.0507009873554805 * (x if x > 0 else
                                                  1.6732632423543772 * math.expm1(x)),
    ("softplus", (("beta", 2.0), ("threshold", 20.0))): lambda x: math.log1p(math.exp(2 * x)) / 2,
    ("gelu", (("approximate", "none"),)): lambda x: x * _phi(x),
    # 0.5 (1 + tanh v) = expit(2 v), without the cancellation for x < 0
    ("gelu", (("approximate", "tanh"),)): lambda x: x * scipy.special.expit(
        2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)),
    ("silu", ()): lambda x: x / (1 + math.exp(-x)),
}


@pytest.mark.parametrize(("name", "params"), list(CLOSED), ids=str)
def test_fns_value_and_derivatives(name, params):
    """f against its closed form; f' and f'' against mpmath's numerical derivatives of the
    formula for f (away from the kinks of relu, leaky_relu, elu and selu)."""
    fns = accuracy._fns(name, A._check_params(A.ACTIVATIONS[name], dict(params)))
    for x in (-3.5, -0.75, 0.4, 2.25):
        with mpmath.workdps(40):
            f, f1, f2 = fns(mpmath, mpmath.mpf(x))
            d1 = mpmath.diff(lambda t: fns(mpmath, t)[0], mpmath.mpf(x))
            d2 = mpmath.diff(lambda t: fns(mpmath, t)[0], mpmath.mpf(x), 2)
        assert math.isclose(float(f), CLOSED[(name, params)](x), rel_tol=1e-13), x
        assert math.isclose(float(f1), float(d1), rel_tol=1e-20, abs_tol=1e-25), x
        assert math.isclose(float(f2), float(d2), rel_tol=1e-20, abs_tol=1e-25), x


def test_fns_at_the_kinks_follow_torch():
    mp = mpmath
    relu = accuracy._fns("relu", {})
    assert relu(mp, mp.mpf(0)) == (0, 0, 0)
    leaky = accuracy._fns("leaky_relu", {"negative_slope": 0.2})
    assert leaky(mp, mp.mpf(0))[1] == 0.2
    elu = accuracy._fns("elu", {"alpha": 1.5})
    assert elu(mp, mp.mpf(0)) == (0, 1.5, 1.5)
    assert elu(mp, mp.mpf(2)) == (2, 1, 0)
    with pytest.raises(ValueError, match="no elementwise truth for 'softmax'"):
        accuracy._fns("softmax", {"dim": -1})


def test_split_keeps_the_rest():
    with mpmath.workdps(40):
        v = mpmath.mpf(1) / 3
        hi, lo = accuracy._split(v)
        assert hi == 1 / 3
        assert lo != 0
        assert abs(lo) < math.ulp(hi)
        assert abs((mpmath.mpf(hi) + lo) - v) < mpmath.mpf(10) ** -30
        assert accuracy._split(mpmath.mpf("inf")) == (math.inf, 0.0)
        assert accuracy._split(mpmath.mpf("-inf")) == (-math.inf, 0.0)


def test_truth_details():
    with pytest.raises(ValueError, match="quantity='backward'; expected 'forward' or "
                                         "'derivative'"):
        accuracy.truth("relu", np.zeros(1), "backward")
    # relu: 0 where x <= 0 (κ 0 where the value is 0); f'' = 0 so κ of f' is 0
    hi, lo, kappa = accuracy.truth("relu", np.array([-2.0, 3.0]))
    assert hi.tolist() == [0.0, 3.0]
    assert lo.tolist() == [0.0, 0.0]
    assert kappa.tolist() == [0.0, 1.0]
    hi, _, kappa = accuracy.truth("relu", np.array([-2.0, 0.0, 3.0]), "derivative")
    assert hi.tolist() == [0.0, 0.0, 1.0]
    assert kappa.tolist() == [0.0, 0.0, 0.0]
    # softplus with beta 2: x is returned where 2x > threshold (10 here), in x's dtype
    x = np.array([5.25, 4.75, 5.0])
    hi, _, kappa = accuracy.truth("softplus", x, beta=2.0, threshold=10.0)
    assert hi[0] == 5.25
    assert kappa[0] == 1.0
    assert math.isclose(hi[1], math.log1p(math.exp(9.5)) / 2, rel_tol=1e-15)
    assert math.isclose(hi[2], math.log1p(math.exp(10.0)) / 2, rel_tol=1e-15)  # not above
    d, _, dk = accuracy.truth("softplus", x, "derivative", beta=2.0, threshold=10.0)
    assert d[0] == 1.0
    assert dk[0] == 0.0
    assert math.isclose(d[1], scipy.special.expit(9.5), rel_tol=1e-15)
    # the shape is kept, and lo carries the digits beyond float64
    x2 = np.array([[0.5, -0.5], [1.5, 2.5]])
    hi, lo, kappa = accuracy.truth("tanh", x2)
    assert hi.shape == lo.shape == kappa.shape == (2, 2)
    with mpmath.workdps(40):
        for xi, h, low in zip(x2.ravel(), hi.ravel(), lo.ravel(), strict=True):
            exact = mpmath.tanh(mpmath.mpf(xi))
            assert h == float(exact)
            assert low == float(exact - h)
            assert low != 0


def test_softmax_truth_and_rows():
    x = np.array([[[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]], [[2.0, 2.0, 2.0], [-3.0, 0.0, 0.5]]])
    hi, lo = accuracy.softmax_truth(x)
    assert hi.shape == lo.shape == x.shape
    np.testing.assert_allclose(hi, scipy.special.softmax(x, axis=-1), rtol=1e-15)
    assert np.all(np.abs(lo) <= np.spacing(hi))
    lhi, _ = accuracy.softmax_truth(x, log=True)
    np.testing.assert_allclose(lhi, scipy.special.log_softmax(x, axis=-1), rtol=1e-14)
    assert lhi[1, 0, 0] == math.log(1 / 3)
    for dtype, top in (("float32", 20.0), ("float64", 40.0)):
        rows = accuracy.softmax_rows(dtype, 300)
        assert rows.shape == (4, 300)
        assert rows.dtype == np.dtype(dtype)
        assert rows[2, 100] == top
        assert rows[2].argmax() == 100
        assert 0.7 < rows[0].std() < 1.3
        assert 7 < rows[1].std() < 13
        assert abs(np.delete(rows[2], 100).std() - 1) < 0.3
        assert rows[3].min() >= -60
        assert rows[3].max() <= 20
        assert rows[3].min() < -55
        assert rows[3].max() > 15
    assert not np.array_equal(accuracy.softmax_rows("float64", 50, seed=1),
                              accuracy.softmax_rows("float64", 50))
    assert accuracy.softmax_rows("float64").shape == (4, 1000)


# ---- ulps -------------------------------------------------------------------------------

def test_ulp_by_hand():
    assert accuracy.ulp(np.array([1.0, -1.0, 1.5]), "float64").tolist() == [2.0**-52] * 3
    assert accuracy.ulp(np.array([1.0]), "float32")[0] == 2.0**-23
    assert accuracy.ulp(np.array([1.0]), "float16")[0] == 2.0**-10
    # at the top of the range and beyond: its largest spacing (2**104 for float32, 2**971
    # for float64), not inf
    top32 = float(np.finfo(np.float32).max)
    assert accuracy.ulp(np.array([1e300, -np.inf, top32, -top32]), "float32").tolist() == \
        [2.0**104] * 4
    assert accuracy.ulp(np.array([np.inf, np.finfo(np.float64).max]), "float64").tolist() == \
        [2.0**971] * 2
    assert accuracy.ulp(np.array([2.0**127]), "float32")[0] == 2.0**104
    assert accuracy.ulp(np.array([0.0]), "float32")[0] == 2.0**-149
    assert accuracy.ulp(np.array([1.0]), "float32").dtype == np.float64
    err = accuracy.ulp_error(np.array([-np.inf, np.inf, -np.inf]),
                             np.array([-np.inf, -np.inf, 1.0]), np.zeros(3), "float64")
    assert err.tolist() == [0.0, np.inf, np.inf]


# ---- evaluating, rows, tables -----------------------------------------------------------

def test_evaluate_each_implementation():
    x = np.array([-2.0, -0.5, 0.5, 3.0])
    s = scipy.special.expit(x)
    for impl in accuracy.IMPLEMENTATIONS:
        f = accuracy._evaluate(impl, "sigmoid", {}, x, "forward")
        d = accuracy._evaluate(impl, "sigmoid", {}, x, "derivative")
        assert isinstance(f, np.ndarray), impl
        assert isinstance(d, np.ndarray), impl
        np.testing.assert_allclose(f, s, rtol=1e-15, err_msg=impl)
        np.testing.assert_allclose(d, s * (1 - s), rtol=1e-14, err_msg=impl)
    # the parameters reach every implementation
    for impl in accuracy.IMPLEMENTATIONS:
        y = accuracy._evaluate(impl, "leaky_relu", {"negative_slope": 0.25}, x, "forward")
        assert y.tolist() == [-0.5, -0.125, 0.5, 3.0], impl
        d = accuracy._evaluate(impl, "leaky_relu", {"negative_slope": 0.25}, x, "derivative")
        assert d.tolist() == [0.25, 0.25, 1.0, 1.0], impl
    # the input is not modified (a copy goes to torch)
    assert x.tolist() == [-2.0, -0.5, 0.5, 3.0]


def test_row_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    hi = np.array([1.0, 2.0, 3.0, 1e-300, 5.0])
    lo = np.zeros(5)
    got = np.array([1.0, 2.0 + 2 * 2.0**-51, 3.0, 0.0, np.inf])
    kappa = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    row = accuracy._row("leaky_relu", {"negative_slope": 0.5}, "forward", "float64", "numpy",
                        x, got, hi, lo, kappa, 4.0)
    assert row["function"] == "leaky_relu(negative_slope=0.5)"
    assert row["name"] == "leaky_relu"
    assert row["params"] == "negative_slope=0.5"
    assert (row["quantity"], row["dtype"], row["implementation"]) == \
        ("forward", "float64", "numpy")
    assert row["points"] == 5
    assert row["bound"] == 4.0
    # errors: 0, 2 ulps (κ 1), 0, 1e-300 / 5e-324 (huge), inf
    assert row["max_ulp"] == np.inf
    assert row["max_excess"] == np.inf
    assert (row["worst_x"], row["expected"], row["got"]) == (5.0, 5.0, np.inf)
    assert row["passed"] is False
    assert row["false_zeros"] == 1
    assert row["nonfinite"] == 1
    ok = accuracy._row("relu", {}, "derivative", "float64", "torch", x[:3], got[:3], hi[:3],
                       lo[:3], kappa[:3], 1.0)
    # 2 ulps at x = 2 with κ = 1: excess 1, within bound 1 + κ
    assert ok["max_ulp"] == 2.0
    assert ok["max_excess"] == 1.0
    assert ok["worst_x"] == 2.0
    assert ok["kappa"] == 1.0
    assert ok["expected"] == 2.0
    assert ok["got"] == 2.0 + 2 * 2.0**-51
    assert ok["passed"] is True
    assert ok["params"] == ""
    assert ok["function"] == "relu"
    assert ok["false_zeros"] == 0
    assert ok["nonfinite"] == 0
    tight = accuracy._row("relu", {}, "derivative", "float64", "torch", x[:3], got[:3],
                          hi[:3], lo[:3], kappa[:3], 0.99)
    assert tight["passed"] is False
    # a subnormal truth is not a false zero when 0 is returned
    sub = accuracy._row("relu", {}, "forward", "float64", "numpy", x[:1], np.zeros(1),
                        np.array([1e-310]), np.zeros(1), np.zeros(1), 4.0)
    assert sub["false_zeros"] == 0
    tiny = accuracy._row("relu", {}, "forward", "float32", "numpy", x[:1], np.zeros(1),
                         np.array([np.finfo(np.float32).tiny]), np.zeros(1), np.zeros(1), 4.0)
    assert tiny["false_zeros"] == 1
    two = accuracy._row("softplus", {"beta": 2.0, "threshold": 10.0}, "forward", "float64",
                        "numpy", x[:3], got[:3], hi[:3], lo[:3], kappa[:3], 1.0)
    assert two["params"] == "beta=2.0, threshold=10.0"
    assert two["function"] == "softplus(beta=2.0, threshold=10.0)"


def test_small_table():
    t = accuracy.table([("leaky_relu", {"negative_slope": 0.25}), ("softmax", {})],
                       dtypes=("float64",), implementations=("numpy", "torch.nn.functional"),
                       n=10, width=20)
    assert len(t) == 2 * 2 + 2      # leaky_relu: 2 quantities x 2 impls; softmax: forward
    lr = t[t.name == "leaky_relu"]
    assert set(lr.quantity) == {"forward", "derivative"}
    assert (lr.function == "leaky_relu(negative_slope=0.25)").all()
    assert (lr.params == "negative_slope=0.25").all()
    assert (lr.max_ulp == 0).all()
    assert lr.passed.all()
    assert (lr.bound == 4.0).all()
    assert (lr.points == len(accuracy.grid("float64", 10))).all()
    sm = t[t.name == "softmax"]
    assert set(sm.implementation) == {"numpy", "torch.nn.functional"}
    assert (sm.bound == accuracy.SOFTMAX_BOUNDS["float64"]).all()
    assert (sm.points == 4 * 20).all()
    assert (sm.quantity == "forward").all()
    assert (sm.kappa == 0).all()
    assert (sm.function == "softmax").all()
    assert sm[sm.implementation == "numpy"].passed.all()
    # float32 cells get the float32 bounds
    t32 = accuracy.table([("relu", {}), ("log_softmax", {})], dtypes=("float32",),
                         implementations=("numba",), n=10, width=20)
    assert t32.set_index("name").bound.to_dict() == {"relu": 2.0, "log_softmax": 2.0}
    with pytest.raises(ValueError, match=r"unknown implementation\(s\) \['jax'\]"):
        accuracy.table(implementations=("numpy", "jax"))


def test_table_progress_bar(capsys):
    t = accuracy.table([("relu", {})], dtypes=("float64", "float32"), implementations=("numpy",),
                       n=10, progress=True)
    assert list(t.dtype) == ["float64", "float64", "float32", "float32"]
    err = capsys.readouterr().err
    # tqdm's line: "activation accuracy: 100%|...| 2/2 [00:00<00:00, 12.3cell/s]"
    assert re.search(r"(^|\r)activation accuracy: 100%.* 2/2 \[", err)
    assert re.search(r"(cell/s|s/cell)\]", err)


def test_pivot():
    frame = pd.DataFrame({"function": ["b", "b", "a", "b"], "quantity": ["forward"] * 4,
                          "dtype": ["float64"] * 4, "implementation": ["x", "y", "x", "x"],
                          "max_excess": [1.0, 2.0, 3.0, 5.0], "max_ulp": [0.5] * 4})
    p = accuracy.pivot(frame)
    assert list(p.index.get_level_values("function")) == ["b", "a"]   # first seen first
    assert p.loc[("b", "forward", "float64"), "x"] == 5.0          # the largest
    assert p.loc[("b", "forward", "float64"), "y"] == 2.0
    assert np.isnan(p.loc[("a", "forward", "float64"), "y"])
    assert accuracy.pivot(frame, "max_ulp").loc[("a", "forward", "float64"), "x"] == 0.5


def test_run_part_sizes(monkeypatch):
    seen = {}

    def fake(n, progress):
        seen.update(n=n, progress=progress)
        return pd.DataFrame()

    monkeypatch.setattr(accuracy, "table", fake)
    assert set(accuracy.run_part("quick")) == {"accuracy"}
    assert seen == {"n": 40, "progress": True}
    accuracy.run_part()
    assert seen["n"] == 200
    accuracy.run_part("full")
    assert seen["n"] == 1000


class _Square:
    """A float64 path for f(x) = x^3 / 3: derivative x^2 (κ of f is 3, of f' is 2)."""

    @staticmethod
    def derivative(x):
        return x * x


def test_kappa_by_hand():
    x = np.array([2.0, -3.0, 0.5, 1.0, 4.0, 5.0])
    f = x**3 / 3
    f[3] = 0.0  # g = 0: κ is 0 there, whatever x g' is (documented, as in truth())
    with np.errstate(all="ignore"):
        k = accuracy._kappa64(_Square, "forward", x, f)
    np.testing.assert_allclose(k[[0, 1, 2, 4, 5]], 3.0, rtol=1e-15)
    assert k[3] == 0.0
    # the derivative's κ by the central difference: exact for a quadratic but for rounding
    kd = accuracy._kappa64(_Square, "derivative", x, x * x)
    np.testing.assert_allclose(kd, 2.0, rtol=1e-9)


def test_kappa_infinite_and_undefined():
    """An infinite x g'/g stays inf (no input is given a finite bound it cannot have); a NaN
    one (inf/inf, 0 * inf) is 0, as is any point where g = 0."""

    class Ref:
        @staticmethod
        def derivative(x):
            return np.array([np.inf, np.inf, 1.0, 2.0])

    x = np.array([1.0, np.inf, 0.0, 3.0])
    g = np.array([2.0, np.inf, 1.0, 0.0])
    k = accuracy._kappa64(Ref, "forward", x, g)
    assert k.tolist() == [np.inf, 0.0, 0.0, 0.0]


def test_ulp_error_lo_sign_and_the_rounding_line():
    one = np.array([1.0])
    # got 1 + 2^-52 against the truth 1 + 2^-60: (1 - 2^-8) ulp, not 1 + 2^-8
    err = accuracy.ulp_error(np.array([1.0 + 2.0**-52]), one, np.array([2.0**-60]), "float64")
    assert err[0] == 1 - 2.0**-8
    # the truth FLT_MAX + half its spacing - 2^75 lies below float32's rounding line: it rounds
    # to FLT_MAX, so inf is infinitely wrong; plus 2^75 it lies above and inf is exact
    line = np.array([float(np.finfo(np.float32).max) + 2.0**103])
    inf = np.array([np.inf])
    assert accuracy.ulp_error(inf, line, np.array([-2.0**75]), "float32")[0] == np.inf
    assert accuracy.ulp_error(inf, line, np.array([2.0**75]), "float32")[0] == 0.0


# ---- the exhaustive float32 scan, on a slice --------------------------------------------

ONE = 0x3F800000   # float32 1.0


def test_exhaustive_slice_counts_and_bounds():
    res = accuracy.exhaustive_float32("sigmoid", backend="numpy", start=ONE, stop=ONE + 1000,
                                      chunk=300)
    assert res["inputs"] == 1000
    assert res["function"] == "sigmoid"
    assert res["quantity"] == "forward"
    assert res["backend"] == "numpy"
    assert res["bound"] == 1.0
    # numpy's float32 sigmoid rounds its float64 result once: within half an ulp
    assert 0 < res["max_ulp"] <= 0.5
    assert res["over_bound"] == 0
    assert 1.0 <= res["worst_x"] < 1.0 + 1000 * 2.0**-23
    # the non-finite patterns at the top of the range are left out
    inf = 0x7F800000
    top = accuracy.exhaustive_float32("relu", backend="numba", start=inf - 256, stop=inf + 16,
                                      chunk=100)
    assert top["inputs"] == 256
    assert top["max_ulp"] == 0.0
    # every result exact: the first input is named, for the error and for the excess
    first = float(np.array([inf - 256], np.uint32).view(np.float32)[0])
    assert top["worst_x"] == first
    assert top["excess_x"] == first
    assert top["max_excess"] == -1.0  # error 0, κ of relu(x) = x is 1
    assert top["bound"] == 2.0
    d = accuracy.exhaustive_float32("elu", "derivative", backend="torch", start=ONE | 1 << 31,
                                    stop=(ONE | 1 << 31) + 64, chunk=64, alpha=0.5)
    assert d["function"] == "elu(alpha=0.5)"
    assert d["quantity"] == "derivative"
    assert d["inputs"] == 64
    assert d["max_ulp"] <= 0.5


def test_exhaustive_slice_finds_a_planted_error(monkeypatch):
    """A backend three float32 ulps off at one input: found, counted, located."""
    bad_x = np.float32(1.0) + np.float32(2.0**-23) * 37
    real_get = A.get

    class Off:
        def __init__(self, act):
            self.act = act

        def forward(self, x):
            y = np.asarray(self.act.forward(x)).copy()
            hit = x == bad_x
            y[hit] = y[hit] + 3 * np.spacing(y[hit])
            return y

        def derivative(self, x):
            return self.act.derivative(x)

    def get(name, backend, **params):
        act = real_get(name, backend=backend, **params)
        return Off(act) if backend == "numba" else act

    monkeypatch.setattr(accuracy.A, "get", get)
    res = accuracy.exhaustive_float32("tanh", start=ONE, stop=ONE + 100, chunk=30)
    assert res["worst_x"] == float(bad_x)
    assert res["excess_x"] == float(bad_x)  # κ of tanh near 1 is < 1: the excess is there too
    assert 2.5 <= res["max_ulp"] <= 3.5
    assert res["over_bound"] == 1
    clean = accuracy.exhaustive_float32("tanh", "derivative", start=ONE, stop=ONE + 100,
                                        chunk=30)
    assert clean["over_bound"] == 0
    assert clean["max_ulp"] <= 2.0


def test_exhaustive_defaults_cover_all_patterns(monkeypatch):
    """The default range is every 32-bit pattern, in chunks of 2**24."""
    seen = []
    real_arange = np.arange

    def arange(lo, hi, dtype):
        seen.append((lo, hi))
        return real_arange(lo, lo + 1, dtype=dtype)

    monkeypatch.setattr(accuracy.np, "arange", arange)
    res = accuracy.exhaustive_float32("relu", backend="numpy")
    assert len(seen) == 256
    assert seen[0] == (0, 2**24)
    assert seen[-1] == (2**32 - 2**24, 2**32)
    assert res["inputs"] == 256      # one pattern per chunk (all finite here)
    assert res["backend"] == "numpy"
    assert res["quantity"] == "forward"


def test_table_defaults_and_messages(monkeypatch, capsys):
    """The documented defaults reach the truth and the rows: a grid of n = 200, rows of 1000
    logits, no progress bar (the expensive parts replaced by recorders)."""
    seen = {}
    x = np.array([-1.0, 0.5, 2.0])

    def cached_truth(name, params, dtype, n, quantity):
        seen["n"] = n
        hi = np.maximum(x, 0.0) if quantity == "forward" else (x > 0).astype(float)
        return x, hi, np.zeros(3), np.zeros(3)

    def rows(dtype, width, seed=0):
        seen["width"] = width
        return np.array([[0.0, 1.0]])

    def cached_softmax(dtype, width, log):
        seen["softmax width"] = width
        e = np.exp([0.0, 1.0])
        return (e / e.sum())[None, :], np.zeros((1, 2))

    monkeypatch.setattr(accuracy, "_cached_truth", cached_truth)
    monkeypatch.setattr(accuracy, "softmax_rows", rows)
    monkeypatch.setattr(accuracy, "_cached_softmax", cached_softmax)
    t = accuracy.table([("relu", {}), ("softmax", {})], dtypes=("float64",),
                       implementations=("numpy",))
    assert seen == {"n": 200, "width": 1000, "softmax width": 1000}
    assert len(t) == 3
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match=r"expected some of numpy, numba, torch, "
                                         r"torch\.nn\.functional$"):
        accuracy.table(implementations=("jax",))


def test_exhaustive_error_at_the_bound_is_not_over_it(monkeypatch):
    """relu is exact in float32 and its forward κ = |x f'/f| is 1: a result planted exactly
    three ulps off is at numba's bound (2 ulps + κ), not over it; four ulps are over."""
    real_get = A.get
    x1 = np.float32(1.5)
    x2 = np.float32(1.75)

    class Off:
        def __init__(self, act):
            self.act = act

        def forward(self, x):
            y = np.asarray(self.act.forward(x)).copy()
            for at, k in ((x1, 3), (x2, 4)):
                hit = x == at
                y[hit] = y[hit] + k * np.spacing(y[hit])
            return y

    def get(name, backend, **params):
        act = real_get(name, backend=backend, **params)
        return Off(act) if backend == "numba" else act

    monkeypatch.setattr(accuracy.A, "get", get)
    start = int(np.array([1.5], np.float32).view(np.uint32)[0])
    stop = int(np.array([1.75], np.float32).view(np.uint32)[0]) + 1
    res = accuracy.exhaustive_float32("relu", start=start, stop=stop, chunk=1 << 20)
    assert res["max_ulp"] == 4.0
    assert res["worst_x"] == 1.75
    assert res["over_bound"] == 1
    assert res["max_excess"] == 3.0
    assert res["excess_x"] == 1.75


def test_derivative_zero_series_defaults():
    """Without a guess the search starts at -1, and the default degree is 24: silu's f' has its
    zero at x0 with 1 + x0 (1 - s(x0)) = 0 (s the logistic function)."""
    hi, lo, c = accuracy.derivative_zero_series("silu")
    assert len(c) == 24
    s = 1 / (1 + math.exp(-hi))
    assert abs(1 + hi * (1 - s)) < 1e-15
    assert -1.28 < hi < -1.27
    assert abs(lo) <= math.ulp(hi) / 2
    # gelu's zero (Phi(x0) + x0 phi(x0) = 0) is found from -1 (from -2 or +1 the search fails)
    hi, _, c = accuracy.derivative_zero_series("gelu", 4)
    assert len(c) == 4
    assert abs(0.5 * math.erfc(-hi / math.sqrt(2))
               + hi * math.exp(-hi * hi / 2) / math.sqrt(2 * math.pi)) < 1e-15
    # the guess is used: from +5 (f' ~ 1 and no zero near) the search fails
    with pytest.raises(ValueError, match="Could not find root"):
        accuracy.derivative_zero_series("silu", 4, guess=5.0)
