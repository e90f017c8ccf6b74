"""gradstats.run's inputs and targets (the documented distributions, seen by the pass itself),
its argument errors, and fixed_point's activation parameters against a closed form."""

import math

import numpy as np
import pytest

from suite import mlp
from suite.studies import gradstats as G


def _captured(monkeypatch, backend, **kw):
    """(x, target) that run() hands to the pass (the real pass still runs)."""
    seen = {}
    real = {"run": mlp.run, "torch_gradients": mlp.torch_gradients}

    def spy(name):
        def f(net, x, target, loss, *args, **kwargs):
            seen.update(x=x, target=target, loss=loss)
            return real[name](net, x, target, loss, *args, **kwargs)
        return f

    monkeypatch.setattr(G.mlp, "run", spy("run"))
    monkeypatch.setattr(G.mlp, "torch_gradients", spy("torch_gradients"))
    G.run("tanh", "he_normal", 2, 4, 4000, backend=backend, in_features=1, **kw)
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
