"""The tuning protocol's grid and selection, on hand-made frames with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from suite.studies import tuning


def test_lr_grid_is_log_spaced_and_inclusive():
    assert tuning.lr_grid(1e-3, 1e-1, 2) == (0.001, 0.00316, 0.01, 0.0316, 0.1)
    g = tuning.lr_grid(1e-4, 1.0, 3)
    assert len(g) == 13
    assert g[0] == 1e-4
    assert g[-1] == 1.0
    ratios = np.diff(np.log10(g))
    assert np.allclose(ratios, 1 / 3, atol=2e-3)


@pytest.mark.parametrize(("lo", "hi", "k"), [(0, 1, 2), (1, 0.1, 2), (1e-3, math.inf, 2),
                                            (1e-3, 1, 0)])
def test_lr_grid_rejects_bad_bounds(lo, hi, k):
    with pytest.raises(ValueError, match=r"lr_grid|per_decade"):
        tuning.lr_grid(lo, hi, k)


def _frame(rows):
    return pd.DataFrame(rows, columns=["optimizer", "problem", "lr", "seed",
                                       "steps_to_target", "final_gap"])


def test_select_takes_smallest_median_cost_counting_failures_as_infinite():
    rows = []
    # lr 0.1: fastest when it works, but fails on 2 of 3 seeds -> median inf
    rows += [("a", "p", 0.1, s, c, g) for s, c, g in [(0, 5, 0.0), (1, np.nan, 9.0),
                                                      (2, np.nan, 9.0)]]
    # lr 0.01: median 40 (30, 40, 500)
    rows += [("a", "p", 0.01, s, c, 1e-9) for s, c in [(0, 30), (1, 40), (2, 500)]]
    # lr 0.001: median 60
    rows += [("a", "p", 0.001, s, c, 1e-9) for s, c in [(0, 50), (1, 60), (2, 70)]]
    best = tuning.select(_frame(rows))
    assert len(best) == 1
    row = best.iloc[0]
    assert row["lr"] == 0.01
    assert row["median_cost"] == 40
    assert row["success_rate"] == 1.0
    assert row["n_runs"] == 3
    assert "median steps_to_target" in row["criterion"]


def test_select_breaks_ties_by_tiebreak_then_smaller_lr_and_groups_separately():
    rows = [("a", "p", 0.1, 0, np.nan, 3.0), ("a", "p", 0.01, 0, np.nan, 1.0),
            ("a", "p", 0.001, 0, np.nan, 1.0),            # all fail: the best final gap wins,
            ("b", "p", 0.1, 0, 10, 0.0), ("b", "p", 0.01, 0, 10, 0.0)]   # then smaller lr
    best = tuning.select(_frame(rows)).set_index("optimizer")
    assert best.loc["a", "lr"] == 0.001
    assert best.loc["a", "success_rate"] == 0.0
    assert math.isinf(best.loc["a", "median_cost"])
    assert best.loc["b", "lr"] == 0.01


def test_select_names_missing_columns_and_empty_frames():
    with pytest.raises(ValueError, match="lacks column"):
        tuning.select(pd.DataFrame({"optimizer": ["a"]}))
    with pytest.raises(ValueError, match="empty"):
        tuning.select(_frame([]))


def test_fresh_seeds_are_disjoint_from_tuning_seeds():
    assert tuning.fresh_seeds((0, 1, 2), 3) == (3, 4, 5)
    assert tuning.fresh_seeds((), 2) == (0, 1)


# ---- the sweep ---------------------------------------------------------------------------

def _user_optim_path(monkeypatch):
    import sys
    from pathlib import Path

    here = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(here)
    monkeypatch.setitem(sys.modules, "user_optim", __import__("user_optim"))


def test_sweep_runs_every_cell_chooses_and_reruns_on_fresh_seeds(tmp_path, monkeypatch):
    _user_optim_path(monkeypatch)
    from suite.studies import convergence as C

    lrs = (1e-3, 1e-2, 1e-1)
    out = tuning.sweep(["adam", "user_optim:ClipMomentum"], ["booth", "himmelblau"], lrs=lrs,
                       seeds=(0, 1), steps=300, n_starts=3, n_fresh=2,
                       checkpoint=tmp_path / "ck")
    grid, choice, tuned = out["tuning_grid"], out["tuning_choice"], out["tuned"]
    assert len(grid) == 2 * 2 * 3 * 2 * 3
    assert set(grid["path"]) == {"numba", "torch-per-start"}
    assert len(choice) == 4
    # the choice is select()'s on the grid, and the re-run uses other seeds at that lr
    again = tuning.select(grid).set_index(["optimizer", "problem"])["lr"]
    assert (choice.set_index(["optimizer", "problem"])["lr"] == again).all()
    assert set(tuned["seed"]) == {2, 3}
    assert (choice["at_grid_edge"] == choice["lr"].isin([1e-3, 1e-1])).all()
    assert set(choice["fresh_seeds"]) == {"2 3"}
    for r in choice.itertuples():
        sub = tuned[(tuned.optimizer == r.optimizer) & (tuned.problem == r.problem)]
        assert set(sub["lr"]) == {r.lr}
    # an independent check of one cell: the same starts through the study itself
    one = grid[(grid.optimizer == "adam") & (grid.problem == "booth") & (grid.lr == 0.1)
               & (grid.seed == 1)]
    ref = C.run("booth", "adam", C.random_starts(__import__("suite.problems").problems.get(
        "booth"), 3, 1), 300, backend="numba", targets=(1e-4,), lr=0.1)
    np.testing.assert_array_equal(one["steps_to_target"].to_numpy(),
                                  ref["steps_to_target_1e-04"].to_numpy())
    # resuming reads the checkpoints instead of running again
    again_out = tuning.sweep(["adam", "user_optim:ClipMomentum"], ["booth", "himmelblau"],
                             lrs=lrs, seeds=(0, 1), steps=300, n_starts=3, n_fresh=2,
                             checkpoint=tmp_path / "ck")
    pd.testing.assert_frame_equal(again_out["tuned"], tuned)


def test_a_raising_optimizer_is_a_failed_cell_and_the_sweep_goes_on(monkeypatch):
    _user_optim_path(monkeypatch)
    out = tuning.sweep(["user_optim:Exploding", "sgd"], ["booth"], lrs=(1e-2, 1e-1),
                       seeds=(0,), steps=50, n_starts=2, n_fresh=1)
    grid = out["tuning_grid"]
    bad = grid[grid.optimizer == "Exploding"]
    assert bad["failed"].all()
    assert bad["error"].str.contains("exploded on purpose").all()
    assert not grid.loc[grid.optimizer == "sgd", "failed"].any()
    ch = out["tuning_choice"].set_index("optimizer")
    assert ch.loc["Exploding", "failed_share"] == 1.0
    assert ch.loc["Exploding", "success_rate"] == 0.0


@pytest.mark.slow  # starting forkserver workers (torch, Numba imports) takes 10-30 s here
def test_cells_in_worker_processes_import_the_users_optimizer(monkeypatch):
    """A subject made from an import path is re-imported by the workers (forkserver)."""
    from suite.subjects import resolve
    from suite.sweep import run_cells

    _user_optim_path(monkeypatch)
    sub = resolve("user_optim:ClipMomentum")
    cells = [tuning.Cell(sub, "booth", 2, lr, 0, 100, 2, 1e-4) for lr in (1e-2, 1e-1)]
    serial = run_cells(tuning.run_cell, cells, jobs=1)
    pooled = run_cells(tuning.run_cell, cells, jobs=2)
    pd.testing.assert_frame_equal(pd.DataFrame(serial), pd.DataFrame(pooled))
    assert not any(r["failed"] for r in pooled)
