"""gradstats.run's inputs and targets (the documented distributions, seen by the pass itself),
its argument errors, and fixed_point's activation parameters against a closed form."""

import math

import numpy as np
import pytest

from suite import mlp
from suite.studies import gradstats as G


def _spied(monkeypatch, *args, **kw):
    """``G.run(*args, **kw)``'s frame, and what it handed to the pass (net, x, target, loss,
    keywords) and got back from it (the real pass still runs)."""
    seen = {}
    real = {"run": mlp.run, "torch_gradients": mlp.torch_gradients}

    def spy(name):
        def f(net, x, target, loss, *args_, **kwargs):
            out = real[name](net, x, target, loss, *args_, **kwargs)
            seen.update(net=net, x=x, target=target, loss=loss, kwargs=kwargs, passed=out,
                        via=name)
            return out
        return f

    monkeypatch.setattr(G.mlp, "run", spy("run"))
    monkeypatch.setattr(G.mlp, "torch_gradients", spy("torch_gradients"))
    return G.run(*args, **kw), seen


def _captured(monkeypatch, backend, **kw):
    """(x, target, loss) that run() hands to the pass."""
    _, seen = _spied(monkeypatch, "tanh", "he_normal", 2, 4, 4000, backend=backend,
                     in_features=1, **kw)
    return seen["x"], seen["target"], seen["loss"]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_uniform_inputs_have_unit_variance_within_sqrt3(monkeypatch, backend):
    """U(-√3, √3): variance 1, every |x| <= √3, both ends reached (4000 samples: the chance
    that none falls within 0.05 of an end is (1 - 0.05/(2√3))^4000 < 1e-25)."""
    x, _, _ = _captured(monkeypatch, backend, input_dist="uniform")
    s3 = math.sqrt(3)
    assert x.shape == (4000, 1)
    assert np.all(np.abs(x) <= s3)
    assert x.min() < -s3 + 0.05
    assert x.max() > s3 - 0.05
    assert np.mean(x * x) == pytest.approx(1.0, abs=0.1)
    x, _, _ = _captured(monkeypatch, backend, input_dist="normal")
    assert np.abs(x).max() > s3           # a normal sample of 4000 exceeds √3 ~ 330 times
    assert np.mean(x * x) == pytest.approx(1.0, abs=0.1)


def test_targets_per_loss(monkeypatch):
    """mse: real targets of the output's shape; a classification loss: class indices in
    [0, out_features), one per sample, every class present."""
    _, t, loss = _captured(monkeypatch, "numpy")
    assert loss == "mse"
    assert t.shape == (4000, 10)
    assert t.dtype == np.float64
    _, t, loss = _captured(monkeypatch, "numpy", loss="cross_entropy", out_features=7)
    assert loss == "cross_entropy"
    assert t.shape == (4000,)
    assert t.dtype.kind == "i"
    assert set(np.unique(t)) == set(range(7))


def test_run_argument_errors_name_the_value():
    with pytest.raises(ValueError, match=r"^unknown backend 'jax'; expected numpy, numba or "
                                         r"torch$"):
        G.run("tanh", "he_normal", 2, 4, 4, backend="jax")
    with pytest.raises(ValueError, match=r"^input_dist='cauchy'; expected 'normal' or "
                                         r"'uniform'$"):
        G.run("tanh", "he_normal", 2, 4, 4, input_dist="cauchy")
    with pytest.raises(ValueError, match=r"^depth=1; need at least 2 weight layers"):
        G.run("tanh", "he_normal", 1, 4, 4)


def test_fixed_point_passes_the_activation_parameters():
    """Leaky ReLU with slope a: E[f(√q u)²] = q (1 + a²)/2, so each iteration multiplies q by
    σ_w² (1 + a²)/2: 3 iterations from 1 with σ_w² = 2, a = 0.5 give 1.25³."""
    assert G.fixed_point("leaky_relu", 2.0, iters=3, negative_slope=0.5) == pytest.approx(
        1.25**3, rel=1e-8)
    assert G.fixed_point("leaky_relu", 2.0, iters=3) == pytest.approx(1.0001**3, rel=1e-8)


def test_run_passes_the_activation_parameters_to_the_network():
    """leaky_relu with slope 1 is the identity: each hidden layer's activation statistics
    are its pre-activation's (with the default slope 0.01 they are not)."""
    f = G.run("leaky_relu", "he_normal", 3, 8, 16, backend="numpy", negative_slope=1.0)
    hidden = f[f.layer < 3]
    np.testing.assert_allclose(hidden["act_mean"], hidden["preact_mean"], rtol=1e-12)
    np.testing.assert_allclose(hidden["act_std"], hidden["preact_std"], rtol=1e-12)
    d = G.run("leaky_relu", "he_normal", 3, 8, 16, backend="numpy")
    assert not np.allclose(d[d.layer < 3]["act_std"], d[d.layer < 3]["preact_std"])


# ---- what run() hands to the pass, and what it reads back ------------------------------------

_SMALL = ("tanh", "xavier_normal", 3, 6, 16)   # activation, init, depth, width, batch


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_the_pass_runs_in_the_requested_dtype_and_backend(monkeypatch, backend, loss):
    """float32: weights, biases, inputs and MSE targets reach the pass in float32 (class
    targets stay integers), on the backend asked for."""
    _, seen = _spied(monkeypatch, *_SMALL, backend=backend, loss=loss, dtype="float32")
    assert seen["via"] == "run"
    net = seen["net"]
    assert net.backend == backend
    assert {w.dtype for w in net.weights} == {np.dtype(np.float32)}
    assert {b.dtype for b in net.biases} == {np.dtype(np.float32)}
    assert seen["x"].dtype == np.float32
    assert seen["target"].dtype == (np.float32 if loss == "mse" else np.int64)


def test_the_torch_pass_gets_the_requested_dtype(monkeypatch):
    import torch

    for dtype in ("float32", "float64"):
        _, seen = _spied(monkeypatch, *_SMALL, backend="torch", dtype=dtype)
        assert seen["via"] == "torch_gradients"
        assert seen["kwargs"]["dtype"] is getattr(torch, dtype)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_every_row_reads_its_own_layer_of_the_pass(monkeypatch, backend):
    """Gradient norms, pre-activation mean and std per layer are those of the pass's arrays of
    that layer, computed in float64 (the float32 arrays are widened first)."""
    frame, seen = _spied(monkeypatch, *_SMALL, backend=backend, dtype="float32")
    p = seen["passed"]
    assert frame.columns.tolist()[:16] == [
        "activation", "init", "depth", "width", "batch", "seed", "backend", "loss", "dtype",
        "layer", "units", "preact_grad_norm", "weight_grad_norm", "preact_mean", "preact_std",
        "act_mean"]
    row = frame.iloc[0]
    assert (row["init"], row["loss"], row["dtype"]) == ("xavier_normal", "mse", "float32")
    for i, r in frame.iterrows():
        z = np.asarray(p.z[i], dtype=np.float64)
        assert r["layer"] == i + 1
        assert r["weight_grad_norm"] == np.linalg.norm(np.asarray(p.grad_w[i], np.float64))
        assert r["preact_grad_norm"] == np.linalg.norm(np.asarray(p.delta[i], np.float64))
        assert r["preact_mean"] == float(z.mean())
        assert r["preact_std"] == float(z.std())


def test_a_non_elementwise_activation_gets_no_mean_field_columns():
    """softmax as the hidden activation: measured columns are filled, the ones that need f'(z)
    (saturation, the empirical and predicted factors, q_predicted) are NaN."""
    frame = G.run("softmax", "xavier_normal", 3, 6, 16, backend="numpy")
    hidden = frame[frame["layer"] < 3]
    for col in ("act_mean", "act_std", "dead_frac", "measured_factor"):
        assert hidden[col].notna().all(), col
    for col in ("saturated_frac", "empirical_factor", "predicted_factor", "q_predicted"):
        assert hidden[col].isna().all(), col


def test_saturation_threshold_is_strictly_below_one_percent_of_the_max_derivative():
    """leaky_relu with slope 0.01: f' is 0.01 = 1 % of its maximum on the negative side, which
    is not below 1 %: nothing saturates, although half the units are negative."""
    frame = G.run("leaky_relu", "he_normal", 3, 32, 64, backend="numpy", negative_slope=0.01)
    hidden = frame[frame["layer"] < 3]
    assert (hidden["saturated_frac"] == 0.0).all()
    assert (hidden["act_mean"] > 0).all()


def test_a_callables_saturation_uses_its_own_max_derivative():
    """4·tanh: f' = 4 sech², max 4, so |f'| < 0.04 where sech² < 0.01 — the same units as
    tanh's own threshold at layer 1 (same pre-activations); relu's max derivative 1 would
    count only sech² < 0.0025."""
    import torch

    kw = {"init": "normal_1", "depth": 2, "width": 64, "batch": 64, "backend": "torch"}
    tanh = G.run("tanh", **kw)
    scaled = G.run(lambda t: 4.0 * torch.tanh(t), **kw)
    assert tanh["saturated_frac"].iloc[0] > 0.05
    assert scaled["saturated_frac"].iloc[0] == tanh["saturated_frac"].iloc[0]


def test_ratio_of_norms():
    assert G._ratio(3.0, 2.0) == 1.5
    assert G._ratio(0.5, 0.0) == math.inf   # a gradient that reappears from nothing
    assert G._ratio(2.0, 0.0) == math.inf
    assert math.isnan(G._ratio(0.0, 0.0))


def test_activation_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"^softmax is not elementwise; mean-field theory here "
                                         r"needs f'\(z\)$"):
        G.mean_field("softmax", "he_normal", [4, 4, 4])
    with pytest.raises(TypeError, match=r"^parameters \['alpha'\] go with a built-in activation "
                                        r"name; bind them into the callable instead$"):
        G.mean_field(lambda t: t, "he_normal", [4, 4, 4], alpha=1.0)


def test_mean_field_relu_xavier_closed_form():
    """ReLU, Xavier (Var W = 2/(n_in + n_out)), unequal widths and input second moment m:
    q_1 = n_0 σ_1² m, χ_l = n_l σ_{l+1}² / 2 and q_{l+1} = n_l σ_{l+1}² q_l / 2, with
    E[relu(√q u)²] = q/2 and E[relu'(√q u)²] = 1/2."""
    widths, m = [3, 5, 7, 2], 4.0
    mf = G.mean_field("relu", "xavier_normal", widths, m)
    q = widths[0] * 2 / (widths[0] + widths[1]) * m
    for layer in (1, 2):
        s2 = widths[layer] * 2 / (widths[layer] + widths[layer + 1])
        row = mf[mf["layer"] == layer].iloc[0]
        assert row["q"] == pytest.approx(q, rel=1e-6)
        assert row["chi"] == pytest.approx(s2 / 2, rel=1e-6)
        q = s2 * q / 2


def test_mean_field_passes_the_activation_parameters():
    """leaky_relu(a): E[f²] = q (1 + a²)/2 and E[f'²] = (1 + a²)/2, both in run()'s
    q_predicted and predicted_factor (He: σ² n = 2)."""
    a = 0.5
    mf = G.mean_field("leaky_relu", "he_normal", [4, 4, 4, 4], negative_slope=a)
    assert mf["chi"].tolist() == pytest.approx([1 + a * a] * 2, rel=1e-6)
    frame = G.run("leaky_relu", "he_normal", 3, 4, 8, backend="numpy", in_features=4,
                  negative_slope=a)
    assert frame["q_predicted"].iloc[1] == pytest.approx(2.0 * (1 + a * a), rel=1e-6)
    assert frame["predicted_factor"].iloc[0] == pytest.approx(math.sqrt(1 + a * a), rel=1e-6)


def test_gaussian_expectation_of_a_branch_that_overflows_is_quiet():
    """np.where evaluates both branches: the discarded one overflows for large q without a
    warning, and the result is the kept branch's integral (E|z| = √(2q/π))."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = G.gaussian_expectation(lambda z: np.where(np.abs(z) < 1e9, np.abs(z), np.exp(z)), 1e4)
    assert got == pytest.approx(math.sqrt(2e4 / math.pi), rel=1e-6)
