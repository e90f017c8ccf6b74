"""crossval's table driver, summary order and lockstep conditioning on hand-made inputs
(milliseconds; the comparisons themselves are in test_optim_crossval.py)."""

import numpy as np
import pandas as pd
import pytest

from suite.optim import crossval
from suite.optim.configs import Config
from suite.trajectory import Trajectory


def test_run_table_defaults_and_what_it_hands_to_the_executor(monkeypatch):
    seen = {}

    def fake(fn, cells, **kw):
        seen.update(fn=fn, cells=cells, **kw)
        return [{"cell": i} for i in range(len(cells))]

    monkeypatch.setattr(crossval, "run_cells", fake)
    configs = [Config("sgd", (("lr", 0.1),)), Config("adam", (("lr", 0.01),))]
    out = crossval.run_table(configs)
    assert list(out["cell"]) == list(range(2 * 2 * 2))
    assert seen["fn"] is crossval._cell
    assert seen["cells"][:4] == [
        (configs[0], "scaled", "float64", 200, tuple(crossval.BACKENDS)),
        (configs[0], "scaled", "float32", 200, tuple(crossval.BACKENDS)),
        (configs[0], "model", "float64", 200, tuple(crossval.BACKENDS)),
        (configs[0], "model", "float32", 200, tuple(crossval.BACKENDS))]
    assert (seen["jobs"], seen["dask"], seen["progress"], seen["checkpoint"]) == (
        1, None, None, None)
    crossval.run_table(configs[:1], probes=("scaled",), dtypes=("float32",), steps=7,
                       backends=("numpy",), jobs=3, dask="tcp://h:1", progress=True,
                       checkpoint="ck")
    assert seen["cells"] == [(configs[0], "scaled", "float32", 7, ("numpy",))]
    assert (seen["jobs"], seen["dask"], seen["progress"], seen["checkpoint"]) == (
        3, "tcp://h:1", "cross-validation", "ck")


def test_summary_keeps_the_frames_order():
    frame = pd.DataFrame({
        "optimizer": ["sgd", "adam", "sgd"], "dtype": ["float64", "float64", "float32"],
        "backend": ["torch", "numpy", "numpy"], "torch_impl": ["forloop"] * 3,
        "config": ["a", "b", "c"], "passed": [True, True, False],
        "max_error_param": [0.0, 1e-15, 1e-5], "max_error_state": [0.0, 0.0, 1e-6]})
    s = crossval.summary(frame)
    assert list(zip(s.optimizer, s.dtype, s.backend, strict=True)) == [
        ("sgd", "float64", "torch"), ("adam", "float64", "numpy"),
        ("sgd", "float32", "numpy")]
    assert list(s.failed) == [0, 0, 1]


def test_centred_condition_reads_every_centred_entry_whatever_the_order():
    """The conditioning of every parameter's centred variance, also when other state or a
    parameter without a centred average comes first: κ = v / |v - ḡ²| = 4 / (4 - 3) at step
    1."""
    v = np.array([[np.nan], [4.0]])
    ga = np.array([[np.nan], [3.0 ** 0.5]])
    ref = Trajectory(values={"param[0]": np.zeros((2, 1)), "momentum_buffer[0]": np.zeros((2, 1)),
                             "square_avg[0]": np.full((2, 1), 9.0),     # not centred
                             "square_avg[1]": v, "grad_avg[1]": ga}, steps=1)
    np.testing.assert_allclose(crossval.centred_condition(ref), [1.0, 4.0], rtol=1e-12)


def test_model_probe_runs_are_fed_the_for_loop_float64_gradients(monkeypatch):
    """On the model probe every run (torch's implementations and ours) replays the gradients
    of torch's float64 for-loop run; analytic probes are run as they are."""
    calls = []
    real = crossval.replay

    def spy(probe, first):
        calls.append(probe.name)
        return real(probe, first)

    monkeypatch.setattr(crossval, "replay", spy)
    cfg = Config("sgd", (("lr", 0.01),))
    rows = crossval.crossval_cell(cfg, "model", "float32", steps=3, backends=("numpy",))
    assert calls == ["model"]
    assert all(r["passed"] for r in rows)
    crossval.crossval_cell(cfg, "scaled", "float64", steps=3, backends=("numpy",))
    assert calls == ["model"]


def test_lockstep_keeps_the_scalar_state_dtype_torch_keeps():
    """NAdam keeps mu_product in torch's scalar dtype (float32) beside float64 parameters. A
    lockstep run loads the reference's values into the rule's state each step: in float64 its
    next product rounds differently from torch's (2e-8 relative, this configuration failed
    check-references once its free run landed just above 1e-12). In the rule's own dtype the
    one-step errors are round-off."""
    from suite.optim import get
    from suite.probes import PROBES
    from suite.trajectory import compare, run_rule_lockstep, run_torch

    config = Config("nadam", (("lr", 0.05), ("maximize", True), ("momentum_decay", 0.0),
                              ("weight_decay", 0.1)))
    ref = run_torch(crossval._torch_factory(config, "forloop"), config.hyper,
                    PROBES["scaled"], 20, "float64")
    for backend in ("numpy", "numba", "torch"):
        ours = run_rule_lockstep(get("nadam", backend=backend, **config.hyper), ref)
        errors = {r.quantity: r.max_error for r in compare(ours, ref, 1e-12)}
        assert errors["mu_product[0]"] <= 1e-15, (backend, errors)
        assert max(errors.values()) <= 1e-12, (backend, errors)


@pytest.mark.parametrize(("dtype", "nudge"), [("float64", 1e-9), ("float32", 3e-5)])
def test_cell_runs_torch_and_ours_in_the_cell_dtype_and_labels_every_mode(monkeypatch, dtype,
                                                                          nudge):
    """One cell of centred RMSprop on the model probe, with torch's for-loop run nudged by
    3 x ``nudge`` x step and its foreach run by ``nudge`` x step (above the dtype's tolerance;
    spies around crossval's own names): torch's for-loop float64 run feeds the gradients, then
    each torch implementation and each of our backends runs in the cell's dtype; the foreach
    row fails its free run but is within torch's own spread ("spread"); the for-loop row fails
    its free run with no spread to appeal to, so it is judged step by step ("lockstep", with
    its free run's error and the centred variance's conditioning kept); every row names its
    probe, backend and implementation."""
    from dataclasses import replace

    real_factory, real_torch = crossval._torch_factory, crossval.run_torch
    real_get, real_rule, real_lock = crossval.get, crossval.run_rule, crossval.run_rule_lockstep
    impl_of, torch_calls, got, rule_dtypes, lock_dtypes = {}, [], [], [], []

    def factory(config, impl):
        f = real_factory(config, impl)
        impl_of[id(f)] = impl
        return f

    def run_torch(f, hyper, pr, steps, dtype="float64", **kw):
        impl = impl_of[id(f)]
        torch_calls.append((impl, dtype))
        t = real_torch(f, hyper, pr, steps, dtype, **kw)
        c = {"forloop": 3 * nudge, "foreach": nudge}[impl]
        k = np.arange(t.steps + 1, dtype=float)
        return replace(t, values={q: v * (1 + c * k).reshape(-1, *[1] * (v.ndim - 1))
                                  if q.startswith("param[") else v
                                  for q, v in t.values.items()})

    def get(name, **kw):
        got.append(kw.get("backend"))
        return real_get(name, **kw)

    def run_rule(rule, pr, steps, dtype="float64", **kw):
        rule_dtypes.append(dtype)
        return real_rule(rule, pr, steps, dtype, **kw)

    def run_rule_lockstep(rule, ref, dtype="float64", **kw):
        lock_dtypes.append(dtype)
        return real_lock(rule, ref, dtype, **kw)

    for name, fn in (("_torch_factory", factory), ("run_torch", run_torch), ("get", get),
                     ("run_rule", run_rule), ("run_rule_lockstep", run_rule_lockstep)):
        monkeypatch.setattr(crossval, name, fn)
    cfg = Config("rmsprop", (("lr", 0.01), ("centered", True)))
    rows = crossval.crossval_cell(cfg, "model", dtype, steps=20, backends=("numpy", "numba"))
    # in a float64 cell the gradient run is also the for-loop comparison run
    assert torch_calls == ([("forloop", "float64")] if dtype == "float64" else
                           [("forloop", "float64"), ("forloop", "float32")]) + \
        [("foreach", dtype)]
    assert got == ["numpy", "numba"]
    assert rule_dtypes == [dtype, dtype]
    assert lock_dtypes == [dtype, dtype]
    assert [(r["backend"], r["torch_impl"], r["mode"]) for r in rows] == [
        ("numpy", "forloop", "lockstep"), ("numpy", "foreach", "spread"),
        ("numba", "forloop", "lockstep"), ("numba", "foreach", "spread")]
    for r in rows:
        assert (r["probe"], r["dtype"], r["config"]) == ("model", dtype, cfg.id)
        if r["mode"] == "lockstep":
            # the free run's error is kept: about the for-loop nudge x 20 steps
            assert 20 * nudge < r["free_run_error"] < 1000 * nudge, r
            assert r["condition"] > 1.0, r
        else:
            assert r["passed"], r
            assert r["torch_spread"] > 10 * nudge, r
    # rows that pass their free run keep it, and name their cell too
    monkeypatch.undo()
    rows = crossval.crossval_cell(cfg, "scaled", dtype, steps=3, backends=("numpy",))
    assert [(r["probe"], r["mode"], r["passed"]) for r in rows] == [("scaled", "free", True)] * 2


def _traj(param, state=None, error=None):
    values = {"param[0]": np.asarray(param, float).reshape(-1, 1)}
    if state is not None:
        values["exp_avg[0]"] = np.asarray(state, float).reshape(-1, 1)
    return Trajectory(values=values, present={q: np.ones(len(v), bool) for q, v in values.items()},
                      steps=len(param) - 1, error=error)


def test_row_on_hand_made_trajectories():
    """One row per comparison, from trajectories whose errors are known by hand (relative to
    the running magnitude: parameter 4e-10 / 4 = 1e-10 at step 2, state 3e-11 / 1), float64
    tolerance 1e-12."""
    cfg = Config("adam", (("lr", 0.1),))
    ref = _traj([1.0, 2.0, 4.0], [0.0, 1.0, 1.0])
    ours = _traj([1.0, 2.0, 4.0 + 4e-10], [0.0, 1.0, 1.0 + 3e-11])

    def row(o=ours, **kw):
        return crossval._row(cfg, "scaled", "float64", "numpy", "foreach", 2, o, ref,
                             kw.pop("mode", "free"), **kw)

    r = row()
    assert (r["optimizer"], r["config"], r["probe"], r["dtype"], r["backend"], r["torch_impl"],
            r["steps"], r["compared_steps"], r["mode"]) == (
        "adam", cfg.id, "scaled", "float64", "numpy", "foreach", 2, 2, "free")
    np.testing.assert_allclose([r["max_error_param"], r["max_error_state"]], [1e-10, 3e-11],
                               rtol=1e-5)
    assert r["free_run_error"] == r["max_error_param"]
    assert (r["worst_quantity"], r["first_bad_step"], r["passed"], r["error"]) == (
        "param[0]", 2, False, "")
    assert (r["tol"], r["condition"]) == (1e-12, 1.0)
    assert np.isnan(r["torch_spread"])
    # the conditioning multiplies each step's tolerance (step 2: 1e-9 > 1e-10 and 3e-11)
    r = row(condition=np.array([1.0, 1.0, 1000.0]), mode="lockstep")
    assert (r["passed"], r["first_bad_step"], r["condition"]) == (True, None, 1000.0)
    assert np.isnan(r["free_run_error"])   # only a free run's own error is filled in here
    # judged against torch's own spread, quantity by quantity: within it where torch's
    # for-loop is as far from the reference (param 2e-10, state 5e-11), not where the state
    # of torch's for-loop is exact
    loose = _traj([1.0, 2.0, 4.0 + 8e-10], [0.0, 1.0, 1.0 + 5e-11])
    r = row(mode="spread", spread=loose)
    assert r["passed"]
    np.testing.assert_allclose(r["torch_spread"], 2e-10, rtol=1e-5)
    r = row(mode="spread", spread=_traj([1.0, 2.0, 4.0 + 8e-10], [0.0, 1.0, 1.0]))
    assert (r["passed"], r["worst_quantity"], r["first_bad_step"]) == (False, "param[0]", 2)
    # every state entry of the reference is required: one the run lacks fails it
    r = row(o=_traj([1.0, 2.0, 4.0]))
    assert r["passed"] is False
    assert r["max_error_state"] == np.inf
    # a run that raised: no comparison, its message kept
    r = row(o=_traj([1.0, 2.0, 4.0], [0.0, 1.0, 1.0], error="boom"))
    assert (r["passed"], r["error"], r["worst_quantity"], r["first_bad_step"]) == (
        False, "boom", "", None)
    assert np.isnan(r["max_error_param"])
    assert np.isnan(r["max_error_state"])
    assert np.isnan(r["free_run_error"])
