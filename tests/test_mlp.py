"""The hand-written backprop MLP equals torch autograd, layer by layer."""

import numpy as np
import pytest

from suite import activations, mlp


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("activation", activations.NAMES)
def test_delta_rule_equals_autograd(activation, backend):
    rng = np.random.default_rng(0)
    for depth in range(1, 11):
        widths = [5] + [int(rng.integers(3, 9)) for _ in range(depth - 1)] + [4]
        ws, bs = mlp.init_weights(widths, "xavier_normal", rng)
        bs = [rng.standard_normal(b.shape) * 0.1 for b in bs]
        net = mlp.MLP(ws, bs, activation, backend=backend)
        x = rng.standard_normal((6, 5))
        for loss, target in (("mse", rng.standard_normal((6, 4))),
                             ("cross_entropy", rng.integers(0, 4, 6))):
            ours = mlp.run(net, x, target, loss)
            ref = mlp.torch_gradients(net, x, target, loss)
            np.testing.assert_allclose(ours.loss, ref.loss, rtol=1e-13)
            for layer in range(depth):
                for a, b, what in ((ours.delta, ref.delta, "delta"),
                                   (ours.grad_w, ref.grad_w, "grad_w"),
                                   (ours.grad_b, ref.grad_b, "grad_b")):
                    scale = np.abs(b[layer]).max() + 1e-300
                    err = np.abs(a[layer] - b[layer]).max() / scale
                    assert err <= 1e-12, (activation, depth, loss, layer, what, err)


def test_mlp_errors():
    rng = np.random.default_rng(0)
    ws, bs = mlp.init_weights([3, 4, 2], "he_normal", rng)
    with pytest.raises(ValueError, match="layer 2 takes 5 inputs but layer 1 has 4 outputs"):
        mlp.MLP([ws[0], rng.standard_normal((2, 5))], bs)
    with pytest.raises(ValueError, match=r"unknown initialisation 'he'.*he_normal"):
        mlp.init_weights([3, 4], "he", rng)
    net = mlp.MLP(ws, bs, "relu")
    with pytest.raises(ValueError, match=r"input has shape \(2, 4\); expected \(batch, 3\)"):
        mlp.forward(net, np.zeros((2, 4)))


@pytest.mark.parametrize("init", list(mlp.INITS))
def test_init_variances(init):
    rng = np.random.default_rng(0)
    w = mlp.INITS[init](400, 300, rng)
    assert w.shape == (300, 400)
    np.testing.assert_allclose(w.var(), mlp.weight_variance(init, 400, 300), rtol=0.03)
