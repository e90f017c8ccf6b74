"""Activations and losses against torch autograd, finite differences and textbook identities."""

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from suite import activations as A
from suite import losses as L
from suite.activations import accuracy

BACKENDS = ["numpy", "numba", "torch"]
VARIANTS = [(n, {}) for n in A.NAMES if n != "gelu"] + [
    ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 0.5}), ("softplus", {"beta": 2.0, "threshold": 10.0})]
RTOL = {"float64": 1e-12, "float32": 1e-5}
ATOL = {"float64": 4e-15, "float32": 2e-6}


def _inputs(dtype, softmax=False):
    rng = np.random.default_rng(1)
    special = [0.0, -0.0, 1e4, -1e4, 1e-310, -1e-310, 30.0, -30.0, 20.0, 20.0001, 1e-30]
    x = np.concatenate([rng.standard_normal(400) * 6, special, rng.standard_normal(5) * 1e3])
    if dtype == "float32":
        x = x[np.abs(x) != 1e-310]
    x = x[: (len(x) // 4) * 4].astype(dtype)
    return x.reshape(4, -1) if softmax else x


def _conv(backend, a):
    return torch.from_numpy(a.copy()) if backend == "torch" else a.copy()


def _close(ours, ref, x, dy, dtype, what):
    """|ours - ref| <= rtol |ref| + atol (1 + |x|)(1 + |dy|): relative error, except where the
    value is the round-off-level remainder of a cancellation (1 - tanh², 1 + tanh(...))."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    x = np.broadcast_to(np.asarray(x, np.float64), ref.shape)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{what}: NaN pattern")
    ok = ~np.isnan(ref)
    bound = RTOL[dtype] * np.abs(ref) + ATOL[dtype] * (1 + np.abs(x)) * (1 + np.abs(dy))
    err = np.abs(ours - ref)
    bad = ok & ~(err <= bound) & ~((ours == ref) & np.isinf(ref))
    assert not bad.any(), f"{what}: worst at x={np.asarray(x)[bad][:3]}: {ours[bad][:3]} vs {ref[bad][:3]}"


@functools.lru_cache(maxsize=64)
def _truth(name, params, dtype, quantity):
    x = _inputs(dtype, name in ("softmax", "log_softmax"))
    if name in ("softmax", "log_softmax"):
        return (*accuracy.softmax_truth(x, name == "log_softmax"), np.zeros(x.shape))
    return accuracy.truth(name, x, quantity, **dict(params))


def _torch_values(act, x, dy):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = act.torch_fn()(tx)
    ty.backward(torch.from_numpy(dy))
    return ty.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_activation_matches_autograd(name, params, backend, dtype):
    """Forward and derivative within L + κ ulps of the mpmath truth and no worse than torch's
    own function (+ L) in the same dtype; backward = dy * f' (one more rounding); softmax-like
    forward within the softmax bound and backward as torch's float64 autograd."""
    soft = name in ("softmax", "log_softmax")
    x = _inputs(dtype, soft)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    act = A.get(name, backend=backend, **params)
    y = act.forward(_conv(backend, x))
    dx = act.backward(_conv(backend, x), _conv(backend, dy))
    assert np.asarray(y).dtype == np.dtype(dtype)
    torch_y, torch_dx = _torch_values(act, x, dy)
    assert np.all(np.isfinite(np.asarray(y)) | ~np.isfinite(torch_y))
    key = tuple(sorted(params.items()))
    bound = accuracy.SOFTMAX_BOUNDS[dtype] if soft else accuracy.BOUNDS[backend][dtype]
    hi, lo, kappa = _truth(name, key, dtype, "forward")
    err = accuracy.ulp_error(np.asarray(y), hi, lo, dtype)
    err_torch = accuracy.ulp_error(torch_y, hi, lo, dtype)
    _assert_within(err, bound + kappa, x, f"{name} forward")
    _assert_within(err, err_torch + bound, x, f"{name} forward vs torch")
    if soft:
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        act.torch_fn()(tx).backward(torch.from_numpy(dy.astype(np.float64)))
        _close(dx, tx.grad.numpy(), x, dy, dtype, f"{name} backward")
        return
    hi, lo, kappa = _truth(name, key, dtype, "derivative")
    d = np.asarray(act.derivative(_conv(backend, x)))
    err = accuracy.ulp_error(d, hi, lo, dtype)
    _assert_within(err, bound + kappa, x, f"{name} derivative")
    ok = dy != 0
    err_dx = accuracy.ulp_error(np.asarray(dx)[ok] / dy[ok].astype(np.float64), hi[ok], lo[ok],
                                dtype)
    _assert_within(err_dx, bound + 1 + kappa[ok], x[ok], f"{name} backward")
    err_torch = accuracy.ulp_error(torch_dx[ok] / dy[ok].astype(np.float64), hi[ok], lo[ok],
                                   dtype)
    _assert_within(err_dx, err_torch + bound + 1, x[ok], f"{name} backward vs torch")


def _assert_within(err, allowed, x, what):
    allowed = np.broadcast_to(allowed, err.shape)
    bad = ~(err <= allowed)
    assert not bad.any(), (f"{what}: {err[bad][:3]} ulps > {allowed[bad][:3]} "
                           f"at x={np.asarray(x)[bad][:3]}")


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_activation_matches_finite_differences(name, params):
    act = A.get(name, **params)
    x = np.random.default_rng(3).uniform(-4, 4, (3, 7))
    if name in ("relu", "leaky_relu"):  # not differentiable at 0
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    dy = np.random.default_rng(4).standard_normal(x.shape)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        num[idx] = np.sum(dy * (act.forward(x + e) - act.forward(x - e))) / (2 * h)
    np.testing.assert_allclose(act.backward(x, dy), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_forward_backward_is_forward_and_backward(name, params, backend, dtype):
    """The fused call returns exactly the bits of the two separate calls (NaN, inf, 0 and
    subnormal inputs included), in the input's dtype, as arrays of the input's shape."""
    soft = name in ("softmax", "log_softmax")
    x = _inputs(dtype, soft)
    x = np.concatenate([x.reshape(-1), [np.nan, np.inf, -np.inf, 0.0]]).astype(dtype)
    x = x.reshape(4, -1) if soft else x.reshape(2, -1)
    dy = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    act = A.get(name, backend=backend, **params)
    y, dx = act.forward_backward(_conv(backend, x), _conv(backend, dy))
    y_ref = act.forward(_conv(backend, x))
    dx_ref = act.backward(_conv(backend, x), _conv(backend, dy))
    for got, ref in ((y, y_ref), (dx, dx_ref)):
        got, ref = np.asarray(got), np.asarray(ref)
        assert got.dtype == np.dtype(dtype)
        assert got.shape == x.shape
        np.testing.assert_array_equal(got, ref)  # NaN == NaN here
    with pytest.raises(ValueError, match="dy has shape"):
        act.forward_backward(_conv(backend, x), _conv(backend, dy[:1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_and_bad_input(backend):
    for name in A.NAMES:
        act = A.get(name, backend=backend)
        x = np.array([[np.nan, 1.0, -1.0]])
        y = np.asarray(act.forward(_conv(backend, x)))
        assert np.isnan(y[0, 0])
    with pytest.raises(ValueError, match=r"unknown activation 'sigmoidd'.*tanh"):
        A.get("sigmoidd")
    with pytest.raises(TypeError, match=r"dtype (torch\.)?int64"):
        A.get("relu", backend=backend).forward(_conv(backend, np.arange(3)))
    with pytest.raises(TypeError, match=r"unknown parameter.*slope.*negative_slope"):
        A.get("leaky_relu", slope=0.1)
    with pytest.raises(ValueError, match="approximate='fast'"):
        A.get("gelu", approximate="fast")
    with pytest.raises(ValueError, match="dy has shape"):
        A.get("tanh", backend=backend).backward(_conv(backend, np.zeros(3)),
                                                _conv(backend, np.zeros(4)))


finite = st.floats(-30, 30, allow_nan=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 20), elements=finite))
def test_textbook_identities(x):
    sig = A.get("sigmoid")
    s = sig.forward(x)
    # s'(x) = s(x) s(-x) and tanh' = sech²: the identities in forms that keep their digits
    # (s (1 - s) and 1 - tanh² are the round-off of a cancellation for |x| beyond a few units)
    np.testing.assert_allclose(sig.derivative(x), s * sig.forward(-x), rtol=1e-12, atol=1e-300)
    tanh = A.get("tanh")
    np.testing.assert_allclose(tanh.derivative(x), np.cosh(x) ** -2.0, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(tanh.forward(x), 2 * sig.forward(2 * x) - 1, atol=4e-16)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 8)), elements=finite))
def test_softmax_jacobian_and_cross_entropy(x):
    sm = A.get("softmax")
    y = sm.forward(x)
    n = x.shape[1]
    for row in range(x.shape[0]):
        jac = np.stack([sm.backward(x[row:row + 1], np.eye(n)[j:j + 1])[0] for j in range(n)])
        assert np.all(np.diag(jac) >= 0)
        off = jac[~np.eye(n, dtype=bool)]
        assert np.all(off <= 0)
        np.testing.assert_allclose(jac.sum(axis=1), 0, atol=1e-15)
        np.testing.assert_allclose(jac, np.diag(y[row]) - np.outer(y[row], y[row]), atol=1e-15)
    t = np.arange(x.shape[0]) % n
    ce = L.get("cross_entropy").value(x, t)
    nll = L.get("nll").value(A.get("log_softmax").forward(x), t)
    np.testing.assert_allclose(ce, nll, rtol=1e-14)


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_entropy_of_uniform_is_log_n(n):
    for backend in BACKENDS:
        p = np.full((3, n), 1.0 / n)
        val = L.get("entropy", backend=backend).value(_conv(backend, p), None, "none")
        np.testing.assert_allclose(np.asarray(val), np.log(n), rtol=1e-13, atol=1e-15)


def _loss_cases(dtype):
    rng = np.random.default_rng(0)
    n, c = 7, 5
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    probs = rng.dirichlet(np.ones(c), n).astype(dtype)
    idx = rng.integers(0, c, n)
    idx[2] = -100
    u = rng.uniform(0, 1, (n,)).astype(dtype)
    extreme = np.array([0.0, 1.0, 1e-30, 1 - 1e-7, 0.5], dtype=dtype)
    return [
        ("mse", {}, x, rng.standard_normal((n, c)).astype(dtype)),
        ("cross_entropy", {}, x, idx), ("cross_entropy", {"label_smoothing": 0.2}, x, idx),
        ("cross_entropy", {}, x, probs), ("cross_entropy", {"label_smoothing": 0.1}, x, probs),
        ("cross_entropy", {}, (x * 3000).astype(dtype), idx),
        ("nll", {}, np.log(probs), idx),
        ("binary_cross_entropy", {}, u, rng.uniform(0, 1, n).astype(dtype)),
        ("binary_cross_entropy", {}, extreme, np.array([0, 1, 1, 0, 1], dtype=dtype)),
        ("binary_cross_entropy_with_logits", {}, (u - 0.5) * 1e4,
         rng.uniform(0, 1, n).astype(dtype)),
        ("kl_div", {}, np.log(probs), rng.dirichlet(np.ones(c), n).astype(dtype)),
        ("kl_div", {"log_target": True}, np.log(probs), np.log(probs[::-1]).copy()),
        ("entropy", {}, probs, None),
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_autograd(backend, reduction, dtype):
    for name, params, x, t in _loss_cases(dtype):
        loss = L.get(name, backend=backend, **params)
        tt = None if t is None else (torch.from_numpy(t.copy()) if backend == "torch" else t)
        v = loss.value(_conv(backend, x), tt, reduction)
        g = loss.grad(_conv(backend, x), tt, reduction)
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        ref_t = None if t is None else torch.from_numpy(
            t.astype(np.float64) if t.dtype.kind == "f" else t)
        tv = loss.torch_value(tx, ref_t, reduction)
        tv.sum().backward()
        assert np.all(np.isfinite(np.asarray(v))), (name, params)
        _close(v, tv.detach().numpy(), 0.0, 0.0, dtype, f"{name}{params} value")
        _close(g, tx.grad.numpy(), 0.0, 0.0, dtype, f"{name}{params} grad")


def test_loss_errors():
    ce = L.get("cross_entropy")
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        ce.value(np.zeros((2, 5)), np.array([0, 5]))
    with pytest.raises(ValueError, match="target has shape"):
        ce.value(np.zeros((2, 5)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        L.get("binary_cross_entropy").value(np.array([1.5]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*mse"):
        L.get("hinge")
    with pytest.raises(ValueError, match="reduction='avg'"):
        L.get("mse").value(np.zeros(2), np.zeros(2), "avg")
    with pytest.raises(TypeError, match="dtype int64"):
        L.get("mse").value(np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="target has shape"):
        L.get("mse").value(np.zeros(2), np.zeros(3))
    v = L.get("mse").value(np.array([np.nan, 1.0]), np.zeros(2))
    assert np.isnan(v)


def _softmax_f64(x, log):
    """float64 reference for float32 logits: d = x - max exactly, numpy's exp (< 1 float64
    ulp), the others' sum (all but the first maximum) by math.fsum; ~1e-9 float32 ulps."""
    x = x.astype(np.float64)
    d = x - x.max(axis=1, keepdims=True)
    e = np.exp(d)
    others = e.copy()
    others[np.arange(len(x)), np.argmax(x, axis=1)] = 0.0
    s = np.array([math.fsum(r) for r in others])[:, None]
    return d - np.log1p(s) if log else e / (1 + s)


def _hard_float32_rows():
    """Rows where a float32 softmax loses digits: x - max inexact (offsets up to 7e6, spreads
    whose exp(x - max) reaches the underflow), dominant logits (log_softmax's -log(1 + tiny)),
    a repeated maximum, subnormal outputs, -inf logits."""
    rng = np.random.default_rng(12)
    rows = []
    for offset in (0.0, 1e3, -1e5, 7e6):
        rows += [offset + scale * rng.standard_normal(500) for scale in (1.0, 10.0, 30.0)]
        rows.append(offset - rng.uniform(0, 112, 500))
    for top in (20.0, 40.0, 60.0, 85.0):
        r = rng.standard_normal(500)
        r[7] = top
        rows.append(r)
    r = rng.standard_normal(500) * 3
    r[[3, 99, 400]] = 25.0
    rows.append(r)
    r = rng.standard_normal(500) * 5
    r[::50] = -np.inf
    rows.append(r)
    return np.array(rows).astype(np.float32)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_numba_float32_softmax_on_hard_rows(name):
    """numba's float32 path (float32 arithmetic around float64 sums) within the softmax bound
    everywhere on rows built to break it, forward and fused; backward as torch's float64."""
    x = _hard_float32_rows()
    dy = np.random.default_rng(13).standard_normal(x.shape).astype(np.float32)
    act = A.get(name, backend="numba")
    y, dx = act.forward_backward(x, dy)
    np.testing.assert_array_equal(y, act.forward(x))
    ref = _softmax_f64(x, name == "log_softmax")
    err = accuracy.ulp_error(y, ref, np.zeros(ref.shape), "float32")
    assert err.max() <= accuracy.SOFTMAX_BOUNDS["float32"], (err.max(), np.argmax(err.max(axis=1)))
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    act.torch_fn()(tx).backward(torch.from_numpy(dy.astype(np.float64)))
    g = tx.grad.numpy()
    # dx = p (dy - Σ dy p) or dy - p Σ dy (p = softmax): a rounding of dy, p and the sum
    # costs 2^-24 of the terms' size; 4 of those, and subnormal spacings where p underflows
    # (torch's float32 backward: 66 on the softmax rows)
    p = _softmax_f64(x, False)
    ady = np.abs(dy.astype(np.float64))
    if name == "softmax":
        terms = p * (ady + (ady * p).sum(axis=1, keepdims=True))
    else:
        terms = ady + p * ady.sum(axis=1, keepdims=True)
    floor = 2.0**-149 * (1 + ady + (ady * p).sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = (np.abs(dx - g) - floor) / (2.0**-24 * terms)
    assert np.nanmax(excess) <= 4, np.unravel_index(np.nanargmax(excess), excess.shape)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_numba_float32_softmax_special_rows(name):
    """Rows with NaN, ±inf, ±0 and huge logits: the float32 path gives the float64 path's
    NaNs and infinities (in float32) and its finite values to the float32 rounding; rows of one logit
    give exactly 1 (0 for log_softmax) and a zero gradient."""
    x64 = np.array([[np.nan, 1, 2], [np.inf, 1, 2], [np.inf, np.inf, 1],
                    [-np.inf, -np.inf, -np.inf], [-np.inf, 0, 1], [1, 1, 1], [0.0, -0.0, 5.0],
                    [3e38, -3e38, 1], [-3e38, -3e38, -3.1e38]])
    dy64 = np.random.default_rng(14).standard_normal(x64.shape)
    act = A.get(name, backend="numba")
    y, dx = act.forward_backward(x64.astype(np.float32), dy64.astype(np.float32))
    y64, dx64 = act.forward_backward(x64.astype(np.float32).astype(np.float64),
                                     dy64.astype(np.float32).astype(np.float64))
    for got, want64 in ((y, y64), (dx, dx64)):
        with np.errstate(over="ignore"):
            want = want64.astype(np.float32)  # -6e38 is -inf in float32
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        fin = np.isfinite(want)
        np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
        np.testing.assert_allclose(got[fin], want[fin], rtol=3e-7, atol=1e-6)
    one = np.array([[2.5], [-1e30], [0.0]], np.float32)
    y1, dx1 = act.forward_backward(one, np.ones_like(one))
    np.testing.assert_array_equal(y1, np.zeros_like(one) if name == "log_softmax" else 1.0)
    np.testing.assert_array_equal(dx1, 0.0)


def test_losses_are_quiet_where_torch_is_and_pass_other_warnings_on(monkeypatch):
    """entropy at p = 0 (log 0 in its gradient) warns nothing, as torch's xlogy does not; the
    torch twin of kl_div's 'mean' hides torch's own advice about 'batchmean' (the reference
    mirrors 'mean' on purpose) and nothing else."""
    import warnings

    p = np.array([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v, g = L.get("entropy").value(p), L.get("entropy").grad(p)
        assert np.isfinite(v)
        assert np.isinf(g[0, 0])  # -(log 0 + 1) = +inf, silently
        x = torch.log_softmax(torch.tensor([[0.1, 0.2, 0.7]]), -1)
        t = torch.tensor([[0.2, 0.3, 0.5]])
        L.get("kl_div").torch_value(x, t, reduction="mean")  # torch warns here by itself
    import torch.nn.functional as F

    real = F.kl_div

    def noisy(*args, **kwargs):
        warnings.warn("something else", UserWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "kl_div", noisy)
    with pytest.warns(UserWarning, match="something else"):
        L.get("kl_div").torch_value(x, t, reduction="mean")
