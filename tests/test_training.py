"""The training study: curves, twins agree, divergence, metrics, tuning, performance profiles."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from suite import subjects, tasks
from suite.schedules import Schedule
from suite.studies import training as T

#: a learning rate per task at which Adam trains (the twins are compared there)
ADAM_LR = {"digits_logreg": 0.03, "digits_mlp": 0.01, "digits_cnn": 0.01,
           "breast_cancer_logreg": 0.03, "noisy_quadratic": 0.1, "deep_linear": 3e-3}


def test_curves_have_the_documented_columns_and_steps():
    df = T.run("digits_logreg", "sgd", seeds=(0, 1), steps=25, record_every=10, lr=0.1)
    assert list(df.columns) == T.CURVE_COLUMNS
    assert sorted(df["seed"].unique()) == [0, 1]
    assert list(df[df.seed == 0]["step"]) == [0, 10, 20, 25]
    row = df[(df.seed == 0) & (df.step == 20)].iloc[0]
    assert row["epoch"] == pytest.approx(20 * 64 / 1347)
    assert (df["lr"] == 0.1).all()
    assert not df["diverged"].any()
    assert (df.groupby("seed")["wall_time"].diff().dropna() >= 0).all()
    # step 0 is the model before training: its loss is the initial model's on the full set
    t = tasks.get("digits_logreg")
    d = t.data()
    with torch.no_grad():
        loss0 = float(t.loss(t.model(0)(d.x_train), d.y_train))
    assert df[(df.seed == 0) & (df.step == 0)]["train_loss"].iloc[0] == pytest.approx(loss0)


@pytest.mark.parametrize("name", list(ADAM_LR))
def test_reference_adam_and_torch_adam_give_the_same_curves(name):
    lr = ADAM_LR[name]
    steps = 60
    # float64: the same curves to round-off; float32: within float32 differences
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        ref = T.run(name, "adam", steps=steps, lr=lr, dtype=dtype)
        twin = T.run(name, torch.optim.Adam, steps=steps, lr=lr, dtype=dtype)
        assert len(ref) == len(twin) == steps // tasks.get(name).record_every + 1
        for col in ("train_loss", "test_loss"):
            a, b = ref[col].to_numpy(), twin[col].to_numpy()
            assert np.max(np.abs(a - b) / np.abs(b)) <= tol, (name, dtype, col)
        assert ref["train_loss"].iloc[-1] < 0.9 * ref["train_loss"].iloc[0]  # it trained


def test_other_twins_and_a_schedule_agree():
    sched = Schedule("cosine", {"T_max": 40})
    for ref, twin, hyper in (("momentum", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                             ("rmsprop", torch.optim.RMSprop, {"lr": 1e-3})):
        a = T.run("digits_mlp", ref, steps=40, schedule=sched, dtype=torch.float64, **hyper)
        b = T.run("digits_mlp", twin, steps=40, schedule=sched, dtype=torch.float64, **hyper)
        assert np.allclose(a["train_loss"], b["train_loss"], rtol=1e-12, atol=0)
    # the schedule is applied: a constant lr gives a different curve
    c = T.run("digits_mlp", "rmsprop", steps=40, dtype=torch.float64, lr=1e-3)
    assert not np.allclose(a["train_loss"], c["train_loss"], rtol=1e-6)


def test_same_seed_same_batches_and_weights_for_every_optimizer():
    a, b = T._Batches(100, 32, seed=5), T._Batches(100, 32, seed=5)
    first = [a.next() for _ in range(7)]
    assert all(torch.equal(x, b.next()) for x in first)
    # the stream covers each example once per epoch
    epoch = torch.cat(first)[:96].tolist() + T._Batches(100, 32, 5).buf[96:100].tolist()
    assert sorted(epoch) == list(range(100))
    c = T._Batches(100, 32, seed=6)
    assert not torch.equal(first[0], c.next())


def test_digits_mlp_with_adam_reaches_the_target_and_095_test_accuracy():
    df = T.run("digits_mlp", "adam", seeds=(0,), lr=1e-2)
    s = T.summarize(df).iloc[0]
    assert s["final_test_accuracy"] >= 0.95
    assert s["steps_to_target"] <= tasks.get("digits_mlp").steps
    assert not s["diverged"]


def test_divergence_ends_the_run_with_a_flag_not_the_sweep():
    df = T.sweep(["noisy_quadratic"], ["sgd"], [0.01, 10.0], seeds=[0], steps=100)
    runs = T.summarize(df).set_index("lr")
    assert runs.loc[10.0, "diverged"]
    assert runs.loc[10.0, "steps_run"] < 100
    assert math.isnan(runs.loc[10.0, "final_train_loss"])
    assert math.isnan(runs.loc[10.0, "steps_to_target"])
    assert not runs.loc[0.01, "diverged"]
    assert runs.loc[0.01, "steps_run"] == 100


class _Breaks(torch.optim.SGD):
    """SGD that raises on its third step (an optimizer giving up)."""

    def step(self, closure=None):
        self.n = getattr(self, "n", 0) + 1
        if self.n == 3:
            raise RuntimeError("singular preconditioner")
        return super().step(closure)


def test_an_optimizer_that_raises_ends_its_run_with_the_error():
    df = T.run("digits_logreg", _Breaks, steps=20, record_every=1, lr=0.1)
    assert df["diverged"].all()
    assert df["step"].max() == 3
    assert (df["error"] == "RuntimeError: singular preconditioner").all()


def test_summarize_and_aggregate_on_a_hand_made_frame():
    rows = []
    # seed 0 reaches 0.05 at step 20; seed 1 at step 30; seed 2 never (task target 0.05)
    losses = {0: [2.0, 0.5, 0.04, 0.03], 1: [2.0, 0.5, 0.2, 0.05], 2: [2.0, 1.0, 0.9, 0.8]}
    for seed, ls in losses.items():
        for k, loss in enumerate(ls):
            rows.append({"task": "digits_logreg", "optimizer": "x", "lr": 0.1, "seed": seed,
                         "step": 10 * k, "epoch": 0.0, "train_loss": loss, "test_loss": loss,
                         "test_accuracy": 0.9, "wall_time": 0.5 * k, "diverged": False,
                         "error": ""})
    s = T.summarize(pd.DataFrame(rows)).set_index("seed")
    assert list(s["steps_to_target"].fillna(-1)) == [20, 30, -1]
    assert list(s["time_to_target"].fillna(-1)) == [1.0, 1.5, -1]
    assert list(s["final_train_loss"]) == [0.03, 0.05, 0.8]
    a = T.aggregate(s.reset_index()).iloc[0]
    assert a["success_rate"] == pytest.approx(2 / 3)
    assert a["steps_to_target_median"] == 30  # of (20, 30, inf)
    assert a["steps_to_target_q25"] == 25  # linear interpolation between 20 and 30
    assert math.isinf(a["steps_to_target_q75"])
    assert a["final_train_loss_median"] == 0.05
    # another target per task
    s2 = T.summarize(pd.DataFrame(rows), targets={"digits_logreg": 0.6})
    assert list(s2["steps_to_target"].fillna(-1)) == [10, 10, -1]


def test_performance_profile_matches_a_hand_computed_example():
    nan = math.nan
    # cost:   p1        p2        p3 (nobody solves it)
    # A       10        30        fail
    # B       20        45        fail
    # C       fail      60        fail
    # ratios: A (1, 1, inf), B (2, 1.5, inf), C (inf, 2, inf)
    frame = pd.DataFrame({
        "task": ["p1", "p1", "p1", "p2", "p2", "p2", "p3", "p3", "p3"],
        "optimizer": ["A", "B", "C"] * 3,
        "steps_to_target": [10, 20, nan, 30, 45, 60, nan, math.inf, nan]})
    prof = T.performance_profile(frame)
    assert list(prof.columns) == ["optimizer", "tau", "fraction"]
    got = {(r.optimizer, r.tau): r.fraction for r in prof.itertuples()}
    expected = {("A", 1.0): 2 / 3, ("A", 1.5): 2 / 3, ("A", 2.0): 2 / 3,
                ("B", 1.0): 0.0, ("B", 1.5): 1 / 3, ("B", 2.0): 2 / 3,
                ("C", 1.0): 0.0, ("C", 1.5): 0.0, ("C", 2.0): 1 / 3}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), k
    # AlgoPerf's variant: ratios above tau_max count as failures
    cut = T.performance_profile(frame, taus=[1, 2, 10], tau_max=1.8)
    assert list(cut[cut.optimizer == "B"]["fraction"]) == pytest.approx([0, 1 / 3, 1 / 3])
    assert list(cut[cut.optimizer == "C"]["fraction"]) == [0, 0, 0]
    # the area on [1, 4] / 3: A 2/3 throughout; B 0, 1/3 on [1.5, 2), 2/3 on [2, 4]
    score = T.profile_score(prof).set_index("optimizer")["score"]
    assert score["A"] == pytest.approx(2 / 3)
    assert score["B"] == pytest.approx((0.5 / 3 + 2 * 2 / 3) / 3)
    assert score["C"] == pytest.approx((2 / 3) / 3)


def test_performance_profile_takes_the_median_of_repeated_rows_and_checks_input():
    frame = pd.DataFrame({"task": ["p"] * 4 + ["q"] * 2,
                          "optimizer": ["A", "A", "A", "B", "A", "B"],
                          "steps_to_target": [10, 8, math.nan, 12, 5, 10]})
    # A's median on p is 10 (of 8, 10, inf): B (12) is 1.2x; on q B is 2x
    prof = T.performance_profile(frame)
    b = prof[prof.optimizer == "B"].set_index("tau")["fraction"]
    assert b[1.2] == 0.5
    assert b[2.0] == 1.0
    with pytest.raises(ValueError, match=r"costs must be > 0"):
        T.performance_profile(frame.assign(steps_to_target=0))
    with pytest.raises(ValueError, match=r"\('q', 'B'\)|missing"):
        T.performance_profile(frame.iloc[:5])
    with pytest.raises(ValueError, match=r"lacks column"):
        T.performance_profile(frame, cost="time")


def test_performance_profile_over_the_test_functions():
    from suite.studies import convergence

    starts = np.array([[0.5, 0.5], [-1.0, 1.0], [2.0, -1.5]])
    frames = [convergence.run(p, o, starts, 3000, backend="numpy", lr=lr)
              for p in ("booth", "himmelblau") for o, lr in (("adam", 0.05), ("sgd", 0.01))]
    conv = pd.concat(frames, ignore_index=True)
    col = "steps_to_target_1e-04"
    prof = T.performance_profile(conv, cost=col, problem="problem")
    med = conv.assign(c=conv[col].fillna(np.inf)).groupby(["problem", "optimizer"])["c"].median()
    for opt in ("adam", "sgd"):
        best_share = np.mean([med[p][opt] == med[p].min() and np.isfinite(med[p][opt])
                              for p in ("booth", "himmelblau")])
        at_one = prof[(prof.optimizer == opt) & (prof.tau == 1.0)]["fraction"].iloc[0]
        assert at_one == best_share


def test_tune_follows_the_protocol(tmp_path):
    out = T.tune(["digits_logreg"], ["sgd", "adam"], lrs=[0.01, 0.1], tuning_seeds=(0,),
                 final_seeds=2, steps=120, checkpoint=tmp_path)
    tuned, choice = out["training_tuning"], out["training_choice"]
    assert len(tuned) == 4  # 2 optimizers x 2 lrs x 1 seed
    assert set(tuned["seed"]) == {0}
    for r in choice.itertuples():
        mine = tuned[tuned.optimizer == r.optimizer]
        # the choice is the lr with the fewest steps to target (failures last), then the
        # lower final training loss
        key = mine.assign(c=mine["steps_to_target"].fillna(np.inf)).sort_values(
            ["c", "final_train_loss", "lr"])
        assert r.lr == key["lr"].iloc[0]
    runs = out["training_runs"]
    assert sorted(runs["seed"].unique()) == [1, 2]  # fresh seeds, never the tuning seed
    assert set(zip(runs.optimizer, runs.lr, strict=True)) == set(
        zip(choice.optimizer, choice.lr, strict=True))
    assert len(out["training_table"]) == 2
    prof = out["training_profile"]
    assert set(prof["optimizer"]) == {"sgd", "adam"}
    assert (tmp_path / "tuning" / "cell-0.pkl").exists()


def test_sweep_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    first = T.sweep(["deep_linear"], ["adam"], [1e-3], [0], steps=20, checkpoint=tmp_path)

    def must_not_run(cell):
        raise AssertionError("a checkpointed cell ran again")

    monkeypatch.setattr(T, "_cell", must_not_run)
    again = T.sweep(["deep_linear"], ["adam"], [1e-3], [0], steps=20, checkpoint=tmp_path)
    pd.testing.assert_frame_equal(first, again)


def test_user_optimizer_by_factory_and_subject_name():
    sub = subjects.resolve(lambda params, **h: torch.optim.SGD(params, **h), name="mysgd")
    df = T.run("digits_logreg", sub, steps=10, lr=0.1)
    assert (df["optimizer"] == "mysgd").all()
    ref = T.run("digits_logreg", "sgd", steps=10, lr=0.1)
    assert np.allclose(df["train_loss"], ref["train_loss"], rtol=1e-4)


def test_bad_arguments_get_specific_errors():
    with pytest.raises(ValueError, match=r"unknown task 'nope'"):
        T.run("nope", "adam")
    with pytest.raises(ValueError, match=r"steps=0"):
        T.run("digits_logreg", "adam", steps=0)
    with pytest.raises(ValueError, match=r"batch_size=5000 exceeds the 1347"):
        T.run("digits_logreg", "adam", batch_size=5000)
    with pytest.raises(ValueError, match=r"seeds is empty"):
        T.run("digits_logreg", "adam", seeds=())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ADAM_LR))
def test_every_reference_optimizer_runs_every_default_budget(name):
    from suite import optim

    for opt in optim.OPTIMIZERS:
        df = T.run(name, opt)
        assert df["step"].max() == tasks.get(name).steps, opt
        assert not df["diverged"].any(), opt


def test_quantile_is_numpys_where_finite_and_keeps_inf():
    rng = np.random.default_rng(0)
    x = rng.normal(size=7)
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert T.quantile(x, p) == pytest.approx(np.quantile(x, p), rel=1e-14)
    assert T.quantile([20, 30, math.inf], 0.5) == 30
    assert math.isinf(T.quantile([20, 30, math.inf], 0.75))
    assert math.isinf(T.quantile([math.inf, math.inf], 0.5))


def test_training_part_of_gradsuite_run_and_its_report(tmp_path, capsys):
    from suite.cli import main

    assert main(["run", "--parts", "training", "--tasks", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown task(s) nope" in capsys.readouterr().err
    assert main(["run", "--parts", "training", "--size", "quick", "--tasks",
                 "digits_logreg,noisy_quadratic", "--optimizers", "sgd,adam", "--jobs", "1",
                 "--out", str(tmp_path)]) == 0
    (d,) = tmp_path.glob("run-*")
    for name in ("training_tuning", "training_choice", "training_curves", "training_runs",
                 "training_table", "training_profile", "training_tasks",
                 "training_profile_score"):
        assert (d / f"{name}.parquet").exists(), name
    table = pd.read_parquet(d / "training_table.parquet")
    assert set(table["task"]) == {"digits_logreg", "noisy_quadratic"}
    curves = pd.read_parquet(d / "training_curves.parquet")
    assert curves[curves.task == "digits_logreg"]["step"].max() == 75  # quick: 1/4 budget
    page = (d / "index.html").read_text()
    assert "Training on real data" in page
    assert page.count("<img") >= 2  # loss bands and the performance profile
    assert "Time to target" in page


def _without_times(df):
    return df.drop(columns=["wall_time"])


@pytest.mark.slow
def test_process_pool_gives_the_same_curves_as_one_process():
    args = (["deep_linear", "noisy_quadratic"], ["adam", torch.optim.SGD], [1e-2], [0, 1])
    one = T.sweep(*args, steps=20)
    pool = T.sweep(*args, steps=20, jobs=2)
    pd.testing.assert_frame_equal(_without_times(one), _without_times(pool))
    assert set(one["optimizer"]) == {"adam", "SGD"}


@pytest.mark.slow
def test_dask_gives_the_same_curves():
    pytest.importorskip("dask.distributed")
    args = (["deep_linear"], ["adam", "sgd"], [1e-2], [0, 1])
    one = T.sweep(*args, steps=20)
    dask = T.sweep(*args, steps=20, dask="local")
    pd.testing.assert_frame_equal(_without_times(one), _without_times(dask))


def test_training_part_trains_users_optimizers_beside_the_references(tmp_path):
    """--optimizer module:Class reaches the training part, not only the convergence part."""
    from suite.cli import main

    assert main(["run", "--parts", "training", "--size", "quick", "--tasks", "digits_logreg",
                 "--optimizers", "adam", "--optimizer", "torch.optim:SGD", "--jobs", "1",
                 "--no-report", "--out", str(tmp_path)]) == 0
    (d,) = tmp_path.glob("run-*")
    table = pd.read_parquet(d / "training_table.parquet")
    assert set(table["optimizer"]) == {"adam", "SGD"}
    curves = pd.read_parquet(d / "training_curves.parquet")
    assert set(curves["optimizer"]) == {"adam", "SGD"}
