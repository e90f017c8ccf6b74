"""The training tasks: bundled data only, fixed splits, seeded models, the stated structure."""

import socket

import numpy as np
import pytest
import torch

from suite import tasks
from suite.tasks import catalog

SHAPES = {  # task -> (n_train, n_test, feature shape); digits 1797, breast cancer 569, 75/25
    "digits_logreg": (1347, 450, (64,)), "digits_mlp": (1347, 450, (64,)),
    "digits_cnn": (1347, 450, (1, 8, 8)), "breast_cancer_logreg": (426, 143, (30,)),
    "noisy_quadratic": (1000, 1000, (100,)), "deep_linear": (1347, 450, (64,)),
}


def test_the_six_tasks_exist_and_get_rejects_unknown_names():
    assert set(SHAPES) <= set(tasks.TASKS)
    assert tasks.get("digits_mlp") is tasks.TASKS["digits_mlp"]
    with pytest.raises(ValueError, match=r"unknown task 'mnist'.*digits_mlp"):
        tasks.get("mnist")


def test_tasks_load_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for fn in (catalog.digits, catalog.breast_cancer, catalog.quadratic_data,
               catalog.quadratic_hessian, tasks._tensors):
        fn.cache_clear()
    for name, (ntr, nte, shape) in SHAPES.items():
        d = tasks.get(name).data()
        assert tuple(d.x_train.shape) == (ntr, *shape), name
        assert tuple(d.x_test.shape) == (nte, *shape), name
        assert d.x_train.dtype == torch.float32
        assert torch.isfinite(d.x_train).all()


def test_split_is_fixed_stratified_and_standardised_on_train_only():
    from sklearn.datasets import load_digits

    t = tasks.get("digits_mlp")
    d = t.data(torch.float64)
    x = d.x_train.numpy()
    # standardised with the training part's statistics: mean 0, std 1 where the pixel varies
    varies = x.std(axis=0) > 0
    assert np.allclose(x.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(x.std(axis=0)[varies], 1, atol=1e-12)
    assert not np.allclose(d.x_test.numpy().mean(axis=0), 0, atol=1e-3)
    # every class in both parts, in the data set's proportions (stratified)
    y = load_digits().target
    full = np.bincount(y) / len(y)
    assert np.abs(np.bincount(d.y_train.numpy()) / len(d.y_train) - full).max() < 0.01
    # the same split every time (a different split seed would change it)
    tasks._tensors.cache_clear()
    catalog.digits.cache_clear()
    again = t.data(torch.float64)
    assert torch.equal(again.y_test, d.y_test)


def test_breast_cancer_features_are_raw_and_ill_conditioned():
    d = tasks.get("breast_cancer_logreg").data(torch.float64)
    x = d.x_train.numpy()
    assert x.max() > 1000  # raw areas, not standardised
    assert x[:, x.std(axis=0).argmin()].std() < 0.01
    a = np.hstack([x, np.ones((len(x), 1))])
    z = (x - x.mean(0)) / x.std(0)
    b = np.hstack([z, np.ones((len(z), 1))])
    # condition number of the logistic Hessian's data factor, raw vs standardised features
    assert np.linalg.cond(a.T @ a) > 1e10
    assert np.linalg.cond(b.T @ b) < 1e6


def test_noisy_quadratic_is_deepobs_quadratic_deep():
    h = catalog.quadratic_hessian()
    lam = np.linalg.eigvalsh(h)
    assert ((lam > 0) & (lam < 1)).sum() == 90
    assert ((lam > 30) & (lam < 60)).sum() == 10
    off = h - np.diag(np.diag(h))
    assert np.abs(off).max() > 1  # rotated: not diagonal in the parameter basis
    t = tasks.get("noisy_quadratic")
    model = t.model(0, dtype=torch.float64)
    assert torch.equal(model.theta.detach(), torch.ones(100, dtype=torch.float64))
    d = t.data(torch.float64)
    # the training loss at its minimiser (the mean of the data) equals the closed form
    theta, fmin = catalog.quadratic_minimum()
    with torch.no_grad():
        model.theta.copy_(torch.as_tensor(theta))
        at_min = float(t.loss(model(d.x_train), d.y_train))
    x = d.x_train.numpy()
    centred = x - x.mean(0)
    expected = 0.5 * np.trace(h @ (centred.T @ centred) / len(x))
    assert at_min == pytest.approx(expected, rel=1e-10)
    assert fmin == pytest.approx(expected, rel=1e-10)
    assert fmin < t.target_loss < fmin + 5


@pytest.mark.parametrize("name", list(SHAPES))
def test_model_is_seeded_and_leaves_the_global_rng_alone(name):
    t = tasks.get(name)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = [p.detach().clone() for p in t.model(0).parameters()]
    b = [p.detach().clone() for p in t.model(0).parameters()]
    assert torch.equal(torch.rand(3), before)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    if name != "noisy_quadratic":  # θ starts at 1 whatever the seed, as in DeepOBS
        c = [p.detach() for p in t.model(1).parameters()]
        assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_accuracy_and_losses_against_hand_values():
    t = tasks.get("digits_logreg")
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    assert t.accuracy(out, y) == 0.5
    expected = -(np.log(np.exp(2) / (np.exp(2) + np.e + 1)) + np.log(np.e / (1 + np.exp(3)
                                                                             + np.e))) / 2
    assert float(t.loss(out, y)) == pytest.approx(expected, rel=1e-6)
    b = tasks.get("breast_cancer_logreg")
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    yb = torch.tensor([1.0, 1.0, 0.0])
    assert b.accuracy(logits, yb) == pytest.approx(1 / 3)
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5])))
    bce = -np.mean([np.log(p[0]), np.log(p[1]), np.log(1 - p[2])])
    assert float(b.loss(logits, yb)) == pytest.approx(bce, rel=1e-6)
    assert np.isnan(tasks.get("noisy_quadratic").accuracy(out, y))


def test_task_rejects_bad_budget():
    t = tasks.get("digits_logreg")
    with pytest.raises(ValueError, match=r"steps=0"):
        tasks.Task(**{**t.__dict__, "name": "x", "steps": 0})
    with pytest.raises(ValueError, match=r"kind='ranking'"):
        tasks.Task(**{**t.__dict__, "name": "x", "kind": "ranking"})
