"""Test functions, the batched convergence runner, schedules, and agreement with torch.optim."""

import numpy as np
import pytest
import torch

from suite import problems as P
from suite.schedules import Schedule
from suite.studies import convergence as C

PROBLEM_ARGS = [("himmelblau", {}), ("rosenbrock", {"dim": 3}), ("beale", {}), ("booth", {}),
                ("rastrigin", {"dim": 3}), ("ackley", {"dim": 2}), ("goldstein_price", {}),
                ("styblinski_tang", {"dim": 4}), ("three_hump_camel", {}),
                ("quadratic", {"dim": 5, "kappa": 1e3})]
OPTS = {"sgd": {"lr": 1e-3, "momentum": 0.9, "nesterov": True},
        "adagrad": {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
        "rmsprop": {"lr": 1e-2, "centered": True, "momentum": 0.5},
        "adam": {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.01},
        "adamw": {"lr": 1e-2, "weight_decay": 0.1}}


@pytest.mark.parametrize(("name", "kw"), PROBLEM_ARGS, ids=[n for n, _ in PROBLEM_ARGS])
def test_gradient_equals_autograd_and_minima(name, kw):
    p = P.get(name, **kw)
    lo, hi = p.domain
    x = np.random.default_rng(0).uniform(lo, hi, (64, p.dim))
    tx = torch.tensor(x, requires_grad=True)
    p.f(tx).sum().backward()
    np.testing.assert_allclose(p.grad(x), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.f(x), p.f(torch.tensor(x)).numpy(), rtol=1e-13)
    # the global minimiser has the stated value and (where smooth) zero gradient
    xstar = p.minimizers[:1]
    np.testing.assert_allclose(p.f(xstar), p.f_min, atol=1e-9 * max(1, abs(p.f_min)))
    assert np.all(p.f(x) >= p.f_min - 1e-9)
    if name != "ackley":
        assert np.abs(p.grad(xstar)).max() < 1e-6


def test_himmelblau_stationary_points():
    p = P.get("himmelblau")
    assert np.abs(p.grad(p.minimizers)).max() < 1e-12
    np.testing.assert_allclose(p.f(p.minimizers), 0, atol=1e-24)
    assert np.abs(p.grad(p.maxima)).max() < 1e-12
    np.testing.assert_allclose(p.f(p.maxima), 181.61652152258, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize(("name", "kw"), PROBLEM_ARGS, ids=[n for n, _ in PROBLEM_ARGS])
def test_trajectory_equals_torch_optim(name, kw, opt, backend):
    p = P.get(name, **kw)
    lo, hi = p.domain
    starts = np.random.default_rng(1).uniform(lo, hi, (6, p.dim)) * 0.5
    steps = 60
    ref = C.torch_optim_trajectory(p, opt, starts, steps, **OPTS[opt])
    s, traj = C.run_full(p, opt, starts, steps, backend=backend, record_every=1, **OPTS[opt])
    ours = traj.sort_values(["step", "start_index"])[[f"x{j}" for j in range(p.dim)]]
    ours = ours.to_numpy().reshape(steps + 1, len(starts), p.dim)
    finite = np.isfinite(ref).all(axis=(1, 2))
    ref, ours = ref[finite], ours[finite]
    scale = np.maximum.accumulate(np.abs(ref), axis=0) + 1e-300
    assert np.max(np.abs(ours - ref) / scale) <= 1e-12
    np.testing.assert_array_equal(s["diverged"], ~np.isfinite(ref[-1]).all(axis=1)
                                  if finite.all() else s["diverged"])


def test_adam_reaches_the_four_himmelblau_minima():
    """The classic demonstration, with the step counts of the reference table in the notes."""
    p = P.get("himmelblau")
    starts = np.array([[0, 0], [-4, 0], [4, 0], [0, 4]], dtype=float)
    df = C.run(p, "adam", starts, 20000, backend="numba", lr=1e-3)
    assert list(df["minimizer_index"]) == [0, 2, 3, 1]
    assert list(df["steps_to_target_1e-08"]) == [5865, 5030, 3412, 4674]
    assert (df["distance_to_minimizer"] < 1e-6).all()


def test_backends_agree_on_a_basin_grid():
    p = P.get("himmelblau")
    g = C.grid_starts(p, 20)
    a = C.run(p, "rmsprop", g, 300, backend="numba", lr=1e-2)
    b = C.run(p, "rmsprop", g, 300, backend="numpy", lr=1e-2)
    np.testing.assert_array_equal(a["minimizer_index"], b["minimizer_index"])
    np.testing.assert_allclose(a["final_value"], b["final_value"], rtol=1e-9, atol=1e-12)
    shares = C.basin_shares(a)
    np.testing.assert_allclose(shares["share"].sum(), 1.0)


@pytest.mark.parametrize("sched", [Schedule("step", {"step_size": 7, "gamma": 0.5}),
                                   Schedule("exponential", {"gamma": 0.99}),
                                   Schedule("cosine", {"T_max": 50, "eta_min": 1e-4})])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_schedules_match_torch(sched, backend):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s = sched.torch_scheduler(opt)
    for t in range(120):
        assert sched.lr_at(0.1, t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        s.step()
    p = P.get("booth")
    starts = np.array([[0.0, 0.0], [3.0, -2.0]])
    ref = C.torch_optim_trajectory(p, "adam", starts, 100, schedule=sched, lr=0.1)
    _, traj = C.run_full(p, "adam", starts, 100, backend=backend, schedule=sched,
                         record_every=100, lr=0.1)
    last = traj[traj.step == 100][["x0", "x1"]].to_numpy()
    np.testing.assert_allclose(last, ref[-1], rtol=1e-12)


def test_first_hit_and_final_value_disagree_for_rmsprop():
    """RMSprop (constant lr) touches the minimum, then cycles around it."""
    p = P.get("himmelblau")
    df = C.run(p, "rmsprop", np.array([[-4.0, 0.0]]), 20000, backend="numba", lr=1e-2)
    assert df["steps_to_target_1e-08"].notna().all()
    assert (df["final_gap"] > 1e-4).all()
    assert (df["best_gap"] < 1e-8).all()


def test_sensitivity_and_ecdf():
    sens = C.sensitivity("himmelblau", "adam", [1e-3, 1e-2, 1e-1], n_starts=50, steps=2000)
    assert list(sens["lr"]) == [1e-3, 1e-2, 1e-1]
    assert sens["success_rate"].between(0, 1).all()
    assert sens.loc[sens.lr == 1e-1, "success_rate"].item() > sens.loc[
        sens.lr == 1e-3, "success_rate"].item()
    df = C.run("himmelblau", "adam", C.random_starts(P.get("himmelblau"), 30), 3000,
               backend="numba", lr=0.05)
    e = C.ecdf(df.assign(lr=0.05))
    assert e["fraction"].is_monotonic_increasing
    assert e["fraction"].max() <= 1.0


def test_bad_input_and_divergence():
    p = P.get("himmelblau")
    with pytest.raises(ValueError, match=r"needs \(n_starts, 2\)"):
        C.run(p, "adam", np.zeros((3, 3)), 10)
    with pytest.raises(ValueError, match=r"unknown problem 'himmelblau2'.*rosenbrock"):
        P.get("himmelblau2")
    with pytest.raises(ValueError, match="unknown optimizer"):
        C.run(p, "adamx", np.zeros((1, 2)), 10)
    df = C.run(p, "sgd", np.array([[100.0, 100.0], [0.0, 0.0]]), 50, backend="numba", lr=0.1)
    assert list(df["diverged"]) == [True, True] or df["diverged"].iloc[0]
    assert not df["start_in_domain"].iloc[0]
    assert df.loc[df.diverged, "minimizer_index"].eq(-1).all()
    for backend in ("numpy", "torch"):
        d2 = C.run(p, "sgd", np.array([[100.0, 100.0]]), 50, backend=backend, lr=0.1)
        assert d2["diverged"].all()
    noisy = P.noisy(p, 0.1)
    a = C.run(noisy, "adam", np.zeros((4, 2)), 100, seed=3, lr=0.01)
    b = C.run(noisy, "adam", np.zeros((4, 2)), 100, seed=3, lr=0.01)
    np.testing.assert_array_equal(a["final_value"], b["final_value"])
    with pytest.raises(NotImplementedError):
        C.run(noisy, "adam", np.zeros((4, 2)), 10, backend="numba")
