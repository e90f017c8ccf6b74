"""Gradient statistics at initialisation against mean-field theory.

Tolerances on R_z come from the theory of the fluctuations: ‖δ_l‖² sums n·B squared entries,
and its per-layer relative fluctuation is about √(2/n); over L layers the log-norms random-walk,
so std(R_z) ≈ (1/(2 ln 10))·√(2L/n) decades. We allow 4 of those (Hanin 2018: the variance grows
with β = L/n, so the tolerance widens with depth and narrows with width).
"""

import math

import numpy as np
import pytest

from suite.studies import gradstats as G


def rz_tol(depth, width):
    return 4 * (0.5 / math.log(10)) * math.sqrt(2 * depth / width)


@pytest.mark.parametrize("depth", [10, 50])
def test_he_relu_stays_stable(depth):
    mf = G.mean_field("relu", "he_normal", [256] * (depth + 1))
    np.testing.assert_allclose(mf["chi"], 1.0, rtol=1e-12)  # σ_w² E[relu'²] = 2 · ½
    s = G.summary(G.run("relu", "he_normal", depth, 256, 64, seed=1))
    assert s["R_z_predicted"].item() == pytest.approx(0.0, abs=1e-12)
    assert abs(s["R_z"].item()) <= rz_tol(depth, 256)
    assert s["verdict"].item() == "stable"


def test_xavier_sigmoid_vanishes_geometrically():
    depth, width = 30, 256
    df = G.run("sigmoid", "xavier_normal", depth, width, 64, seed=2)
    s = G.summary(df)
    assert s["verdict"].item() == "vanishing"
    assert abs(s["R_z"].item() - s["R_z_predicted"].item()) <= rz_tol(depth, width)
    # geometric: log-norms fall on a line whose slope is the theory's log10 χ^(1/2) at q*
    hidden = df[df.layer < depth]
    slope = np.polyfit(hidden["layer"], np.log10(hidden["preact_grad_norm"]), 1)[0]
    q_star = G.fixed_point("sigmoid", 1.0)
    chi = G.gaussian_expectation(lambda z: (G.activations.get("sigmoid").derivative(z)) ** 2,
                                 q_star)
    assert slope == pytest.approx(-0.5 * math.log10(chi), rel=0.05) or \
        slope == pytest.approx(0.5 * math.log10(chi), rel=0.05)
    assert slope > 0  # norms grow toward the output: δ vanishes toward the input


def test_selu_lecun_self_normalises():
    q_star = G.fixed_point("selu", 1.0)
    mean_star = G.gaussian_expectation(G.activations.get("selu").forward, q_star)
    assert q_star == pytest.approx(1.0, abs=1e-6)
    assert mean_star == pytest.approx(0.0, abs=1e-6)
    df = G.run("selu", "lecun_normal", 50, 256, 256, seed=0)
    hidden = df[df.layer < 50]
    # sampling error of a mean over B samples of correlated units: ~1/√B per layer; 4σ
    assert np.abs(hidden["act_mean"] - mean_star).max() < 4 / math.sqrt(256)
    assert np.abs(hidden["act_std"] - math.sqrt(q_star)).max() < 4 / math.sqrt(256)


@pytest.mark.parametrize(("act", "init"), [("tanh", "xavier_normal"), ("relu", "he_uniform"),
                                           ("gelu", "he_normal"), ("tanh", "orthogonal"),
                                           ("elu", "torch_default")])
def test_measured_and_predicted_factors_agree(act, init):
    width = 256
    df = G.run(act, init, 20, width, 64, seed=3).dropna(subset=["measured_factor"])
    # the identity with this pass's own f'(z): relative fluctuation ~ √(2/n) per layer; 4σ
    rel = np.abs(df["measured_factor"] / df["empirical_factor"] - 1)
    assert rel.max() < 4 * math.sqrt(2 / width)
    # and against the mean-field prediction (adds the q_l fluctuation of the forward pass)
    rel_pred = np.abs(df["measured_factor"] / df["predicted_factor"] - 1)
    assert rel_pred.median() < 4 * math.sqrt(2 / width)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "softplus"])
def test_backends_agree(act):
    frames = {b: G.run(act, "xavier_uniform", 6, 32, 16, seed=4, backend=b)
              for b in ("numpy", "numba", "torch")}
    ref = frames["torch"]
    for b in ("numpy", "numba"):
        for col in ("preact_grad_norm", "weight_grad_norm", "measured_factor", "act_std"):
            np.testing.assert_allclose(frames[b][col], ref[col], rtol=1e-10)


def test_underflow_is_reported_not_raised():
    df = G.run("sigmoid", "xavier_normal", 120, 64, 8, seed=0, dtype="float32")
    s = G.summary(df)
    assert s["verdict"].item() in ("vanished", "vanishing")
    assert not np.isnan(s["R_z"].item())


def test_dead_and_saturated_units():
    dead = G.run("relu", "normal_1", 5, 64, 32, seed=0, input_dist="uniform")
    assert (dead["dead_frac"].dropna() >= 0).all()
    sat = G.run("sigmoid", "normal_1", 5, 128, 32, seed=0)
    assert sat["saturated_frac"].dropna().iloc[-1] > 0.3  # large weights saturate sigmoids


def test_sweep_and_errors():
    df = G.sweep(["tanh", "relu"], ["he_normal"], [4, 6], [0, 1], width=16, batch=8)
    assert len(G.summary(df)) == 8
    with pytest.raises(ValueError, match="unknown initialisation"):
        G.run("tanh", "kaiming", 4, 8, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        G.run("tanhh", "he_normal", 4, 8, 4)
    with pytest.raises(ValueError, match="depth=1"):
        G.run("tanh", "he_normal", 1, 8, 4)


def test_callable_activation_mean_field_is_the_builtin_one():
    import torch

    for name, fn in (("tanh", torch.tanh), ("gelu", torch.nn.GELU), ("elu", torch.nn.ELU())):
        ours = G.mean_field(name, "xavier_normal", [64] * 8)
        theirs = G.mean_field(fn, "xavier_normal", [64] * 8)
        np.testing.assert_allclose(theirs["chi"], ours["chi"], rtol=1e-12)
        np.testing.assert_allclose(theirs["q"], ours["q"], rtol=1e-12)


def test_softsign_chi_against_an_independent_integral():
    import torch.nn.functional as F
    from scipy.integrate import quad

    mf = G.mean_field(F.softsign, "xavier_normal", [100, 100, 100])
    s2 = 100 * G.mlp.weight_variance("xavier_normal", 100, 100)
    q1 = s2 * 1.0  # q_1 = σ_w² E[x²]
    want = s2 * quad(lambda u: (1 + math.sqrt(q1) * abs(u)) ** -4 * math.exp(-u * u / 2)
                     / math.sqrt(2 * math.pi), -np.inf, np.inf, epsabs=1e-13)[0]
    assert mf["chi"].iloc[0] == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("init", ["xavier_normal", "he_normal"])
def test_softsign_measured_and_predicted_factors_agree(init):
    """A user's activation (softsign) through the same study: the factors agree as closely as
    the built-ins' (same 4σ bounds as test_measured_and_predicted_factors_agree)."""
    import torch

    width = 256
    df = G.run(torch.nn.functional.softsign, init, 20, width, 64, seed=3)
    assert set(df["activation"]) == {"softsign"}
    hidden = df.dropna(subset=["measured_factor"])
    rel = np.abs(hidden["measured_factor"] / hidden["empirical_factor"] - 1)
    assert rel.max() < 4 * math.sqrt(2 / width)
    rel_pred = np.abs(hidden["measured_factor"] / hidden["predicted_factor"] - 1)
    assert rel_pred.median() < 4 * math.sqrt(2 / width)
    s = G.summary(df)
    assert abs(s["R_z"].item() - s["R_z_predicted"].item()) <= rz_tol(20, width)
    assert hidden["saturated_frac"].notna().all()


def test_callable_activation_kinds_and_errors():
    import torch

    class TanhFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x)

        @staticmethod
        def backward(ctx, dy):
            (x,) = ctx.saved_tensors
            return dy / torch.cosh(x) ** 2

    a = G.run(TanhFunction, "xavier_normal", 5, 32, 8, seed=0)
    b = G.run("tanh", "xavier_normal", 5, 32, 8, seed=0)
    np.testing.assert_allclose(a["preact_grad_norm"], b["preact_grad_norm"], rtol=1e-12)
    np.testing.assert_allclose(a["predicted_factor"], b["predicted_factor"], rtol=1e-12)
    assert G.run(torch.nn.Softsign, "he_normal", 4, 16, 8)["activation"].iloc[0] == "Softsign"
    with pytest.raises(ValueError, match="torch backend only"):
        G.run(torch.tanh, "he_normal", 4, 8, 4, backend="numpy")
    with pytest.raises(TypeError, match="bind them into the callable"):
        G.run(torch.tanh, "he_normal", 4, 8, 4, alpha=1.0)
    with pytest.raises(TypeError, match="built-in name or a callable"):
        G.mean_field(3.0, "he_normal", [8, 8, 8])


def test_sweep_is_the_grid_of_runs_in_order():
    """Each cell of the sweep is run() with that cell's arguments, cells in grid order
    (activation, init, depth, seed), width, batch and backend passed through."""
    import pandas as pd

    df = G.sweep(["tanh", "relu"], ["he_normal", "xavier_uniform"], [2, 3], [0, 5], width=6,
                 batch=3, backend="numpy")
    want = pd.concat([G.run(a, i, d, 6, 3, s, "numpy") for a in ("tanh", "relu")
                      for i in ("he_normal", "xavier_uniform") for d in (2, 3) for s in (0, 5)],
                     ignore_index=True)
    pd.testing.assert_frame_equal(df, want)
    assert set(df["width"]) == {6}
    assert set(df["batch"]) == {3}
    assert set(df["backend"]) == {"numpy"}
    assert len(df) == 2 * 2 * (2 + 3) * 2


def test_fixed_point_of_a_linear_map_is_geometric():
    """ReLU: q ← σ_w² q / 2, so with σ_w² = 2·0.999 the default 2000 iterations from q0 = 1
    give 0.999^2000 (closed form); the same through a user's callable f(z) = z with
    σ_w² = 0.999; a non-elementwise built-in is refused as in mean_field."""
    assert G.fixed_point("relu", 2 * 0.999) == pytest.approx(0.999 ** 2000, rel=1e-8)
    assert G.fixed_point(lambda z: z, 0.999, q0=3.0, iters=10) == pytest.approx(
        3.0 * 0.999 ** 10, rel=1e-8)
    with pytest.raises(ValueError, match="softmax is not elementwise"):
        G.fixed_point("softmax", 1.0)


def test_sweep_defaults_and_what_it_passes_to_the_executor(monkeypatch, tmp_path, capsys):
    import suite.sweep

    df = G.sweep(["relu"], ["he_normal"], [2], [0])
    assert (df["width"].unique().tolist(), df["batch"].unique().tolist(),
            df["backend"].unique().tolist()) == ([128], [64], ["torch"])
    assert capsys.readouterr().err == ""  # no progress bar unless asked

    seen = {}
    real = suite.sweep.run_cells

    def spy(fn, cells, **kw):
        seen.update(kw)
        return real(fn, cells, **{**kw, "jobs": 1, "dask": None})

    monkeypatch.setattr(suite.sweep, "run_cells", spy)
    G.sweep(["tanh"], ["he_normal"], [2], [0, 1], width=4, batch=2, jobs=2, dask="tcp://x:1",
            progress=True, checkpoint=tmp_path)
    assert seen == {"jobs": 2, "dask": "tcp://x:1", "progress": "gradient statistics",
                    "checkpoint": tmp_path}
    assert sorted(p.name for p in tmp_path.glob("cell-*.pkl")) == ["cell-0.pkl", "cell-1.pkl"]
    assert "gradient statistics" in capsys.readouterr().err


def test_callable_activation_names_and_float64_evaluation():
    import torch

    assert G.run(torch.nn.ELU(), "he_normal", 2, 4, 2)["activation"].iloc[0] == "ELU"
    act = G.CallableActivation.wrap(torch.tanh)
    z32 = np.array([0.5, -1.25], dtype=np.float32)
    out = act.forward(z32)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.tanh(z32.astype(np.float64)))
    np.testing.assert_array_equal(act.derivative(z32),
                                  1 - np.tanh(z32.astype(np.float64)) ** 2)
    with pytest.raises(TypeError, match=r"^activation must be a built-in name or a callable on "
                                        r"tensors, got float$"):
        G.CallableActivation.wrap(3.0)


def test_elementwise_activations_are_those_with_a_derivative():
    names = G.elementwise_activations()
    assert {"relu", "tanh", "sigmoid", "gelu", "selu"} <= set(names)
    assert "softmax" not in names
    assert "log_softmax" not in names
    for name in names:
        assert G.activations.get(name).spec.derivative is not None


def test_summary_of_overflowed_and_zero_predicted_factors():
    """A NaN first norm (the backward pass overflowed) is 'exploded'; a predicted factor of 0
    (f' = 0 everywhere) gives R_z_predicted = -inf, reported, not raised."""
    import pandas as pd

    def net(first, last, factor):
        return pd.DataFrame({"activation": "x", "init": "x", "depth": 2, "layer": [1, 2],
                             "preact_grad_norm": [first, last],
                             "predicted_factor": [factor, np.nan],
                             "saturated_frac": [0.0, np.nan], "dead_frac": [0.0, np.nan]})

    s = G.summary(net(np.nan, 1.0, 1.0))
    assert s["verdict"].item() == "exploded"
    assert s["R_z"].item() == math.inf
    s = G.summary(net(1.0, 1.0, 0.0))
    assert s["R_z_predicted"].item() == -math.inf
    assert s["verdict"].item() == "stable"


def test_run_defaults_and_argument_checks():
    """Documented signature: seed 0, out_features 10; width 1 and batch 1 are valid."""
    default = G.run("tanh", "he_normal", 2, 3, 2)
    assert default["seed"].tolist() == [0, 0]
    np.testing.assert_array_equal(default["preact_grad_norm"],
                                  G.run("tanh", "he_normal", 2, 3, 2, seed=0)["preact_grad_norm"])
    assert not np.array_equal(default["preact_grad_norm"],
                              G.run("tanh", "he_normal", 2, 3, 2, seed=1)["preact_grad_norm"])
    assert default["units"].tolist() == [3, 10]  # hidden width, then out_features
    tiny = G.run("tanh", "he_normal", 2, 1, 1, backend="numpy")
    assert tiny["units"].tolist() == [1, 10]
    for width, batch in ((0, 4), (4, 0)):
        with pytest.raises(ValueError, match=rf"^width={width} and batch={batch} must be "
                                             r"positive$"):
            G.run("tanh", "he_normal", 2, width, batch)


def test_norms_are_computed_in_float64():
    """‖x‖ of a float32 array, against an exactly rounded sum of squares (math.fsum)."""
    x = np.random.default_rng(0).standard_normal(100_000).astype(np.float32) * 1e3
    want = math.sqrt(math.fsum(float(v) ** 2 for v in x))
    assert G._norm(x) == pytest.approx(want, rel=1e-14)
