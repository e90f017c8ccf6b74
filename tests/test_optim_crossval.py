"""Our rules against torch.optim, driven by the configuration table (suite.optim.configs).

Every parameter and every state entry is compared at every step of 200, for each backend
against each of torch's implementations (for-loop, foreach, fused where torch has one).
The plain run covers PyTorch's own configurations of SGD, Adagrad, RMSprop, Adam and AdamW fully
and every 4th of their grid configurations in float64 on the badly scaled probe; of NAdam, RAdam,
Adamax, Adadelta, Rprop, ASGD and Adafactor, every one of PyTorch's configurations (so each
option is on at least once) on every backend against torch's for-loop implementation, and the
last of them against every torch implementation, on the model probe (a matrix, vectors, a
scalar, a None-gradient step and a frozen layer) in float64; ``-m slow`` (and
``gradsuite check-references``, which CI runs) covers the whole table.
"""

import numpy as np
import pytest

from suite.optim import crossval
from suite.optim.configs import CONFIGS, configs_for, count_by_optimizer

FIRST_FIVE = ("sgd", "adagrad", "rmsprop", "adam", "adamw")
NEW_RULES = ("nadam", "radam", "adamax", "adadelta", "rprop", "asgd", "adafactor")
TORCH_CONFIGS = [c for c in configs_for(source="torch") if c.optimizer in FIRST_FIVE]
GRID = [c for c in configs_for(source="grid") if c.optimizer in FIRST_FIVE]
NEW_SAMPLE = [configs_for(n, "torch")[-1] for n in NEW_RULES]


def _assert_rows(rows):
    bad = [r for r in rows if not r["passed"]]
    assert not bad, "\n".join(
        f"{r['config']} {r['probe']} {r['dtype']} {r['backend']} vs {r['torch_impl']}: "
        f"{r['worst_quantity']} err={r['max_error_param']:.3g}/{r['max_error_state']:.3g} "
        f"first bad step {r['first_bad_step']} {r['error']}" for r in bad)
    # the comparison really happened: every row has finite, measured errors
    for r in rows:
        assert np.isfinite(r["max_error_param"])


def test_table_size():
    counts = count_by_optimizer()
    assert set(counts) == set(FIRST_FIVE + NEW_RULES)
    assert all(n >= 30 for n in counts.values()), counts
    assert len({c.id for c in CONFIGS}) == len(CONFIGS)


@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=lambda c: c.id)
@pytest.mark.parametrize("probe", ["scaled", "model"])
def test_torch_configs_float64(config, probe):
    _assert_rows(crossval.crossval_cell(config, probe, "float64", steps=200))


@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=lambda c: c.id)
def test_torch_configs_float32(config):
    rows = crossval.crossval_cell(config, "scaled", "float32", steps=200, impls=("forloop",))
    _assert_rows(rows)


@pytest.mark.parametrize("config", GRID[::4], ids=lambda c: c.id)
def test_grid_sample_float64(config):
    rows = crossval.crossval_cell(config, "scaled", "float64", steps=200,
                                  backends=("numpy", "numba"), impls=("forloop",))
    _assert_rows(rows)


@pytest.mark.parametrize("config", NEW_SAMPLE, ids=lambda c: c.id)
def test_new_rules_sample(config):
    rows = crossval.crossval_cell(config, "model", "float64", steps=200)
    assert {r["backend"] for r in rows} == {"numpy", "numba", "torch"}
    _assert_rows(rows)


# every option of the newer rules on at least once in the plain run (maximize, weight decay,
# decoupled decay, t0, etas, step sizes, beta2_decay, d, ...): PyTorch's own configurations
NEW_TORCH = [c for c in configs_for(source="torch") if c.optimizer in NEW_RULES]


@pytest.mark.parametrize("config", NEW_TORCH, ids=lambda c: c.id)
def test_new_rules_every_torch_configuration(config):
    rows = crossval.crossval_cell(config, "model", "float64", steps=200, impls=("forloop",))
    assert {r["backend"] for r in rows} == {"numpy", "numba", "torch"}
    _assert_rows(rows)


def test_torch_foreach_asgd_is_judged_by_torchs_own_spread():
    """torch's foreach ASGD rounds eta in float32 arithmetic: our float64 rules (which follow
    its for-loop) differ from it by ~1e-7, exactly as much as torch's for-loop does."""
    rows = crossval.crossval_cell(configs_for("asgd", "torch")[0], "scaled", "float64",
                                  steps=50, backends=("numpy",))
    by_impl = {r["torch_impl"]: r for r in rows}
    assert by_impl["forloop"]["mode"] == "free"
    assert by_impl["forloop"]["max_error_param"] < 1e-14
    foreach = by_impl["foreach"]
    assert foreach["mode"] == "spread"
    assert foreach["passed"]
    assert 1e-9 < foreach["torch_spread"] < 1e-5
    assert abs(foreach["max_error_param"] - foreach["torch_spread"]) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("config", configs_for(source="grid"), ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("probe", ["scaled", "model", "decay", "sparse"])
def test_full_grid(config, dtype, probe):
    _assert_rows(crossval.crossval_cell(config, probe, dtype, steps=200))


def test_a_wrong_rule_is_caught():
    """The comparison can fail: torch's Adam against our AdamW-style decay must disagree."""
    from suite import optim
    from suite.optim.configs import Config
    from suite.probes import PROBES
    from suite.trajectory import compare, run_rule, run_torch

    rule = optim.get("adamw", backend="numpy", weight_decay=0.1)
    ours = run_rule(rule, PROBES["scaled"], 50)
    hyper = optim.get("adam", weight_decay=0.1).hyper
    ref = run_torch(lambda p, **h: __import__("torch").optim.Adam(p, foreach=False, **h), hyper,
                    PROBES["scaled"], 50)
    res = compare(ours, ref, crossval.TOLERANCE["float64"])
    assert max(r.max_error for r in res) > 1e-6
    assert Config  # imported for the table's type


# ---- the table's frame, its summary and the lockstep conditioning, by hand ----------------

SCHEMA = ["optimizer", "config", "source", "probe", "dtype", "backend", "torch_impl", "steps",
          "compared_steps", "mode", "max_error_param", "max_error_state", "worst_quantity",
          "first_bad_step", "tol", "condition", "passed", "error", "free_run_error",
          "torch_spread"]


def test_run_table_has_the_documented_schema_and_one_row_per_comparison():
    from suite.optim.configs import Config

    configs = [Config("sgd", (("lr", 0.05), ("momentum", 0.9))),
               Config("rmsprop", (("lr", 0.01),))]
    frame = crossval.run_table(configs, probes=("scaled",), dtypes=("float64", "float32"),
                               steps=20, backends=("numpy", "torch"))
    assert list(frame.columns) == SCHEMA
    # sgd: forloop, foreach, fused; rmsprop: forloop, foreach; x 2 dtypes x 2 backends
    assert len(frame) == (3 + 2) * 2 * 2
    assert set(zip(frame.optimizer, frame.torch_impl, strict=True)) == {
        ("sgd", "forloop"), ("sgd", "foreach"), ("sgd", "fused"), ("rmsprop", "forloop"),
        ("rmsprop", "foreach")}
    assert frame["passed"].all()
    assert (frame["mode"] == "free").all()
    assert (frame["steps"] == 20).all()
    assert (frame["compared_steps"] == 20).all()
    assert (frame["tol"] == frame["dtype"].map(crossval.TOLERANCE)).all()
    assert (frame["condition"] == 1.0).all()
    assert (frame["error"] == "").all()
    assert frame["first_bad_step"].isna().all()
    assert frame["torch_spread"].isna().all()
    assert (frame["source"] == "grid").all()
    # the free run's error is the larger of the parameter and state errors
    np.testing.assert_array_equal(frame["free_run_error"],
                                  frame[["max_error_param", "max_error_state"]].max(axis=1))
    assert (frame.loc[frame.dtype == "float64", "free_run_error"] < 1e-12).all()


def test_summary_counts_and_worst_errors_by_hand():
    import pandas as pd

    frame = pd.DataFrame({
        "optimizer": ["adam"] * 4 + ["sgd"], "dtype": ["float64"] * 5,
        "backend": ["numpy"] * 5, "torch_impl": ["forloop"] * 3 + ["foreach", "forloop"],
        "config": ["a", "a", "b", "a", "c"], "passed": [True, False, False, True, True],
        "max_error_param": [1e-15, 3e-12, 2e-13, 1e-14, 0.0],
        "max_error_state": [2e-15, 1e-16, 5e-12, 1e-14, 0.0],
    })
    s = crossval.summary(frame).set_index(["optimizer", "torch_impl"])
    assert list(crossval.summary(frame).columns) == [
        "optimizer", "dtype", "backend", "torch_impl", "configs", "cells", "failed",
        "max_error_param", "max_error_state"]
    assert s.loc[("adam", "forloop"), ["configs", "cells", "failed"]].tolist() == [2, 3, 2]
    assert s.loc[("adam", "forloop"), "max_error_param"] == 3e-12
    assert s.loc[("adam", "forloop"), "max_error_state"] == 5e-12
    assert s.loc[("adam", "foreach"), ["configs", "cells", "failed"]].tolist() == [1, 1, 0]
    assert s.loc[("sgd", "forloop"), ["configs", "cells", "failed"]].tolist() == [1, 1, 0]
    assert len(s) == 3


def test_centred_condition_by_hand():
    """κ_t = max_i v_i / |v_i - ḡ_i²| (at least 1, 1 where undefined), and the step into t
    takes the larger of κ_{t-1} and κ_t."""
    from suite.trajectory import Trajectory

    v = np.array([[np.nan, np.nan], [4.0, 1.0], [2.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    ga = np.array([[np.nan, np.nan], [1.9, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0 ** 0.5]])
    ref = Trajectory(values={"param[0]": np.zeros((5, 2)), "square_avg[0]": v,
                             "grad_avg[0]": ga,
                             "square_avg[1]": np.full((5, 1), 9.0),  # not centred: ignored
                             # an empty parameter (torch allows them) contributes nothing
                             "square_avg[2]": np.zeros((5, 0)), "grad_avg[2]": np.zeros((5, 0))},
                     steps=4)
    # step 3: 1 / |1 - 1| is infinite -> 1; step 4: 1 / |1 - 3| = 0.5 -> 1
    k = [1.0, 4.0 / (4.0 - 1.9 ** 2), 2.0, 1.0, 1.0]
    want = [k[0], max(k[0], k[1]), max(k[1], k[2]), max(k[2], k[3]), max(k[3], k[4])]
    np.testing.assert_allclose(crossval.centred_condition(ref), want, rtol=1e-14)
    plain = Trajectory(values={"square_avg[0]": v}, steps=4)
    np.testing.assert_array_equal(crossval.centred_condition(plain), np.ones(5))


def test_torch_factory_forces_each_implementation():
    import torch

    from suite.optim.configs import Config

    config = Config("adam", (("lr", 0.01),))
    p = [torch.zeros(2, requires_grad=True)]
    flags = {impl: crossval._torch_factory(config, impl)(p, lr=0.5).defaults
             for impl in ("forloop", "foreach", "fused")}
    assert (flags["forloop"]["foreach"], flags["forloop"]["fused"]) == (False, None)
    assert (flags["foreach"]["foreach"], flags["foreach"]["fused"]) == (True, None)
    assert (flags["fused"]["foreach"], flags["fused"]["fused"]) == (None, True)
    assert all(f["lr"] == 0.5 for f in flags.values())
    assert isinstance(crossval._torch_factory(config, "fused")(p), torch.optim.Adam)


def test_crossval_cell_defaults_are_the_documented_ones():
    """float64 and 200 steps unless told; every backend against every torch implementation."""
    from suite.backends import BACKENDS
    from suite.optim.configs import Config

    rows = crossval.crossval_cell(Config("sgd", (("lr", 0.01),)), "scaled")
    assert {(r["backend"], r["torch_impl"]) for r in rows} == {
        (b, i) for b in BACKENDS for i in ("forloop", "foreach", "fused")}
    assert len(rows) == 3 * len(BACKENDS)
    assert all(r["dtype"] == "float64" and r["tol"] == 1e-12 and r["steps"] == 200
               and r["compared_steps"] == 200 and r["passed"] for r in rows)
