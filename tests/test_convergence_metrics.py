"""The convergence study's metrics where the easy cases hide mistakes: a minimum value that is
not 0 (f - f* against f + f*), the recorded trajectories' steps and values, groupings by every
key, the starts' grids, and the documented defaults of ``sensitivity``. The truth is
torch.optim's own trajectory, or a hand-made frame."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from suite import problems as P
from suite.studies import convergence as C

TARGETS = (1.0, 1e-2, 1e-5)


def _gaps(p, traj):
    return np.stack([np.asarray(p.f(x)) for x in traj]) - p.f_min    # (K+1, n)


@pytest.mark.parametrize("backend", ["numpy", "torch", "numba", "user"])
def test_minimum_below_zero_and_recorded_trajectories(backend):
    """Styblinski-Tang's minimum is f* = -78.33: every gap is f - f*, never f + f*. The
    trajectory frame holds f - f* and x at steps 0, 3, 6, 9 and the last step, 10."""
    p = P.get("styblinski_tang")
    assert p.f_min < -78
    starts = np.array([[-2.0, -3.5], [1.0, 2.0], [-1.5, 0.5]])
    steps, lr = 10, 0.02
    traj = C.torch_optim_trajectory(p, "sgd", starts, steps, lr=lr, momentum=0.5)
    gaps = _gaps(p, traj)
    opt = torch.optim.SGD if backend == "user" else "sgd"
    s, t = C.run_full(p, opt, starts, steps, backend=None if backend == "user" else backend,
                      targets=TARGETS, record_every=3, lr=lr, momentum=0.5)
    np.testing.assert_allclose(s["final_value"], gaps[-1] + p.f_min, rtol=1e-12)
    np.testing.assert_allclose(s["final_gap"], gaps[-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s["best_gap"], gaps[1:].min(axis=0), rtol=1e-9, atol=1e-12)
    for tg in TARGETS:
        hit = gaps[1:] < tg
        want = np.where(hit.any(axis=0), hit.argmax(axis=0) + 1, np.nan)
        np.testing.assert_array_equal(s[C.target_column(tg)], want)
    assert s[C.target_column(1.0)].notna().any()
    steps_rec = [0, 3, 6, 9, 10]
    assert sorted(t["step"].unique()) == steps_rec
    for k in steps_rec:
        at = t[t["step"] == k].sort_values("start_index")
        np.testing.assert_array_equal(at["start_index"], np.arange(len(starts)))
        np.testing.assert_allclose(at["gap"], gaps[k], rtol=1e-9, atol=1e-12,
                                   err_msg=f"step {k}")
        np.testing.assert_allclose(at[["x0", "x1"]].to_numpy(), traj[k], rtol=1e-12)
    assert (t["lr"] == lr).all()


def test_run_follows_a_schedule():
    """run() (not only run_full) passes the schedule on: the final value is torch.optim's
    under the same torch scheduler."""
    from suite.schedules import Schedule

    p = P.get("booth")
    starts = np.array([[0.0, 0.0], [3.0, -2.0]])
    sched = Schedule("step", {"step_size": 5, "gamma": 0.1})
    ref = C.torch_optim_trajectory(p, "sgd", starts, 30, schedule=sched, lr=0.05)
    s = C.run(p, "sgd", starts, 30, schedule=sched, lr=0.05)
    np.testing.assert_allclose(s["final_value"], np.asarray(p.f(ref[-1])), rtol=1e-12)
    assert (s["final_gap"] > 1e-3).all()             # the decayed lr stops short of f*


def test_final_grad_norm_per_start():
    """One gradient norm per start (row), not one over the whole batch."""
    p = P.get("booth")
    starts = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, 1.0]])
    traj = C.torch_optim_trajectory(p, "sgd", starts, 3, lr=0.01)
    want = np.linalg.norm(np.asarray(p.grad(traj[-1])), axis=1)
    assert len(set(np.round(want, 6))) == 3
    for backend in ("numpy", "torch", "numba"):
        s = C.run(p, "sgd", starts, 3, backend=backend, lr=0.01)
        np.testing.assert_allclose(s["final_grad_norm"], want, rtol=1e-12, err_msg=backend)


def test_noisy_runs_follow_the_seed_default_zero():
    p = P.noisy(P.get("booth"), 0.5)
    starts = np.array([[0.0, 0.0], [2.0, 1.0]])
    a = C.run(p, "sgd", starts, 20, lr=0.01)
    b = C.run(p, "sgd", starts, 20, lr=0.01, seed=0)
    c = C.run(p, "sgd", starts, 20, lr=0.01, seed=1)
    np.testing.assert_array_equal(a["final_value"], b["final_value"])
    assert not np.array_equal(a["final_value"], c["final_value"])


def test_grid_starts_by_hand_and_random_starts_in_the_domain():
    p = P.get("himmelblau")                      # domain [-5, 5]²
    g = C.grid_starts(p, 3)
    want = [[x, y] for y in (-5, 0, 5) for x in (-5, 0, 5)]
    np.testing.assert_array_equal(g, want)
    with pytest.raises(ValueError, match=r"2-D problem.*dim 5"):
        C.grid_starts(P.get("rosenbrock", dim=5), 3)
    r = C.random_starts(p, 200)
    assert r.shape == (200, 2)
    assert (r >= -5).all()
    assert (r <= 5).all()
    assert r.min() < -4.5
    assert r.max() > 4.5
    np.testing.assert_array_equal(r, C.random_starts(p, 200, seed=0))
    assert not np.array_equal(r, C.random_starts(p, 200, seed=1))


def test_basin_shares_normalised_per_problem_optimizer_lr_and_backend():
    rows = []
    for prob in ("p", "q"):
        for opt in ("a", "b"):
            for lr in (0.1, 0.2):
                for backend in ("numpy", "numba"):
                    rows += [{"problem": prob, "optimizer": opt, "lr": lr, "backend": backend,
                              "minimizer_index": i} for i in (0, 0, 1, -1)]
    s = C.basin_shares(pd.DataFrame(rows))
    assert len(s) == 16 * 3
    assert {"problem", "optimizer", "lr", "backend"} <= set(s.columns)
    sums = s.groupby(["problem", "optimizer", "lr", "backend"])["share"].sum()
    np.testing.assert_allclose(sums, 1.0)
    assert set(s[s.minimizer_index == 0]["share"]) == {0.5}
    assert set(s[s.minimizer_index == -1]["share"]) == {0.25}


def test_ecdf_normalised_per_problem_and_optimizer():
    col = C.target_column(1e-2)
    df = pd.DataFrame({"problem": ["p", "p", "q", "q", "p", "p"],
                       "optimizer": ["a", "a", "a", "a", "b", "b"], "lr": 0.1,
                       col: [5, np.nan, 7, 8, 1, 2]})
    e = C.ecdf(df, targets=(1e-2,))
    assert {"problem", "optimizer", "lr"} <= set(e.columns)
    got = {(r.problem, r.optimizer, r.steps): r.fraction for r in e.itertuples()}
    assert got == {("p", "a", 5): 0.5, ("q", "a", 7): 0.5, ("q", "a", 8): 1.0,
                   ("p", "b", 1): 0.5, ("p", "b", 2): 1.0}


def test_sensitivity_defaults_target_1e_4_and_seed_0():
    """Without ``target`` and ``seed``: success at f - f* < 1e-4 over the starts drawn with
    seed 0, checked against torch.optim's trajectories from those starts."""
    p = P.get("booth")
    lr, steps, n = 0.05, 55, 6
    s = C.sensitivity(p, "sgd", [lr], n_starts=n, steps=steps, backend="numpy")
    assert s["target"].item() == 1e-4
    assert s["seed"].item() == 0
    starts = C.random_starts(p, n, seed=0)
    gaps = _gaps(p, C.torch_optim_trajectory(p, "sgd", starts, steps, lr=lr))[1:]
    hit = gaps < 1e-4
    first = np.where(hit.any(axis=0), hit.argmax(axis=0) + 1, np.nan)
    assert 0 < np.isfinite(first).mean() < 1                  # the target separates starts
    assert s["success_rate"].item() == pytest.approx(np.isfinite(first).mean())
    assert s["median_steps"].item() == np.nanmedian(first)
    assert s["median_final_gap"].item() == pytest.approx(np.median(gaps[-1]), rel=1e-9)
    assert s["problem"].item() == "booth"
    assert s["optimizer"].item() == "sgd"
    assert s["starts"].item() == n
    assert s["lr"].item() == lr
    assert math.isfinite(s["diverged_rate"].item())
    assert s["diverged_rate"].item() == 0.0


def test_sensitivity_on_a_noisy_problem_is_seeded():
    p = P.noisy(P.get("booth"), 0.3)
    a = C.sensitivity(p, "sgd", [0.05], n_starts=4, steps=60, backend="numpy")
    b = C.sensitivity(p, "sgd", [0.05], n_starts=4, steps=60, backend="numpy")
    pd.testing.assert_frame_equal(a, b)
    c = C.run(p, "sgd", C.random_starts(p, 4, 0), 60, seed=0, lr=0.05, targets=(1e-4,))
    assert a["median_final_gap"].item() == c["final_gap"].median()


def test_sensitivity_passes_its_seed_and_backend_on():
    """seed=1 draws other starts (and other noise), hyperparameters reach the rule (momentum);
    the backend reaches the runner: the
    compiled one (the default) refuses a noisy problem."""
    p = P.noisy(P.get("booth"), 0.3)
    a = C.sensitivity(p, "sgd", [0.05], n_starts=4, steps=60, seed=1, backend="numpy",
                      momentum=0.5)
    c = C.run(p, "sgd", C.random_starts(p, 4, 1), 60, seed=1, lr=0.05, targets=(1e-4,),
              momentum=0.5)
    assert a["median_final_gap"].item() == c["final_gap"].median()
    with pytest.raises(NotImplementedError, match="noisy"):
        C.sensitivity(p, "sgd", [0.05], n_starts=4, steps=60)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_runs_in_float32_and_reports_in_float64(backend):
    """dtype='float32': the iterates and f are float32 numbers (a float64 run's are not);
    the gradient norm of the final float32 iterate is taken in float64."""
    p = P.get("booth")
    starts = np.array([[0.1, 0.2], [3.3, -2.7], [-1.1, 4.9]])
    s, t = C.run_full(p, "adam", starts, 7, backend=backend, dtype="float32", record_every=7,
                      lr=0.1)
    x = t[t.step == 7][["x0", "x1"]].to_numpy()
    assert (x.astype(np.float32) == x).all()
    assert (s["final_value"].astype(np.float32) == s["final_value"]).all()
    r = C.run(p, "adam", starts, 7, backend=backend, dtype="float32", lr=0.1)   # run() too
    np.testing.assert_array_equal(r["final_value"], s["final_value"])
    g = np.asarray(p.grad_fn(x.astype(np.float32)), dtype=np.float64)
    np.testing.assert_allclose(s["final_grad_norm"], np.sqrt((g * g).sum(axis=1)), rtol=1e-14)
    _, t64 = C.run_full(p, "adam", starts, 7, backend=backend, record_every=7, lr=0.1)
    x64 = t64[t64.step == 7][["x0", "x1"]].to_numpy()
    assert not (x64.astype(np.float32) == x64).all()
    np.testing.assert_allclose(x, x64, rtol=1e-5)
