"""Derived numbers against an independent truth: closed forms, torch's own signatures and
values, constructed networks with known answers, relative checks in the tails.

Each test here guards against a one-line mistake that the formula-level tests elsewhere let
through (a default that differs from torch's, a loss reduction dividing by the wrong count, a
softplus that loses its tail to cancellation, a mean-field map without σ_w², a dead-unit count
over the wrong axis).
"""

import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite import activations as A
from suite import losses as L
from suite import mlp, optim
from suite.studies import gradstats as G

BACKENDS = ["numpy", "numba", "torch"]


def _conv(backend, a):
    return torch.from_numpy(np.array(a, copy=True)) if backend == "torch" else np.array(a)


# ---- defaults against torch's own signatures --------------------------------------------

def _torch_default(fn, name):
    return inspect.signature(fn).parameters[name].default


NN_MODULES = {"leaky_relu": "LeakyReLU", "elu": "ELU", "softplus": "Softplus", "gelu": "GELU",
              "softmax": "Softmax", "log_softmax": "LogSoftmax", "relu": "ReLU",
              "sigmoid": "Sigmoid", "tanh": "Tanh", "selu": "SELU", "silu": "SiLU"}


def _torch_activation_defaults(spec):
    """torch's defaults for an activation: torch.nn.functional's signature where it has one
    (softplus is a builtin without), and the torch.nn module's, which must agree."""
    out = {}
    fn = getattr(F, spec.torch_name, None) or getattr(torch, spec.torch_name)
    try:
        params = inspect.signature(fn).parameters
        out["functional"] = {k: p.default for k, p in params.items()
                             if p.default is not inspect.Parameter.empty and k != "inplace"}
    except ValueError:
        pass
    params = inspect.signature(getattr(torch.nn, NN_MODULES[spec.name]).__init__).parameters
    out["module"] = {k: p.default for k, p in params.items()
                     if p.default is not inspect.Parameter.empty and k != "inplace"}
    return out


@pytest.mark.parametrize("name", A.NAMES)
def test_activation_defaults_are_torchs(name):
    """Both our function and torch's get our defaults in the autograd tests, so only torch's
    own signatures can say whether a default (leaky_relu's slope, softplus' threshold) is
    right. Parameters torch has and gradsuite lacks fail too."""
    spec = A.ACTIVATIONS[name]
    for where, theirs_all in _torch_activation_defaults(spec).items():
        extra = {k for k in theirs_all if k not in spec.defaults and k not in (
            "_stacklevel", "dtype")}
        assert not extra, f"{name}: torch's {where} has {extra}"
        for key, ours in spec.defaults.items():
            theirs = theirs_all[key]
            if key == "dim":
                # torch's None picks the last axis for 1-D and 2-D inputs (a deprecated
                # implicit choice); gradsuite says -1 explicitly
                assert theirs is None
                assert ours == -1
                continue
            assert ours == theirs, f"{name}: default {key}={ours!r}, torch's {where}: {theirs!r}"
            assert isinstance(ours, type(theirs)) or isinstance(theirs, type(ours))
    # the spec's defaults are what get() hands the formulas
    assert A.get(name).params == dict(spec.defaults)


@pytest.mark.parametrize("name", L.NAMES)
def test_loss_defaults_are_torchs(name):
    spec = L.LOSSES[name]
    if name == "entropy":  # not a torch.nn.functional loss
        assert spec.defaults == {}
        return
    fn = getattr(F, {"mse": "mse_loss"}.get(spec.name, spec.name))
    for key, ours in spec.defaults.items():
        assert ours == _torch_default(fn, key), f"{name}: default {key}={ours!r}"
    assert _torch_default(fn, "reduction") == "mean"
    assert _torch_default(L.Loss.value, "reduction") == "mean"
    assert _torch_default(L.Loss.grad, "reduction") == "mean"


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_rule_defaults_are_torch_optims(name):
    spec = optim.get_spec(name)
    sig = inspect.signature(spec.torch_class().__init__).parameters
    for key, ours in spec.defaults.items():
        theirs = sig[key].default
        assert ours == theirs, f"{name}: default {key}={ours!r}, torch.optim says {theirs!r}"
    # every numeric hyperparameter of torch's signature is one of ours (nothing dropped)
    torch_only = {"params", "self", "foreach", "fused", "capturable", "differentiable",
                  "decoupled_weight_decay"}
    missing = [k for k in sig if k not in spec.defaults and k not in torch_only]
    assert missing == [], f"{name}: torch.optim has {missing}"


@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_max_derivative_is_the_supremum(name):
    """saturated_frac thresholds at 1 % of sup |f'|: check the constant numerically."""
    x = np.linspace(-20, 20, 400_001)
    sup = np.abs(A.get(name).derivative(x)).max()
    assert A.ACTIVATIONS[name].max_derivative == pytest.approx(sup, rel=1e-4)


# ---- relative accuracy in the tails -------------------------------------------------------

TAILS = {  # where the value is tiny and an absolute test would accept 0 or a cancellation
    "sigmoid": np.concatenate([-np.geomspace(1, 700, 60), np.geomspace(1e-300, 1e-3, 30)]),
    "softplus": np.concatenate([-np.geomspace(1, 700, 60), np.geomspace(1e-300, 1e-3, 30)]),
    "silu": np.concatenate([-np.geomspace(1, 700, 60), np.geomspace(1e-300, 1e-3, 30)]),
    "elu": np.concatenate([-np.geomspace(1e-300, 1e-3, 30), np.geomspace(1e-300, 1e-3, 30)]),
    "selu": np.concatenate([-np.geomspace(1e-300, 1e-3, 30), np.geomspace(1e-300, 1e-3, 30)]),
    "tanh": np.concatenate([-np.geomspace(1e-300, 1e-3, 30), np.geomspace(1e-300, 1e-3, 30)]),
    # (not gelu's negative tail: torch's 1 + erf(x/√2) cancels there, torch is not the truth)
    "gelu": np.concatenate([-np.geomspace(1e-300, 1e-3, 30), np.geomspace(1e-300, 1e-3, 30)]),
    "leaky_relu": -np.geomspace(1e-300, 1e3, 40),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(TAILS))
def test_tails_are_relatively_accurate(name, backend):
    """|ours - torch| <= 1e-12 |torch| where values are far below 1: a formula that cancels
    (softplus as log(1 + exp(x)), sigmoid as 1 - 1/(1 + exp(-x))) returns 0 or a few ulps of 1
    there, which an absolute tolerance accepts."""
    x = TAILS[name]
    act = A.get(name, backend=backend)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = act.torch_fn()(tx)
    ty.backward(torch.ones_like(tx))
    for what, ours, ref in (("forward", act.forward(_conv(backend, x)), ty.detach().numpy()),
                            ("derivative", act.derivative(_conv(backend, x)), tx.grad.numpy())):
        ours = np.asarray(ours)
        assert np.all(ref != 0) or what == "derivative"
        err = np.abs(ours - ref)
        bad = ~(err <= 1e-12 * np.abs(ref))
        assert not bad.any(), f"{name} {what} at x={x[bad][:3]}: {ours[bad][:3]} vs {ref[bad][:3]}"


# ---- every reduction of every loss, against torch ----------------------------------------

def _cases():
    rng = np.random.default_rng(5)
    n, c = 6, 4
    x = rng.standard_normal((n, c)) * 2
    probs = rng.dirichlet(np.ones(c), n)
    idx = rng.integers(0, c, n)
    idx[1] = -100
    return [
        ("mse", {}, x, rng.standard_normal((n, c))),
        ("cross_entropy", {"label_smoothing": 0.1}, x, idx),
        ("cross_entropy", {}, x, probs),
        ("cross_entropy", {}, x[0], idx[0]),
        ("nll", {}, np.log(probs), idx),
        ("binary_cross_entropy", {}, rng.uniform(0.01, 0.99, (n, c)), rng.uniform(0, 1, (n, c))),
        ("binary_cross_entropy_with_logits", {}, x, rng.uniform(0, 1, (n, c))),
        ("kl_div", {}, np.log(probs), rng.dirichlet(np.ones(c), n)),
        ("kl_div", {"log_target": True}, np.log(probs), np.log(rng.dirichlet(np.ones(c), n))),
        ("kl_div", {}, np.log(probs[0]), rng.dirichlet(np.ones(c))),            # 1-D
        ("kl_div", {}, np.log(rng.dirichlet(np.ones(c), (3, n))),             # 3-D
         rng.dirichlet(np.ones(c), (3, n))),
        ("entropy", {}, probs, None),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_reduction_of_every_loss_matches_torch(backend):
    """Value and gradient for each reduction a loss accepts (kl_div's batchmean included),
    against torch.nn.functional and autograd, relative 1e-12."""
    seen = set()
    for name, params, x, t in _cases():
        loss = L.get(name, backend=backend, **params)
        for reduction in loss.spec.reductions:
            seen.add((name, reduction))
            tt = None if t is None else _conv(backend, np.asarray(t))
            v = np.asarray(loss.value(_conv(backend, x), tt, reduction))
            g = np.asarray(loss.grad(_conv(backend, x), tt, reduction))
            tx = torch.from_numpy(np.array(x)).requires_grad_(True)
            ref_t = None if t is None else torch.from_numpy(np.asarray(t))
            tv = loss.torch_value(tx, ref_t, reduction)
            tv.sum().backward()
            what = f"{name}{params} ndim={np.ndim(x)} reduction={reduction}"
            assert v.shape == tuple(tv.shape), what
            np.testing.assert_allclose(v, tv.detach().numpy(), rtol=1e-12, atol=0, err_msg=what)
            np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-12, atol=1e-17, err_msg=what)
    assert ("kl_div", "batchmean") in seen
    assert {n for n, _ in seen} == set(L.NAMES)


def test_batchmean_divides_by_the_batch_size_by_hand():
    """KL(t || p) summed over classes, averaged over the batch: by hand for two rows."""
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    t = np.array([[0.25, 0.25, 0.5], [0.3, 0.3, 0.4]])
    by_hand = np.sum(t * np.log(t / p)) / 2
    kl = L.get("kl_div")
    assert kl.value(np.log(p), t, "batchmean") == pytest.approx(by_hand, rel=1e-14)
    assert kl.value(np.log(p), t, "mean") == pytest.approx(np.sum(t * np.log(t / p)) / 6,
                                                           rel=1e-14)
    np.testing.assert_allclose(kl.grad(np.log(p), t, "batchmean"), -t / 2, rtol=1e-15)


# ---- gradient statistics: closed forms and constructed networks ---------------------------

def test_relu_he_keeps_q_at_two_in_every_layer():
    """He: n Var(W) = 2, E[relu(√q u)²] = q/2, unit input second moment: q_l = 2 for all l,
    χ = 2 · ½ = 1."""
    mf = G.mean_field("relu", "he_normal", [64, *([128] * 12), 10])
    np.testing.assert_allclose(mf["q"], 2.0, rtol=1e-9)
    np.testing.assert_allclose(mf["chi"], 1.0, rtol=1e-9)
    # Xavier with tanh: q_1 = n Var(W) = 2 n_in / (n_in + n_out) = 1 for equal widths, then
    # q_{l+1} = E[tanh(√q u)²] < q: strictly decreasing
    mt = G.mean_field("tanh", "xavier_normal", [128] * 8)
    assert mt["q"].iloc[0] == pytest.approx(1.0, rel=1e-12)
    assert np.all(np.diff(mt["q"]) < 0)
    # linear-network check of σ_w²: a normal_1 init (Var W = 1) with width n multiplies q by n
    # per layer for the identity-like relu on the positive half: q_2 = n · q_1 / 2
    mr = G.mean_field("relu", "normal_1", [16, 16, 16, 10])
    assert mr["q"].iloc[0] == pytest.approx(16.0, rel=1e-12)
    assert mr["q"].iloc[1] == pytest.approx(16 * 16.0 / 2, rel=1e-9)


def test_gaussian_expectation_closed_forms():
    for q in (0.25, 1.0, 7.0):
        assert G.gaussian_expectation(lambda z: z * z, q) == pytest.approx(q, rel=1e-10)
        assert G.gaussian_expectation(lambda z: np.maximum(z, 0) ** 2, q) == pytest.approx(
            q / 2, rel=1e-10)
        # E|z| = √(2q/π)
        assert G.gaussian_expectation(np.abs, q) == pytest.approx(math.sqrt(2 * q / math.pi),
                                                                  rel=1e-10)


@pytest.mark.parametrize(("act", "init"), [("relu", "he_normal"), ("tanh", "xavier_normal")])
def test_q_predicted_is_the_measured_preactivation_variance(act, init):
    """Over 6 seeds, the measured second moment of z_l (mean over batch and units) averages to
    q_l. One network's layer-l second moment fluctuates by ~√(c·l/n) relative (the log-norm
    random walk, c ≈ 5 for ReLU, Hanin 2018); the mean over S seeds by that / √S; 4σ."""
    width, depth, seeds = 256, 6, 6
    frames = [G.run(act, init, depth, width, 128, seed=s) for s in range(seeds)]
    hidden = [f[f.layer < depth].sort_values("layer") for f in frames]
    measured = np.mean([h["preact_std"] ** 2 + h["preact_mean"] ** 2 for h in hidden], axis=0)
    predicted = hidden[0]["q_predicted"].to_numpy()
    layers = hidden[0]["layer"].to_numpy()
    tol = 4 * np.sqrt(5 * layers / width) / math.sqrt(seeds)
    rel = np.abs(measured / predicted - 1)
    assert np.all(rel < tol), (rel, tol)
    if act == "relu":
        np.testing.assert_allclose(predicted, 2.0, rtol=1e-9)


def test_dead_frac_counts_units_dead_for_the_whole_batch(monkeypatch):
    """A network whose first hidden layer has k units with bias -1e6 (dead on every sample)
    and whose second has none: dead_frac = k / width exactly, then 0."""
    width, k = 32, 5
    real = mlp.init_weights

    def with_dead_units(widths, init, rng, *a, **kw):
        ws, bs = real(widths, init, rng, *a, **kw)
        bs[0][:k] = -1e6
        bs[1][:] = 1e6  # every unit of layer 2 alive on every sample
        return ws, bs

    monkeypatch.setattr(G.mlp, "init_weights", with_dead_units)
    for backend in BACKENDS:
        df = G.run("relu", "he_normal", 4, width, 16, seed=0, backend=backend)
        assert df.loc[df.layer == 1, "dead_frac"].item() == k / width
        assert df.loc[df.layer == 2, "dead_frac"].item() == 0.0
    # a unit that is zero on some samples only is not dead
    monkeypatch.setattr(G.mlp, "init_weights", real)
    df = G.run("relu", "he_normal", 3, width, 64, seed=1)
    assert df.loc[df.layer == 1, "dead_frac"].item() == 0.0


def test_saturated_frac_by_hand(monkeypatch):
    """Bias +50 on k sigmoid units: σ'(z) ≈ e^-50 < 1 % of sup σ' = 1/4 on every sample;
    bias 5.3 on m more: σ' ≈ 0.005, above 1 % of 1/4 (not saturated, though below 0.01)."""
    width, k, m, batch = 40, 7, 5, 16
    real = mlp.init_weights

    def saturate(widths, init, rng, *a, **kw):
        ws, bs = real(widths, init, rng, *a, **kw)
        ws[0] *= 1e-3  # the other units sit near z = 0, where σ' = 1/4
        bs[0][:k] = 50.0
        bs[0][k:k + m] = 5.3
        return ws, bs

    monkeypatch.setattr(G.mlp, "init_weights", saturate)
    df = G.run("sigmoid", "xavier_normal", 3, width, batch, seed=0)
    assert df.loc[df.layer == 1, "saturated_frac"].item() == k / width


def test_verdict_thresholds_are_one_decade():
    """vanishing below -1, exploding above +1, stable between (and at) the bounds."""
    def net(first, last):
        return {"activation": "relu", "init": "x", "depth": 2, "layer": [1, 2],
                "preact_grad_norm": [first, last], "predicted_factor": [1.0, np.nan],
                "saturated_frac": [0.0, np.nan], "dead_frac": [0.0, np.nan]}

    import pandas as pd

    cases = [(1.0, 10.5, "vanishing"), (1.0, 9.5, "stable"), (10.5, 1.0, "exploding"),
             (9.5, 1.0, "stable"), (0.0, 1.0, "vanished"), (1.0, 0.0, "exploded"),
             (1.0, 1.0, "stable"), (1.0, 10.0, "stable"), (10.0, 1.0, "stable")]
    for first, last, verdict in cases:
        s = G.summary(pd.DataFrame(net(first, last)))
        assert s["verdict"].item() == verdict, (first, last)
        if first and last:
            assert s["R_z"].item() == pytest.approx(math.log10(first / last), rel=1e-14)
    assert G.VERDICT_DECADES == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_index_edges_soft_targets_and_dtypes(backend):
    """Class 0 and C-1 next to ignored entries, probability targets that do not sum to 1
    (torch allows them: the gradient is softmax · Σq - q), and float32 in, float32 out."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 3))
    idx = np.array([0, 2, -100, 0, 1])
    soft = rng.uniform(0, 1, (5, 3))  # rows sum to anything
    for name, t in (("cross_entropy", idx), ("nll", idx), ("cross_entropy", soft)):
        loss = L.get(name, backend=backend)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tv = loss.torch_value(tx, torch.from_numpy(t), "mean")
        tv.backward()
        v = loss.value(_conv(backend, x), _conv(backend, t))
        g = loss.grad(_conv(backend, x), _conv(backend, t))
        np.testing.assert_allclose(np.asarray(v), tv.item(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(np.asarray(g), tx.grad.numpy(), rtol=1e-12, atol=1e-17,
                                   err_msg=name)
    for name, t in (("mse", x[::-1].copy()), ("cross_entropy", idx), ("kl_div", soft),
                    ("binary_cross_entropy_with_logits", soft)):
        loss = L.get(name, backend=backend)
        x32 = _conv(backend, x.astype(np.float32))
        t32 = _conv(backend, t if t.dtype.kind == "i" else t.astype(np.float32))
        for red in ("mean", "none"):
            assert np.asarray(loss.value(x32, t32, red)).dtype == np.float32, (name, red)
            assert np.asarray(loss.grad(x32, t32, red)).dtype == np.float32, (name, red)


def test_loss_error_messages_name_the_shapes():
    ce = L.get("cross_entropy")
    with pytest.raises(ValueError, match=r"target has shape \(3,\); expected \(2,\) for input "
                                         r"of shape \(2, 5\)"):
        ce.value(np.zeros((2, 5)), np.array([0, 1, 2]))
    with pytest.raises(IndexError, match=r"Target 7 is out of bounds: expected class indices "
                                         r"in \[0, 5\) or ignore_index=-100"):
        ce.value(np.zeros((3, 5)), np.array([0, 7, 9]))
    with pytest.raises(ValueError, match=r"probability target has shape \(2, 4\); expected "
                                         r"\(2, 5\)"):
        ce.value(np.zeros((2, 5)), np.full((2, 4), 0.25))
    with pytest.raises(TypeError, match="nll target must hold integer class indices"):
        L.get("nll").value(np.zeros((2, 5)), np.zeros(2))
    with pytest.raises(ValueError, match=r"kl_div: target has shape \(2, 3\) but input has "
                                         r"shape \(2, 4\)"):
        L.get("kl_div").value(np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"label_smoothing=1.5; expected a value in \[0, 1\]"):
        L.get("cross_entropy", label_smoothing=1.5)
    with pytest.raises(TypeError, match=r"kl_div: unknown parameter\(s\) smoothing; valid: "
                                        r"log_target"):
        L.get("kl_div", smoothing=0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bce_clamps_logs_at_minus_100_and_entropy_of_one_row(backend):
    """torch clamps BCE's logs at -100: p = 0 with t = 1 costs exactly 100 (and p = 1, t = 0
    too); entropy of a single distribution (1-D input) is a scalar."""
    bce = L.get("binary_cross_entropy", backend=backend)
    p, t = np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    np.testing.assert_allclose(np.asarray(bce.value(_conv(backend, p), _conv(backend, t),
                                                    "none")), [100.0, 100.0, math.log(2)],
                               rtol=1e-15)
    ent = L.get("entropy", backend=backend)
    q = np.array([0.5, 0.25, 0.25])
    v = np.asarray(ent.value(_conv(backend, q), None, "none"))
    assert v.shape == ()
    assert v == pytest.approx(1.5 * math.log(2), rel=1e-15)


@pytest.mark.parametrize("key", ["init", "depth", "width", "batch", "seed", "backend", "loss",
                                 "dtype", "activation"])
def test_summary_keeps_networks_apart(key):
    """Two networks that differ in one setting only are two rows, each with its own R_z, max
    saturated and dead fractions."""
    import pandas as pd

    base = {"activation": "relu", "init": "he_normal", "depth": 2, "width": 8, "batch": 4,
            "seed": 0, "backend": "numpy", "loss": "mse", "dtype": "float64"}
    other = {**base, key: {"depth": 3, "width": 16, "batch": 8, "seed": 1}.get(key, "other")}
    frames = []
    for net, (first, dead) in ((base, (1.0, 0.25)), (other, (100.0, 0.5))):
        frames.append(pd.DataFrame({**net, "layer": [1, 2], "preact_grad_norm": [first, 1.0],
                                    "predicted_factor": [1.0, np.nan],
                                    "saturated_frac": [dead / 2, np.nan],
                                    "dead_frac": [dead, np.nan]}))
    s = G.summary(pd.concat(frames, ignore_index=True))
    assert len(s) == 2
    assert list(s["R_z"]) == [0.0, 2.0]
    assert list(s["verdict"]) == ["stable", "exploding"]
    assert list(s["max_dead_frac"]) == [0.25, 0.5]
    assert list(s["max_saturated_frac"]) == [0.125, 0.25]
    assert list(s[key]) == [base[key], other[key]]


def test_bce_rejects_probabilities_outside_zero_one_with_torchs_message():
    message = "all elements of input should be between 0 and 1"
    with pytest.raises(RuntimeError, match=message):
        F.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([1.0]))
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=rf"^binary_cross_entropy: {message}$"):
            L.get("binary_cross_entropy", backend=backend).value(
                _conv(backend, np.array([0.5, -0.1])), _conv(backend, np.array([1.0, 0.0])))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_class_with_ignored_entries_and_zero_dim_kl_div_match_torch(backend):
    """C = 1 (the only valid class is 0) next to an ignored entry, and kl_div of 0-dim
    tensors, where torch's batchmean divides by nothing: value and gradient against torch."""
    x = np.array([[0.7], [-1.2], [0.3]])
    t = np.array([0, -100, 0])
    for name in ("cross_entropy", "nll"):
        loss = L.get(name, backend=backend)
        for reduction in ("mean", "sum", "none"):
            tx = torch.tensor(x, requires_grad=True)
            tv = loss.torch_value(tx, torch.from_numpy(t), reduction)
            tv.sum().backward()
            v = np.asarray(loss.value(_conv(backend, x), _conv(backend, t), reduction))
            g = np.asarray(loss.grad(_conv(backend, x), _conv(backend, t), reduction))
            np.testing.assert_allclose(v, tv.detach().numpy(), rtol=1e-15, atol=0)
            np.testing.assert_array_equal(g, tx.grad.numpy())
    kl = L.get("kl_div", backend=backend)
    for reduction in ("batchmean", "sum", "mean", "none"):
        tx = torch.tensor(math.log(0.3), dtype=torch.float64, requires_grad=True)
        tv = kl.torch_value(tx, torch.tensor(0.6, dtype=torch.float64), reduction)
        tv.backward()
        xs, ts = _conv(backend, np.array(math.log(0.3))), _conv(backend, np.array(0.6))
        assert float(kl.value(xs, ts, reduction)) == pytest.approx(tv.item(), rel=1e-15)
        assert float(kl.grad(xs, ts, reduction)) == pytest.approx(tx.grad.item(), rel=1e-15)
        # and by hand: t (log t - x), gradient -t, no division for a 0-dim input
        assert tv.item() == pytest.approx(0.6 * (math.log(0.6) - math.log(0.3)), rel=1e-15)


def test_nll_rejects_probability_targets_by_name():
    for backend in BACKENDS:
        with pytest.raises(TypeError, match=r"^nll target must hold integer class indices$"):
            L.get("nll", backend=backend).value(_conv(backend, np.zeros((2, 3))),
                                                _conv(backend, np.zeros(2)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_index_errors_on_every_backend_and_a_single_row(backend):
    ce = L.get("cross_entropy", backend=backend)
    with pytest.raises(IndexError, match=r"^Target 7 is out of bounds: expected class indices "
                                         r"in \[0, 5\) or ignore_index=-100$"):
        ce.value(_conv(backend, np.zeros((3, 5))), _conv(backend, np.array([0, 7, -3])))
    with pytest.raises(IndexError, match=r"^Target -3 is out of bounds"):
        ce.value(_conv(backend, np.zeros((3, 5))), _conv(backend, np.array([-100, -3, 9])))
    # (C,) input: the target of one sample is 0-dim
    with pytest.raises(ValueError, match=r"^target has shape \(1,\); expected \(\) for input "
                                         r"of shape \(5,\)$"):
        ce.value(_conv(backend, np.zeros(5)), _conv(backend, np.array([1])))


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_sample_inputs_match_torch(backend):
    """(C,) input with a 0-dim class index or a (C,) probability target, every reduction,
    value and gradient against torch; nll keeps float32 in float32 as torch does."""
    x = np.array([0.3, -1.1, 2.0, 0.4])
    probs = np.array([0.1, 0.2, 0.3, 0.15])  # need not sum to 1
    cases = [("cross_entropy", {}, np.array(2)), ("cross_entropy", {"label_smoothing": 0.2},
                                                   np.array(3)),
             ("cross_entropy", {}, probs), ("nll", {}, np.array(1))]
    for name, params, t in cases:
        loss = L.get(name, backend=backend, **params)
        for reduction in ("mean", "sum", "none"):
            tx = torch.tensor(x, requires_grad=True)
            tv = loss.torch_value(tx, torch.from_numpy(t), reduction)
            tv.backward()
            v = np.asarray(loss.value(_conv(backend, x), _conv(backend, t), reduction))
            g = np.asarray(loss.grad(_conv(backend, x), _conv(backend, t), reduction))
            assert v.shape == tuple(tv.shape), (name, reduction)
            np.testing.assert_allclose(v, tv.detach().numpy(), rtol=1e-14, err_msg=name)
            np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-14, atol=1e-17,
                                       err_msg=name)
    nll = L.get("nll", backend=backend)
    x32 = _conv(backend, np.ones((3, 4), np.float32))
    t = _conv(backend, np.array([0, -100, 3]))
    for reduction in ("mean", "sum", "none"):
        assert np.asarray(nll.value(x32, t, reduction)).dtype == np.float32
        assert np.asarray(nll.grad(x32, t, reduction)).dtype == np.float32


def test_loss_input_checks_name_the_input_and_what_was_expected():
    with pytest.raises(TypeError, match=r"^input has dtype int64; the numpy backend supports "
                                        r"float32, float64$"):
        L.get("mse").value(np.zeros(2, dtype=np.int64), np.zeros(2))
    with pytest.raises(TypeError, match=r"^input is a list; the torch backend expects "
                                        r"torch.Tensor$"):
        L.get("mse", backend="torch").value([0.0], torch.zeros(1))
    for name in ("cross_entropy", "nll", "entropy"):
        with pytest.raises(ValueError, match=rf"^{name}: input has shape \(2, 2, 2\); expected "
                                             r"\(N, C\) or \(C,\)$"):
            L.get(name).value(np.full((2, 2, 2), 0.5), np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"^mse: target has dtype float32 but input has dtype "
                                         r"float64$"):
        L.get("mse").value(np.zeros(2), np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match=r"^kl_div: reduction='avg'; expected one of mean, sum, "
                                         r"none, batchmean$"):
        L.get("kl_div").value(np.zeros(2), np.zeros(2), "avg")


def test_torch_backend_builds_no_autograd_graph():
    """The torch backend computes value and gradient by formula, under no_grad: inputs that
    require grad give plain tensors, equal to torch's own autograd gradient."""
    x = torch.tensor([[0.2, -0.4, 1.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([2])
    loss = L.get("cross_entropy", backend="torch")
    v, g = loss.value(x, t), loss.grad(x, t)
    assert not v.requires_grad
    assert not g.requires_grad
    F.cross_entropy(x, t).backward()
    torch.testing.assert_close(g, x.grad, rtol=1e-15, atol=0)


def test_get_checks_names_parameters_and_label_smoothing_range():
    with pytest.raises(ValueError, match=r"^unknown loss 'hinge'; expected one of mse, "
                                         r"cross_entropy, nll, binary_cross_entropy, "
                                         r"binary_cross_entropy_with_logits, kl_div, entropy$"):
        L.get("hinge")
    with pytest.raises(ValueError, match=r"unknown backend 'jax'"):
        L.get("mse", backend="jax")
    with pytest.raises(TypeError, match=r"^mse: unknown parameter\(s\) a, b; valid: none$"):
        L.get("mse", b=1, a=2)
    with pytest.raises(TypeError, match=r"^cross_entropy: unknown parameter\(s\) eps; valid: "
                                        r"label_smoothing, ignore_index$"):
        L.get("cross_entropy", eps=0.1)
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=rf"^label_smoothing={bad}; expected a value in "
                                             r"\[0, 1\]$"):
            L.get("cross_entropy", label_smoothing=bad)
    # the ends of the range are valid, as in torch: value and gradient against torch
    x = np.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]])
    t = np.array([1, 2])
    for eps in (0.0, 1.0):
        loss = L.get("cross_entropy", label_smoothing=eps, ignore_index=1)
        assert loss.params == {"label_smoothing": eps, "ignore_index": 1}
        assert loss.backend == "numpy"
        tx = torch.tensor(x, requires_grad=True)
        tv = F.cross_entropy(tx, torch.from_numpy(t), label_smoothing=eps, ignore_index=1)
        tv.backward()
        assert loss.value(x, t) == pytest.approx(tv.item(), rel=1e-14)
        np.testing.assert_allclose(loss.grad(x, t), tx.grad.numpy(), rtol=1e-14, atol=1e-17)
    # entropy's torch value of a single distribution
    q = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    assert L.get("entropy").torch_value(q, None, "sum").item() == pytest.approx(
        1.5 * math.log(2), rel=1e-15)
    # Loss.torch_value: the loss's parameters and the default reduction 'mean' passed on
    a = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], dtype=torch.float64)
    b = torch.tensor([[-0.3, -1.2], [-0.7, -0.9]], dtype=torch.float64)
    ours = L.get("kl_div", log_target=True).torch_value(a, b)
    by_hand = float(np.mean(np.exp(b.numpy()) * (b.numpy() - a.numpy())))
    assert ours.item() == pytest.approx(by_hand, rel=1e-14)
