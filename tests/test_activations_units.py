"""The activations' numerical building blocks against exact or high-precision truth
(math.fsum, mpmath), their behaviour at huge inputs against torch, and the API's checks and
dispatch. Each check takes milliseconds."""

import math
import sys
import types
import warnings

import mpmath
import numpy as np
import pytest
import torch

from suite import activations as A
from suite.activations import accuracy

mpmath.mp.dps = 40


def _ulps(got, exact):
    """|got - exact| in ulps of exact (exact: mpmath numbers or floats)."""
    return max(abs(mpmath.mpf(float(g)) - mpmath.mpf(e)) / np.spacing(abs(float(e)))
               for g, e in zip(np.ravel(got), np.ravel(exact), strict=True))


@pytest.mark.parametrize("xp", ["numpy", "torch"])
def test_compensated_sum_is_correctly_rounded_on_positive_terms(xp):
    """Positive terms spanning 20 decades (like a softmax row's exponentials): the pairwise
    two-sum with compensation is within 1 ulp of math.fsum (exactly rounded), on a length that
    is not a power of two (padding) and along either axis; a plain sum is not."""
    rng = np.random.default_rng(3)
    rows = 10.0 ** rng.uniform(-20, 0, (4, 1000)) * (1 + rng.random((4, 1000)))
    exact = [math.fsum(r) for r in rows]
    for dim, data in ((1, rows), (0, rows.T.copy())):
        v = data if xp == "numpy" else torch.tensor(data)
        ns = np if xp == "numpy" else torch
        got = np.asarray(A._compensated_sum(ns, v, dim)).ravel()
        assert got.shape == (4,)
        assert _ulps(got, exact) <= 1.0, dim
    # a single term and a length-2 row
    assert A._compensated_sum(np, np.array([[0.1]]), 1)[0, 0] == 0.1
    assert A._compensated_sum(np, np.array([[0.1, 0.2]]), 1)[0, 0] == math.fsum([0.1, 0.2])


def test_compensated_sum_recovers_what_plain_summation_loses():
    # 1 + 2^-53 + 2^-53 + ...: each small term vanishes in a plain sum, not in the compensation
    v = np.array([[1.0] + [2.0**-53] * 7])
    assert A._compensated_sum(np, v, 1)[0, 0] == math.fsum(v[0]) > 1.0
    assert sum(v[0]) == 1.0             # left to right, each small term is lost


@pytest.mark.parametrize("log", [False, True])
def test_softmax_float64_within_its_bound_of_mpmath(log):
    """float64 softmax and log_softmax of wide rows against mpmath (accuracy.softmax_truth):
    within the documented bound (8 ulps), which needs the compensated sum and the two-sum of
    x - max (a plain float64 sum of 1000 terms is off by up to ~log2(1000) ulps of the sum)."""
    x = accuracy.softmax_rows("float64", width=400, seed=1)[:6]
    hi, lo = accuracy.softmax_truth(x, log=log)
    got = A.get("log_softmax" if log else "softmax").forward(x)
    err = accuracy.ulp_error(got, hi, lo, "float64")
    assert np.max(err) <= accuracy.SOFTMAX_BOUNDS["float64"], np.max(err)


def test_softmax_of_a_row_with_one_dominant_logit_keeps_the_small_ones():
    # x = (0, -d): softmax = (1/(1+e^-d), e^-d/(1+e^-d)), log_softmax_0 = -log1p(e^-d)
    d = 30.0
    x = np.array([[0.0, -d], [-d, 0.0]])
    y = A.get("softmax").forward(x)
    ly = A.get("log_softmax").forward(x)
    e = mpmath.exp(-d)
    assert _ulps(y[0], [1 / (1 + e), e / (1 + e)]) <= 1
    assert _ulps(ly[0], [-mpmath.log1p(e), -d - mpmath.log1p(e)]) <= 1
    assert _ulps(y[1], [e / (1 + e), 1 / (1 + e)]) <= 1


def test_exp_half_square_is_accurate_where_x_squared_rounds():
    """exp(-x²/2) with x² split exactly: within 1 ulp of mpmath where x² has a rounding
    error of hundreds of ulps of the result (exp of a rounded -x²/2 is not)."""
    x = np.array([7.1, 12.34567, 20.000001, 27.3, 33.3333, 37.9])
    got = A._exp_half_square(np, x)
    exact = [mpmath.exp(-mpmath.mpf(float(v)) ** 2 / 2) for v in x]
    assert _ulps(got, exact) <= 1.0
    assert _ulps(np.exp(-x * x / 2), exact) > 10   # what the split is for


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid", "tanh", "softplus", "elu"])
def test_huge_and_infinite_inputs_match_torch(name):
    x = np.array([-np.inf, -1e300, -1e200, 1e200, 1e300, np.inf])
    act = A.get(name)
    ref = A.ACTIVATIONS[name].torch_fn()
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.sum().backward()
    np.testing.assert_array_equal(act.forward(x), ty.detach().numpy())
    finite = np.isfinite(x)   # torch's gradient at ±inf is NaN for some (0 * inf)
    np.testing.assert_array_equal(act.derivative(x)[finite], tx.grad.numpy()[finite])
    if name == "gelu":
        np.testing.assert_array_equal(A.get("gelu", approximate="tanh").forward(x),
                                      A.ACTIVATIONS[name].torch_fn(approximate="tanh")(
                                          torch.tensor(x)).numpy())


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_derivative_near_its_zero_against_mpmath(name):
    """Within the series' window (|h| < 0.25) f' keeps a few ulps of relative accuracy,
    also towards the window's edge where the highest-order terms count."""
    x0 = A._series.SERIES[name][0]
    x = x0 + np.array([-0.24, -0.2, -0.1, -1e-3, 1e-6, 1e-3, 0.1, 0.2, 0.24])
    hi, lo, _ = accuracy.truth(name, x, "derivative")
    err = accuracy.ulp_error(A.get(name).derivative(x), hi, lo, "float64")
    assert np.max(err) <= 4, err


def test_errors_name_the_value_and_what_was_expected():
    with pytest.raises(TypeError, match=r"^relu: unknown parameter\(s\) alpha; valid: none$"):
        A.get("relu", alpha=1.0)
    with pytest.raises(TypeError, match=r"^softplus: unknown parameter\(s\) a, b; valid: beta, "
                                        r"threshold$"):
        A.get("softplus", b=1, a=2)
    with pytest.raises(ValueError, match=r"^softplus: beta=0 divides by zero; expected a "
                                         r"non-zero beta$"):
        A.get("softplus", beta=0)
    with pytest.raises(ValueError, match=r"^gelu: approximate='tan'; expected 'none' or "
                                         r"'tanh'$"):
        A.get("gelu", approximate="tan")
    with pytest.raises(TypeError, match=r"^softmax: dim=1.0 must be an int$"):
        A.get("softmax", dim=1.0)
    with pytest.raises(ValueError, match=r"^unknown activation 'gelv'; expected one of sigmoid, "
                                         r"tanh, relu"):
        A.get("gelv")
    assert A.get("softplus", beta=-1.0).params == {"beta": -1.0, "threshold": 20.0}
    act = A.get("tanh")
    x = np.zeros(3)
    with pytest.raises(TypeError, match=r"^input is a list; the numpy backend expects "
                                        r"numpy.ndarray$"):
        act.forward([0.0])
    with pytest.raises(TypeError, match=r"^input has dtype int64"):
        act.derivative(np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match=r"^dy is a list; the numpy backend expects"):
        act.backward(x, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"^dy has shape \(2,\) but x has shape \(3,\)$"):
        act.backward(x, np.zeros(2))
    with pytest.raises(ValueError, match=r"^dy has dtype float32 but x has dtype float64$"):
        act.backward(x, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"^softmax is not elementwise; use backward\(x, dy\)$"):
        A.get("softmax").derivative(x)


def test_overflow_inside_the_formulas_is_silent_as_in_torch():
    x = np.array([1000.0, -1000.0, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("elu", "softplus", "selu", "silu"):
            act = A.get(name)
            act.forward(x)
            act.derivative(x)
            act.backward(x, np.ones(3))
            act.forward_backward(x, np.ones(3))


def test_numba_backend_runs_the_numba_kernels(monkeypatch):
    # a stand-in for the compiled module (importing it compiles kernels for seconds)
    numba_kernels = types.ModuleType("suite.activations.numba_kernels")
    monkeypatch.setitem(sys.modules, numba_kernels.__name__, numba_kernels)
    monkeypatch.setattr(A, "numba_kernels", numba_kernels, raising=False)
    calls = []

    def spy(what):
        def f(name, *args, **params):
            calls.append((what, name))
            return what
        return f

    for what in ("forward", "derivative", "backward", "forward_backward"):
        setattr(numba_kernels, what, spy(what))
    act = A.get("tanh", backend="numba")
    x = np.zeros(2)
    assert act.forward(x) == "forward"
    assert act.derivative(x) == "derivative"
    assert act.backward(x, x) == "backward"
    assert act.forward_backward(x, x) == "forward_backward"
    assert calls == [("forward", "tanh"), ("derivative", "tanh"), ("backward", "tanh"),
                     ("forward_backward", "tanh")]
    calls.clear()
    y, dx = A.get("tanh").forward_backward(x, np.ones(2))     # numpy: no Numba kernel
    assert calls == []
    np.testing.assert_array_equal(y, [0.0, 0.0])
    np.testing.assert_array_equal(dx, [1.0, 1.0])               # tanh'(0) = 1


# ---- float64 softmax where a plain sum loses digits -----------------------------------------

def _accumulating_row(n: int = 1024, shift: float = 0.0) -> np.ndarray:
    """Logits whose exponentials a plain float64 sum loses: every 128th to 128th + 7 is 0
    (e = 1), the rest log(0.99 2^-53) (e just below half of 1's spacing), so a running sum
    that already holds a 1 drops every small term added to it. ``shift`` moves the row (x - max
    is then rounded for the small terms)."""
    x = np.full(n, math.log(0.99 * 2.0**-53))
    x[np.arange(n) % 128 < 8] = 0.0
    return x[None] + shift


def test_float64_softmax_keeps_its_digits_where_a_plain_sum_loses_them():
    """The compensated sum of the float64 softmax and log_softmax, and the rounding error r of
    x - max (in e = e^d (1 + r), and added to log_softmax after a two-sum), on a row where
    summing the exponentials in order loses 7 ulps (a float64 pairwise sum does here,
    NumPy's and torch's), shifted by -0.3 so that x - max rounds: ours within 1.4 and 0.4 ulp
    on both backends, torch 2.13's own softmax 15 ulps (over the float64 bound of 8),
    log_softmax 2.3. Measured: 1.15 / 0.34 unshifted, 1.30 / 0.26 shifted; a plain sum gives
    15 (NumPy) and 6.9 (torch), e without r 51, log_softmax without r 0.74. The Numba
    kernel (its own compensated sum; log_softmax without r) measured 1.30 / 0.74."""
    for shift in (0.0, -0.3):
        x = _accumulating_row(shift=shift)
        e = np.exp(x[0] - x.max())
        assert abs(np.sum(e) - math.fsum(e)) >= 4 * np.spacing(math.fsum(e))  # the row is hard
        hi, lo = accuracy.softmax_truth(x)
        lhi, llo = accuracy.softmax_truth(x, log=True)
        for backend, xx, log_bound in (("numpy", x, 0.4), ("torch", torch.from_numpy(x), 0.4),
                                       ("numba", x, 0.8)):
            y = np.asarray(A.get("softmax", backend=backend, dim=-1).forward(xx))
            ly = np.asarray(A.get("log_softmax", backend=backend, dim=-1).forward(xx))
            assert accuracy.ulp_error(y, hi, lo, "float64").max() <= 1.4, (backend, shift)
            assert accuracy.ulp_error(ly, lhi, llo, "float64").max() <= log_bound, \
                (backend, shift)
        t = torch.from_numpy(x)
        assert accuracy.ulp_error(torch.softmax(t, -1).numpy(), hi, lo, "float64").max() > 8
        assert accuracy.ulp_error(torch.log_softmax(t, -1).numpy(), lhi, llo,
                                  "float64").max() > 2


def test_compensated_sum_against_fsum():
    """The pairwise two-sum reduction is math.fsum's correctly rounded sum to within 1/2 ulp
    plus n u² on vectors where np.sum is off (the row above, and signed terms that cancel),
    along either axis and on torch tensors."""
    rng = np.random.default_rng(5)
    signed = rng.standard_normal(3000) * 10.0 ** rng.integers(-8, 9, 3000)
    for v in (np.exp(_accumulating_row()[0]), signed, np.r_[1.0, 1e100, 1.0, -1e100]):
        exact = math.fsum(v)
        got = A._compensated_sum(np, v[:, None], 0)
        assert got.shape == (1, 1)
        assert abs(got[0, 0] - exact) <= 0.5 * np.spacing(abs(exact)) + 1e-300
        tgot = A._compensated_sum(torch, torch.from_numpy(np.stack([v, v])), 1)
        assert tgot.shape == (2, 1)
        assert (tgot.numpy() == got[0, 0]).all()
