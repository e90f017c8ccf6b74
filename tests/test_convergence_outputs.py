"""Every output of the convergence study, on every backend, against torch.optim's own
trajectory; the ECDF and success rates on frames whose answers are known by hand."""

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from suite import problems as P
from suite.studies import convergence as C
from tests.lean_optimizers import BetaSGD

BACKENDS = ["numpy", "torch", "numba"]
TARGETS = (1e-1, 1e-3, 1e-6)
CASES = [  # (problem, optimizer, hyper, steps): first hits spread over the run
    ("himmelblau", "adam", {"lr": 0.05}, 400),
    ("booth", "sgd", {"lr": 0.05, "momentum": 0.5}, 150),
    ("rosenbrock", "rmsprop", {"lr": 3e-2, "centered": True}, 500),
    ("beale", "adagrad", {"lr": 0.3}, 300),
]


def _starts(p):
    lo, hi = p.domain
    return np.random.default_rng(7).uniform(lo, hi, (6, p.dim)) * 0.6


def _truth(p, traj, targets):
    """Every summary column recomputed from torch.optim's iterates x_0..x_K."""
    f = np.stack([np.asarray(p.f(x)) for x in traj]) - p.f_min     # (K+1, n)
    after = f[1:]                                                  # iterates after updates
    out = {}
    for t in targets:
        hit = after < t
        out[C.target_column(t)] = np.where(hit.any(axis=0), hit.argmax(axis=0) + 1, np.nan)
    xk = traj[-1]
    d = np.linalg.norm(xk[:, None, :] - p.minimizers[None, :, :], axis=-1)
    out.update({
        "final_value": f[-1] + p.f_min, "final_gap": f[-1], "best_gap": after.min(axis=0),
        "final_grad_norm": np.linalg.norm(p.grad(xk), axis=-1),
        "minimizer_index": d.argmin(axis=1), "distance_to_minimizer": d.min(axis=1),
        "diverged": ~np.isfinite(xk).all(axis=1),
    })
    return out


@pytest.mark.parametrize(("problem", "opt", "hyper", "steps"), CASES,
                         ids=[c[0] for c in CASES])
def test_every_column_on_every_backend_equals_torch_optims(problem, opt, hyper, steps):
    p = P.get(problem)
    starts = _starts(p)
    traj = C.torch_optim_trajectory(p, opt, starts, steps, **hyper)
    truth = _truth(p, traj, TARGETS)
    assert np.isfinite(traj).all()
    frames = {b: C.run(p, opt, starts, steps, backend=b, targets=TARGETS, **hyper)
              for b in BACKENDS}
    ref = frames["numpy"]
    hit_cols = [C.target_column(t) for t in TARGETS]
    # the case exercises the metrics: some first hits happen, not all at step 1
    assert ref[hit_cols].notna().to_numpy().any()
    assert (ref[hit_cols] > 1).to_numpy().any()
    for backend, df in frames.items():
        assert list(df.columns) == list(ref.columns), backend
        assert (df["backend"] == backend).all()
        for col in hit_cols:
            np.testing.assert_array_equal(df[col], truth[col], err_msg=f"{backend} {col}")
        for col in ("final_value", "final_gap", "final_grad_norm", "distance_to_minimizer"):
            np.testing.assert_allclose(df[col], truth[col], rtol=1e-9, atol=1e-13,
                                       err_msg=f"{backend} {col}")
        # best_gap: the smallest gap after 1..K updates (the start does not count)
        np.testing.assert_allclose(df["best_gap"], truth["best_gap"], rtol=1e-9, atol=1e-15,
                                   err_msg=f"{backend} best_gap")
        np.testing.assert_array_equal(df["minimizer_index"], truth["minimizer_index"])
        np.testing.assert_array_equal(df["diverged"], truth["diverged"])
        np.testing.assert_array_equal(df["start_index"], np.arange(len(starts)))
        for j in range(p.dim):
            np.testing.assert_array_equal(df[f"start_{j}"], starts[:, j])
        np.testing.assert_array_equal(df["start_in_domain"], p.in_domain(starts))
        # every other column (labels, hyperparameters, steps, seed) equals the NumPy one's
        rest = [c for c in ref.columns if c not in truth and c != "backend"]
        pd.testing.assert_frame_equal(df[rest], ref[rest], check_exact=True)
        for k, v in hyper.items():
            assert (df[k] == v).all()
        assert (df["steps"] == steps).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_best_gap_ignores_the_start_on_every_backend(backend):
    """SGD, lr 0.05 from (3.01, 2) on Himmelblau: the start is 0.0037 from minimum A, the first
    step overshoots to 0.034 and the iterates come back. best_gap is the best after >= 1
    update, and best_gap < t exactly when the first hit of t exists."""
    p = P.get("himmelblau")
    x0 = np.array([[3.01, 2.0]])
    traj = C.torch_optim_trajectory(p, "sgd", x0, 1, lr=0.05)
    gap0, gap1 = float(p.f(traj[0])[0]), float(p.f(traj[1])[0])
    assert gap0 == pytest.approx(0.00371, rel=1e-2)
    assert gap1 == pytest.approx(0.0342, rel=1e-2)
    df = C.run(p, "sgd", x0, 1, backend=backend, targets=(1e-2,), lr=0.05)
    assert df["best_gap"].item() == pytest.approx(gap1, rel=1e-12)
    assert math.isnan(df["steps_to_target_1e-02"].item())
    df = C.run(p, "sgd", _starts(p), 50, backend=backend, targets=TARGETS, lr=0.01)
    for t in TARGETS:
        np.testing.assert_array_equal(df["best_gap"] < t, df[C.target_column(t)].notna())


def test_first_hit_counts_updates_by_hand():
    """Booth's f is the quadratic (x - x*)ᵀ H (x - x*) / 2 with H = [[10, 8], [8, 10]]
    (eigenvalues 18 along (1, 1), 2 along (1, -1)). From x* + s (1, -1)/√2, SGD with lr gives
    s_k = (1 - 2 lr)^k s, so f - f* = s² (1 - 2 lr)^(2k) after k updates (lr = 0.1: the stiff
    direction's factor is -0.8, round-off does not grow)."""
    p = P.get("booth")
    s0, lr = 1.0, 0.1
    x0 = np.array([[1.0, 3.0]]) + s0 * np.array([[1.0, -1.0]]) / math.sqrt(2)
    gap = [s0 * s0 * (1 - 2 * lr) ** (2 * k) for k in range(60)]
    assert float(p.f(x0)[0]) == pytest.approx(gap[0], rel=1e-12)
    for backend in BACKENDS:
        df = C.run(p, "sgd", x0, 40, backend=backend, targets=(1e-2, 1e-5), lr=lr)
        for t in (1e-2, 1e-5):
            k = next(k for k in range(1, 60) if gap[k] < t)
            assert df[C.target_column(t)].item() == k, (backend, t)
        assert df["final_gap"].item() == pytest.approx(gap[40], rel=1e-6)
        assert df["best_gap"].item() == pytest.approx(gap[40], rel=1e-6)


# ---- ECDF, basin shares and success rates on hand-made frames ----------------------------

def _frame(hits):
    """hits: {target: [first hits per start]} for one (problem, optimizer, lr)."""
    n = len(next(iter(hits.values())))
    return pd.DataFrame({"problem": "p", "optimizer": "o", "lr": 0.1, "start_index": range(n),
                         **{C.target_column(t): v for t, v in hits.items()}})


def test_ecdf_is_over_all_start_target_pairs():
    df = _frame({1e-2: [10, np.nan, 30], 1e-4: [20, np.nan, np.nan],
                 1e-8: [np.nan, np.nan, np.nan]})
    e = C.ecdf(df)
    assert list(e["steps"]) == [10, 20, 30]
    np.testing.assert_allclose(e["fraction"], [1 / 9, 2 / 9, 3 / 9], rtol=1e-15)
    # two groups are normalised separately
    both = pd.concat([df, df.assign(lr=0.2, **{C.target_column(1e-8): [5, 5, 5]})])
    e2 = C.ecdf(both)
    assert e2[e2.lr == 0.2]["fraction"].max() == pytest.approx(6 / 9)
    assert e2[e2.lr == 0.1]["fraction"].max() == pytest.approx(3 / 9)


def test_basin_shares_by_hand():
    df = pd.DataFrame({"problem": "p", "optimizer": "o", "lr": 0.1,
                       "minimizer_index": [0, 0, 1, -1, 0]})
    s = C.basin_shares(df).set_index("minimizer_index")
    assert s.loc[0, "starts"] == 3
    assert s.loc[0, "share"] == pytest.approx(0.6)
    assert s.loc[-1, "share"] == pytest.approx(0.2)


def test_sensitivity_success_and_divergence_rates_by_closed_form():
    """Booth's Hessian has eigenvalues 18 and 2: SGD converges for lr < 2/18 and diverges
    above it, from every start."""
    s = C.sensitivity("booth", "sgd", [0.05, 0.2], n_starts=8, steps=2000, target=1e-6,
                      backend="numpy")
    ok, bad = s[s.lr == 0.05].iloc[0], s[s.lr == 0.2].iloc[0]
    assert ok["success_rate"] == 1.0
    assert ok["diverged_rate"] == 0.0
    assert bad["success_rate"] == 0.0
    assert bad["diverged_rate"] == 1.0
    # median steps by hand: slowest mode contracts by |1 - 2 lr| per step
    df = C.run("booth", "sgd", C.random_starts(P.get("booth"), 8), 2000, targets=(1e-6,),
               lr=0.05)
    assert ok["median_steps"] == df[C.target_column(1e-6)].median()
    assert ok["median_steps"] < math.log(1e-6 / 1e4) / math.log(0.9**2) + 5


def test_torch_optim_trajectory_is_torch_optim():
    """The truth above is torch.optim itself: one step by hand."""
    p = P.get("booth")
    x0 = np.array([[0.5, -1.0]])
    traj = C.torch_optim_trajectory(p, "sgd", x0, 1, lr=0.01)
    x = torch.nn.Parameter(torch.tensor(x0))
    opt = torch.optim.SGD([x], lr=0.01)
    p.f(x).sum().backward()
    opt.step()
    np.testing.assert_array_equal(traj[1], x.detach().numpy())


# ---- arguments, subjects and the wiring of each runner ----------------------------------------


def test_run_full_defaults_seed_zero_and_no_trajectories():
    p = P.noisy(P.get("booth"), 0.5)
    starts = np.array([[0.0, 0.0], [2.0, 1.0]])
    s, traj = C.run_full(p, "sgd", starts, 20, lr=0.01)
    s0, _ = C.run_full(p, "sgd", starts, 20, lr=0.01, seed=0)
    s1, _ = C.run_full(p, "sgd", starts, 20, lr=0.01, seed=1)
    np.testing.assert_array_equal(s["final_value"], s0["final_value"])
    assert not np.array_equal(s["final_value"], s1["final_value"])
    assert s["seed"].tolist() == [0, 0]
    assert s1["seed"].tolist() == [1, 1]
    assert len(traj) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_trajectory_rows_unless_asked(backend):
    _, traj = C.run_full("booth", "adam", np.array([[0.0, 0.0]]), 5, backend=backend, lr=0.1)
    assert len(traj) == 0
    _, traj = C.run_full("booth", "adam", np.array([[0.0, 0.0]]), 5, backend=backend, lr=0.1,
                         record_every=2)
    assert traj["step"].tolist() == [0, 2, 4, 5]


def test_run_argument_errors_are_whole_sentences():
    x0 = np.array([[0.0, 0.0]])
    for steps in (0, -3, 2.0):
        with pytest.raises(ValueError, match=rf"^steps={steps!r}; expected a positive integer$"):
            C.run("booth", "sgd", x0, steps, lr=0.1)
    for targets in ((0.0,), (1e-3, 0.0), (1e-3, -1.0)):
        with pytest.raises(ValueError, match=rf"^targets must be positive, got "
                                             rf"{re.escape(str(list(targets)))}$"):
            C.run("booth", "sgd", x0, 5, targets=targets, lr=0.1)
    with pytest.raises(ValueError, match=r"^unknown backend 'jax'; expected numpy, numba or "
                                         r"torch$"):
        C.run("booth", "sgd", x0, 5, backend="jax", lr=0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_targets_in_any_order_and_as_integers(backend):
    """The same frame whatever the order (or type) the targets come in."""
    x0 = np.array([[0.0, 0.0], [3.0, -1.0]])
    base = C.run("booth", "adam", x0, 60, backend=backend, targets=(1.0, 1e-2), lr=0.3)
    cols = [c for c in base.columns if c.startswith("steps_to_")]
    assert cols == [C.target_column(1.0), C.target_column(1e-2)]   # loosest first
    for targets in ((1e-2, 1.0), (1e-2, 1)):
        other = C.run("booth", "adam", x0, 60, backend=backend, targets=targets, lr=0.3)
        pd.testing.assert_frame_equal(other, base)


def test_update_hits_keeps_the_first_hit_and_needs_strictly_below():
    hits = np.array([[-1], [0], [3], [-1]])
    C._update_hits(hits, np.array([0.5, 0.1, 0.1, 1.0]), np.array([1.0]), 5)
    assert hits[:, 0].tolist() == [5, 0, 3, -1]


def test_subject_for_gives_a_reference_the_backend_asked_for():
    """numba runs a reference's NumPy rule (the compiled runner is chosen by run); no backend
    keeps the subject's own; an optimizer that is not a reference keeps its own."""
    from suite.subjects import resolve

    torch_adam = resolve("adam", backend="torch")
    assert C.subject_for(torch_adam, "numpy").backend == "numpy"
    assert C.subject_for(torch_adam, "numba").backend == "numpy"
    assert C.subject_for(torch_adam, None).backend == "torch"
    assert C.subject_for(resolve("adam"), "torch").backend == "torch"
    assert C.subject_for("adam", "torch").backend == "torch"
    assert C.subject_for("adam", "numba").backend == "numpy"
    assert C.subject_for("adam").backend == "numpy"
    own = resolve(torch.optim.Adam).backend
    for backend in (None, "numpy", "torch", "numba"):
        assert C.subject_for(torch.optim.Adam, backend).backend == own


def _stepwise_calls(monkeypatch):
    """Every call of the step-by-step runner from now on: (its rule's backend, the backend it
    is told to run on)."""
    calls = []
    real = C._run_stepwise

    def spy(prob, rule, x0, steps, tg, sched, seed, record_every, backend, dtype):
        calls.append((rule.backend, backend))
        return real(prob, rule, x0, steps, tg, sched, seed, record_every, backend, dtype)

    monkeypatch.setattr(C, "_run_stepwise", spy)
    return calls


def test_a_reference_runs_on_the_backend_asked_for(monkeypatch):
    calls = _stepwise_calls(monkeypatch)
    for backend in ("numpy", "torch"):
        C.run("booth", "adam", np.array([[0.0, 0.0]]), 3, backend=backend, lr=0.1)
    assert [b for _, b in calls] == ["numpy", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rule_without_a_batched_runner(monkeypatch, backend):
    """NAdam has no batched Numba runner: on the numba backend it runs step by step with its
    Numba kernels (on the others with their own), and every backend follows torch.optim."""
    calls = _stepwise_calls(monkeypatch)
    starts = np.array([[0.0, 0.0], [3.0, -1.0]])
    s = C.run("booth", "nadam", starts, 30, backend=backend, lr=0.05)
    assert [r for r, _ in calls] == [backend]
    assert s["backend"].tolist() == [backend] * 2
    truth = C.torch_optim_trajectory("booth", "nadam", starts, 30, lr=0.05)[-1]
    np.testing.assert_allclose(s["final_value"], P.get("booth").f(truth), rtol=1e-10)


def test_a_users_optimizer_rows_name_it_and_measure_each_start():
    """A class that is no reference: its kind, no import path and no reference; the final
    gradient norm is each start's own; an import path and a reference name are recorded."""
    p = P.get("booth")
    starts = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, 1.0]])
    s = C.run(p, BetaSGD, starts, 4, lr=0.01, seed=3)   # beta 0: plain SGD
    assert s["seed"].tolist() == [3] * 3
    assert s["steps"].tolist() == [4] * 3
    assert s["optimizer_kind"].tolist() == ["class"] * 3
    assert s["import_path"].tolist() == [""] * 3
    assert s["reference"].tolist() == [""] * 3
    traj = C.torch_optim_trajectory(p, "sgd", starts, 4, lr=0.01)
    np.testing.assert_allclose(s["final_grad_norm"],
                               np.linalg.norm(np.asarray(p.grad(traj[-1])), axis=1), rtol=1e-12)
    s = C.run(p, "torch.optim:SGD", starts, 4, lr=0.01)
    assert s["import_path"].tolist() == ["torch.optim:SGD"] * 3
    assert s["reference"].tolist() == ["sgd"] * 3


def test_torch_optim_trajectory_by_name_and_per_start_for_factored_rules():
    """A problem given by name is the same problem; Adafactor (not elementwise) gets one
    parameter and one optimizer per start, as if each start ran alone."""
    p = P.get("rosenbrock")
    starts = np.array([[-1.0, 1.5], [0.5, -0.5]])
    np.testing.assert_array_equal(C.torch_optim_trajectory("booth", "sgd", starts, 3, lr=0.01),
                                  C.torch_optim_trajectory(P.get("booth"), "sgd", starts, 3,
                                                           lr=0.01))
    both = C.torch_optim_trajectory(p, "adafactor", starts, 5, lr=0.05)
    for i in range(len(starts)):
        alone = C.torch_optim_trajectory(p, "adafactor", starts[i:i + 1], 5, lr=0.05)
        np.testing.assert_array_equal(both[:, i], alone[:, 0])
    x = torch.nn.Parameter(torch.tensor(starts[1]))
    opt = torch.optim.Adafactor([x], lr=0.05)
    for _ in range(5):
        x.grad = torch.as_tensor(np.asarray(p.grad(x.detach().numpy()[None]))[0])
        opt.step()
    np.testing.assert_array_equal(both[-1, 1], x.detach().numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_diverging_run_is_reported_quietly(backend):
    """SGD with lr 1 on Rosenbrock overflows: no floating-point warning escapes, the row says
    diverged, and no minimizer is claimed."""
    s = C.run("rosenbrock", "sgd", np.array([[-1.5, 2.0], [1.0, 1.0]]), 50, backend=backend,
              lr=1.0)
    assert s["diverged"].tolist() == [True, False]
    assert s["minimizer_index"].tolist() == [-1, 0]
    assert math.isnan(s["distance_to_minimizer"].iloc[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gradient_that_overflows_at_a_finite_last_iterate_is_quiet(backend):
    """SGD with lr 0.1 on Himmelblau from (100, 100): the 4th iterate is still finite
    (about -2.5e146), but f and the gradient there overflow. The gradient norm is inf, no
    floating-point warning escapes (warnings are errors here), and the row says diverged."""
    s, traj = C.run_full("himmelblau", "sgd", np.array([[100.0, 100.0]]), 4, backend=backend,
                         record_every=4, lr=0.1)
    last = traj[traj["step"] == 4]
    x = last[["x0", "x1"]].to_numpy()
    assert np.isfinite(x).all()
    assert np.abs(x).max() > 1e103  # |x|^3 overflows float64
    assert s["final_grad_norm"].tolist() == [math.inf]
    assert s["diverged"].tolist() == [True]


def test_a_rule_without_a_batched_runner_keeps_seed_trajectories_and_dtype_on_numba():
    """NAdam on backend="numba" runs step by step: on a noisy problem its seed, its
    trajectory rows and its float32 arithmetic are those of the numpy backend."""
    noisy = P.noisy(P.get("himmelblau"), 0.5)
    starts = np.array([[1.0, 1.0], [-2.0, 2.5]])
    kw = {"record_every": 5, "dtype": "float32", "seed": 7, "lr": 0.05}
    s_nb, t_nb = C.run_full(noisy, "nadam", starts, 20, backend="numba", **kw)
    s_np, t_np = C.run_full(noisy, "nadam", starts, 20, backend="numpy", **kw)
    pd.testing.assert_frame_equal(s_nb.drop(columns="backend"), s_np.drop(columns="backend"))
    pd.testing.assert_frame_equal(t_nb, t_np)
    assert t_nb["step"].unique().tolist() == [0, 5, 10, 15, 20]
    assert (s_nb["seed"] == 7).all()
    # float32 iterates: every recorded x is a float32 number
    xs = t_nb[["x0", "x1"]].to_numpy()
    np.testing.assert_array_equal(xs.astype(np.float32).astype(np.float64), xs)
    other = C.run(noisy, "nadam", starts, 20, backend="numba", record_every=0, seed=8, lr=0.05)
    assert not np.array_equal(other["final_value"], s_nb["final_value"])


def test_identity_columns_of_both_frames():
    s, t = C.run_full("himmelblau", "adam", np.array([[1.0, 1.0]]), 4, record_every=2,
                      lr=0.1)
    assert (s["problem"].tolist(), s["schedule"].tolist()) == (["himmelblau"], ["constant"])
    assert s["betas"].tolist() == ["(0.9, 0.999)"]  # a pair as its text, one cell
    assert t["problem"].unique().tolist() == ["himmelblau"]
    assert t["optimizer"].unique().tolist() == ["adam"]
    with pytest.raises(NotImplementedError,
                       match=r"^noisy problems run on the numpy and torch backends$"):
        C.run(P.noisy(P.get("himmelblau"), 0.1), "adam", np.zeros((1, 2)), 3, backend="numba")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_noisy_float32_runs_are_float32_with_the_same_draws(backend):
    """A noisy gradient in float32 stays float32 (numpy promoted it to float64 and the rule
    rejected it); the noise is drawn in float64 from the seed and rounded, so both array
    backends see the same gradients."""
    noisy = P.noisy(P.get("himmelblau"), 0.5)
    x = np.array([[1.0, 1.0], [-2.0, 2.5]], np.float32)
    g = noisy.grad(x if backend == "numpy" else torch.from_numpy(x),
                   np.random.default_rng(3))
    g = np.asarray(g)
    assert g.dtype == np.float32
    want = noisy.grad_fn(x.astype(np.float64)) + np.random.default_rng(3).normal(0, 0.5, (2, 2))
    np.testing.assert_allclose(g, want, rtol=2e-6)
    s = C.run(noisy, "adam", x.astype(np.float64), 5, backend=backend, dtype="float32",
              seed=3, lr=0.05)
    assert np.isfinite(s["final_value"]).all()


def test_starts_as_given_and_their_errors():
    """One start as a flat pair, or integers, is the same run as float rows; a wrong shape
    and a non-finite start are named. A reference name runs on numpy and says so."""
    rows = C.run("himmelblau", "adam", np.array([[1.0, 2.0]]), 5, lr=0.1)
    assert rows["backend"].tolist() == ["numpy"]
    for given in ([1.0, 2.0], [[1, 2]], np.array([1, 2])):
        pd.testing.assert_frame_equal(C.run("himmelblau", "adam", given, 5, lr=0.1), rows)
    with pytest.raises(ValueError, match=r"^starts have shape \(3, 3\); himmelblau needs "
                                         r"\(n_starts, 2\)$"):
        C.run("himmelblau", "adam", np.zeros((3, 3)), 5)
    with pytest.raises(ValueError, match=r"^starts contain non-finite values$"):
        C.run("himmelblau", "adam", [[0.0, np.nan]], 5)
