"""crossval's table driver, summary order and lockstep conditioning on hand-made inputs
(milliseconds; the comparisons themselves are in test_optim_crossval.py)."""

import numpy as np
import pandas as pd

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
