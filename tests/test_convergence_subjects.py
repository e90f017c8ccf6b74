"""Users' optimizers in the convergence study: every start runs as if it were alone."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from suite import problems as P
from suite.schedules import Schedule
from suite.studies import convergence as C
from suite.subjects import resolve

sys.path.insert(0, str(Path(__file__).parent))
import user_optim

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

TARGETS = (1e-2, 1e-4, 1e-8)


def alone(problem, subject, x0, steps, schedule=None, **hyper):
    """The definition: one start, its own parameter, its own optimizer instance."""
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = subject.make([p], **hyper)
    sched = schedule.torch_scheduler(opt) if schedule is not None else None
    hits = dict.fromkeys(TARGETS, np.nan)
    for k in range(1, steps + 1):
        with torch.no_grad():
            p.grad = problem.grad_fn(p.detach().clone())
        opt.step()
        if sched is not None:
            sched.step()
        gap = float(problem.f(p.detach())) - problem.f_min
        for t in TARGETS:
            if np.isnan(hits[t]) and gap < t:
                hits[t] = k
    return p.detach().numpy().copy(), hits


def check_equal_alone(problem, subject, starts, steps, schedule=None, **hyper):
    s, traj = C.run_full(problem, subject, starts, steps, record_every=steps,
                         schedule=schedule, **hyper)
    last = traj[traj.step == steps].sort_values("start_index")
    xk = last[[f"x{j}" for j in range(problem.dim)]].to_numpy()
    for i, x0 in enumerate(starts):
        x_alone, hits = alone(problem, subject, x0, steps, schedule, **hyper)
        for t in TARGETS:
            ours = s[C.target_column(t)].iloc[i]
            assert (np.isnan(ours) and np.isnan(hits[t])) or ours == hits[t], (i, t)
        np.testing.assert_allclose(xk[i], x_alone, rtol=1e-12, atol=1e-12)
    return s


SUBJECTS = {
    "clip_momentum": (lambda: resolve(user_optim.ClipMomentum), {"lr": 0.02, "max_norm": 5.0}),
    "lamb": (lambda: resolve(pytorch_optimizer.Lamb), {"lr": 0.01, "pre_norm": True}),
}


@pytest.mark.parametrize("name", list(SUBJECTS))
@pytest.mark.parametrize("problem", ["booth", "himmelblau"])
def test_per_start_equals_each_start_alone(name, problem):
    make, hyper = SUBJECTS[name]
    sub = make()
    assert not sub.elementwise
    prob = P.get(problem)
    starts = C.random_starts(prob, 6, seed=3)
    s = check_equal_alone(prob, sub, starts, 400, **hyper)
    assert (s["backend"] == "torch-per-start").all()
    assert s["steps_to_target_1e-02"].notna().any()  # the comparison covers real hits


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_batching_these_optimizers_would_change_the_result(name):
    """Why the per-start path exists: one instance over all starts is a different run."""
    make, hyper = SUBJECTS[name]
    prob = P.get("himmelblau")
    starts = C.random_starts(prob, 6, seed=3)
    a = C.run(prob, make(), starts, 200, **hyper)
    b = C.run(prob, resolve(make(), elementwise=True), starts, 200, **hyper)
    assert (b["backend"] == "torch-batched").all()
    assert not np.allclose(a["final_value"], b["final_value"], rtol=1e-6)


def test_elementwise_opt_in_batches_and_equals_each_start_alone():
    prob = P.get("himmelblau")
    starts = C.random_starts(prob, 8, seed=1)
    for sub in (resolve(torch.optim.Adam),   # torch.optim's twin of a reference: elementwise
                resolve(pytorch_optimizer.Lion, elementwise=True)):
        assert sub.elementwise
        s = check_equal_alone(prob, sub, starts, 300, lr=0.05)
        assert (s["backend"] == "torch-batched").all()


def test_user_class_agrees_with_the_reference_rule():
    prob = P.get("rosenbrock", dim=3)
    starts = C.random_starts(prob, 5, seed=0) * 0.5
    ref = C.run(prob, "adam", starts, 300, backend="numba", lr=1e-2)
    per_start = C.run(prob, resolve(torch.optim.Adam, elementwise=False), starts, 300, lr=1e-2)
    np.testing.assert_allclose(per_start["final_value"], ref["final_value"], rtol=1e-10,
                               atol=1e-14)
    for t in TARGETS:
        np.testing.assert_array_equal(per_start[C.target_column(t)], ref[C.target_column(t)])


def test_schedule_and_renamed_lr_for_a_factory():
    prob = P.get("booth")
    starts = np.array([[0.0, 0.0], [3.0, -2.0], [-4.0, 4.0]])
    sched = Schedule("step", {"step_size": 50, "gamma": 0.5})
    sub = resolve(user_optim.clip_momentum_factory, rename={"lr": "learning_rate"})
    s = C.run(prob, sub, starts, 200, schedule=sched, lr=0.05)
    assert (s["lr"] == 0.05).all()
    assert (s["learning_rate"] == 0.05).all()
    ref = resolve(user_optim.ClipMomentum)
    check_equal_alone(prob, ref, starts, 200, schedule=sched, lr=0.05)
    r = C.run(prob, ref, starts, 200, schedule=sched, lr=0.05)
    np.testing.assert_array_equal(s["final_value"], r["final_value"])


def test_import_path_sensitivity_basins_and_ecdf(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    prob = P.get("himmelblau")
    sens = C.sensitivity(prob, "user_optim:ClipMomentum", [1e-3, 1e-2], n_starts=6, steps=300,
                         max_norm=5.0)
    assert list(sens["optimizer"]) == ["ClipMomentum"] * 2
    assert sens["success_rate"].between(0, 1).all()
    g = C.run(prob, "user_optim:ClipMomentum", C.grid_starts(prob, 4), 300, lr=0.02)
    shares = C.basin_shares(g)
    np.testing.assert_allclose(shares["share"].sum(), 1.0)
    assert (g["import_path"] == "user_optim:ClipMomentum").all()
    e = C.ecdf(g)
    assert set(e["optimizer"]) == {"ClipMomentum"}


def test_a_raising_optimizer_raises_and_a_diverging_one_is_marked():
    prob = P.get("himmelblau")
    with pytest.raises(RuntimeError, match="exploded on purpose"):
        C.run(prob, user_optim.Exploding, np.zeros((2, 2)), 10)
    d = C.run(prob, user_optim.ClipMomentum, np.array([[1.0, 1.0]]), 50, lr=1e6,
              max_norm=1e300)
    assert d["diverged"].all()
