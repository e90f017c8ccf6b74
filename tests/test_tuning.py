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
