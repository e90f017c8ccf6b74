"""The report's per-optimizer summary, from hand-made frames with known answers."""

import math

import numpy as np
import pandas as pd

from suite.report.summary import optimizer_summary, summary_section, tuning_section


def _frames():
    choice = pd.DataFrame({
        "optimizer": ["adam", "adam", "mine", "mine"],
        "problem": ["himmelblau", "booth", "himmelblau", "booth"],
        "lr": [0.1, 1.0, 0.01, 0.01], "median_cost": [10, 20, 30, math.inf],
        "median_tiebreak": [0, 0, 0, 1], "success_rate": [1, 1, 1, 0.0],
        "failed_share": [0, 0, 0, 0.5], "lr_grid": "0.01 0.1 1", "tuning_seeds": "0 1",
        "fresh_seeds": "2 3", "steps": 100, "starts_per_seed": 2, "target": 1e-4,
        "criterion": "min median steps", "optimizer_kind": ["reference"] * 2 + ["class"] * 2,
        "reference": ["adam", "adam", "adam", "adam"]})
    conv = pd.DataFrame({
        "optimizer": ["adam"] * 4 + ["mine"] * 4,
        "problem": ["himmelblau", "himmelblau", "booth", "booth"] * 2,
        "steps_to_target_1e-04": [10, 20, 30, np.nan, 5, 7, np.nan, np.nan]})
    roof = pd.DataFrame({
        "optimizer": ["adam", "adam", "adam", "mine"],
        "implementation": ["numba", "numpy", "torch.optim-fused", "user:m:Mine"],
        "speedup_vs_best_torch": [1.5, 0.2, 1.0, 0.8], "bytes": [28, 28, 28, 20],
        "state_bytes_per_param_byte": [2.0, 2.0, 2.0, 1.0]})
    cross = pd.DataFrame({"optimizer": ["adam"] * 3, "passed": [True, True, False]})
    user = pd.DataFrame({"optimizer": ["mine"], "reference": ["adam"], "verdict": ["FAIL"],
                         "cells": [28], "cells_agree": [3]})
    return {"tuning_choice": choice, "convergence": conv, "roofline": roof, "crossval": cross,
            "user_conformance": user}


def test_summary_rows_are_computed_from_the_frames():
    s = optimizer_summary(_frames()).set_index("optimizer")
    assert list(s.index) == ["adam", "mine"]
    assert s.loc["adam", "conformance"] == "FAIL vs torch.optim (2/3)"
    assert s.loc["mine", "conformance"] == "FAIL vs adam (3/28)"
    assert s.loc["adam", "speed_vs_torch"] == 1.5
    assert s.loc["adam", "fastest"] == "numba"
    assert s.loc["mine", "speed_vs_torch"] == 0.8
    assert s.loc["adam", "success_rate"] == 0.75
    assert s.loc["adam", "median_steps"] == 20          # of 10, 20, 30
    assert s.loc["mine", "success_rate"] == 0.5
    assert s.loc["mine", "median_steps"] == 6
    assert s.loc["adam", "problems_solved"] == "2/2"
    assert s.loc["mine", "problems_solved"] == "1/2"
    assert s.loc["adam", "tuned_lr"] == "0.1 .. 1"
    assert s.loc["mine", "tuned_lr"] == "0.01"
    assert s.loc["adam", "tuned_lr_himmelblau"] == 0.1
    assert s.loc["mine", "state_bytes_per_param_byte"] == 1.0


def test_sections_render_and_are_empty_without_their_frames():
    f = _frames()
    assert "<table" in summary_section(f)
    assert "fresh seeds 2 3" in tuning_section(f)
    assert summary_section({}) == ""
    assert tuning_section({}) == ""


def _read_table(html):
    """The first <table> of ``html`` as a frame of cell texts (header row first)."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    p = P()
    p.feed(html)
    head, *body = p.rows
    return pd.DataFrame(body, columns=head)


def test_summary_without_tuning_all_passing_and_other_target():
    """No tuning part: the optimizers come from the convergence and roofline frames in that
    order; missing columns read '-' (labels) or NaN (numbers); a cross-validation where every
    cell agrees is a PASS; the roofline's torch rows are not ours, and where no speedup was
    measured the first of ours is shown; the convergence frame's only target is 1e-2."""
    conv = pd.DataFrame({"optimizer": ["sgd", "sgd", "sgd", "sgd", "adam", "adam"],
                         "problem": ["p", "p", "q", "q", "p", "q"],
                         "steps_to_target_1e-02": [4, 8, np.nan, np.nan, 3, np.nan]})
    roof = pd.DataFrame({"optimizer": ["rmsprop", "rmsprop", "adam", "adam", "sgd"],
                         "implementation": ["numpy", "torch.optim-foreach", "numba",
                                            "torch.optim-fused", "numba"],
                         "speedup_vs_best_torch": [np.nan, np.nan, 0.5, 9.0, 2.0]})
    cross = pd.DataFrame({"optimizer": ["sgd", "sgd", "lion"], "passed": [True, True, False]})
    s = optimizer_summary({"convergence": conv, "roofline": roof, "crossval": cross})
    assert list(s["optimizer"]) == ["sgd", "adam", "rmsprop"]
    s = s.set_index("optimizer")
    assert s.loc["sgd", "conformance"] == "PASS vs torch.optim (2/2)"
    assert pd.isna(s.loc["adam", "conformance"])     # shown as '-' on the page (below)
    assert "lion" not in s.index                     # cross-validated but not in the run
    assert s.loc["adam", "speed_vs_torch"] == 0.5     # torch.optim-fused is torch's, not ours
    assert s.loc["adam", "fastest"] == "numba"
    assert s.loc["sgd", "speed_vs_torch"] == 2.0
    assert math.isnan(s.loc["rmsprop", "speed_vs_torch"])
    assert s.loc["rmsprop", "fastest"] == "numpy"
    assert s.loc["sgd", "success_rate"] == 0.5
    assert s.loc["sgd", "median_steps"] == 6
    assert s.loc["sgd", "problems_solved"] == "1/2"
    assert s.loc["adam", "problems_solved"] == "1/2"
    assert math.isnan(s.loc["rmsprop", "success_rate"])
    assert math.isnan(s.loc["rmsprop", "median_steps"])
    for col in ("kind", "reference", "tuned_lr", "tuned_lr_himmelblau",
                "state_bytes_per_param_byte"):
        assert (s[col] == "-").all(), col
    # the page shows the same numbers
    t = _read_table(summary_section({"convergence": conv, "roofline": roof,
                                     "crossval": cross})).set_index("optimizer")
    assert float(t.loc["sgd", "success_rate"]) == 0.5
    assert float(t.loc["adam", "speed_vs_torch"]) == 0.5
    assert t.loc["sgd", "conformance"] == "PASS vs torch.optim (2/2)"
    assert t.loc["adam", "conformance"] == "-"
    assert t.loc["rmsprop", "success_rate"] == "-"


def test_summary_prefers_the_1e_4_target_and_no_hit_is_nan():
    conv = pd.DataFrame({"optimizer": "o", "problem": "p",
                         "steps_to_target_1e-02": [1.0, 2.0],
                         "steps_to_target_1e-04": [np.nan, np.nan]})
    s = optimizer_summary({"convergence": conv}).iloc[0]
    assert s["success_rate"] == 0.0
    assert math.isnan(s["median_steps"])
    assert s["problems_solved"] == "0/1"
    assert optimizer_summary({}).empty


def test_tuning_table_shows_the_choice_per_problem():
    f = _frames()
    html = tuning_section(f)
    for text in ("(0.01 0.1 1)", "tuning seeds 0 1", "2 random starts each", "100 steps",
                 "<b>min median steps</b>", "fresh seeds 2 3"):
        assert text in html, text
    t = _read_table(html)
    assert list(t.columns) == ["optimizer", "problem", "lr", "median_cost", "median_tiebreak",
                               "success_rate", "failed_share", "lr_grid"]
    row = t[(t.optimizer == "mine") & (t.problem == "booth")].iloc[0]
    assert float(row["lr"]) == 0.01
    assert float(row["success_rate"]) == 0.0
    assert float(row["failed_share"]) == 0.5
    assert row["median_cost"] == "inf"
    assert "tuned learning rate" in summary_section(f)


def test_summary_kind_reference_order_and_missing_parts():
    """The tuning choice sets the order and the kind and reference of each optimizer (one
    row suffices); where the choice lacks those columns they are empty; an optimizer tuned
    without Himmelblau has no Himmelblau lr; numbers of parts that did not run are NaN."""
    choice = pd.DataFrame({"optimizer": ["mine", "adam", "adam"],
                           "problem": ["booth", "himmelblau", "booth"], "lr": [0.5, 0.1, 1.0],
                           "optimizer_kind": ["class", "reference", "reference"],
                           "reference": ["sgd", "", ""]})
    conv = pd.DataFrame({"optimizer": ["adam", "mine"], "problem": "booth",
                         "final_gap": [0.1, 0.2]})            # no first-hit column at all
    s = optimizer_summary({"tuning_choice": choice, "convergence": conv})
    assert list(s["optimizer"]) == ["mine", "adam"]
    s = s.set_index("optimizer")
    assert s.loc["mine", "kind"] == "class"
    assert s.loc["adam", "kind"] == "reference"
    assert s.loc["mine", "reference"] == "sgd"
    assert s.loc["mine", "tuned_lr"] == "0.5"
    assert math.isnan(s.loc["mine", "tuned_lr_himmelblau"])
    assert s.loc["adam", "tuned_lr_himmelblau"] == 0.1
    for col in ("speed_vs_torch", "success_rate", "median_steps"):
        assert s[col].isna().all(), col
    for col in ("conformance", "fastest", "problems_solved"):
        assert (s[col] == "-").all(), col
    bare = optimizer_summary({"tuning_choice": choice[["optimizer", "problem", "lr"]]})
    assert (bare["kind"] == "").all()
    assert (bare["reference"] == "").all()


def test_summary_fastest_is_the_best_of_ours_and_long_tables():
    roof = pd.DataFrame({"optimizer": "adam", "implementation": ["numpy", "numba", "torch"],
                         "speedup_vs_best_torch": [0.2, 1.5, 1.0]})
    s = optimizer_summary({"roofline": roof}).iloc[0]
    assert s["fastest"] == "numba"
    assert s["speed_vs_torch"] == 1.5
    # up to 100 optimizers on the page, then a note
    many = pd.DataFrame({"optimizer": [f"o{i}" for i in range(101)], "implementation": "numba",
                         "speedup_vs_best_torch": 1.0})
    html = summary_section({"roofline": many})
    assert len(_read_table(html)) == 100
    assert "(1 more rows" in html
    html = summary_section({"roofline": many.head(100)})
    assert len(_read_table(html)) == 100
    assert "more rows" not in html


def test_summary_and_tuning_text_say_what_the_numbers_mean():
    html = summary_section(_frames())
    assert html.startswith("<p>Every optimizer at its tuned learning rate (the same grid, "
                           "budget, seeds and criterion for each;")
    for text in ("<p>Every optimizer at its tuned learning rate", "criterion for each",
                 "success_rate and median_steps: over every problem, fresh seed and start",
                 "problems_solved: problems where at least half of the runs reached the target",
                 "speed_vs_torch: above 1 is faster than torch's fastest implementation"):
        assert text in html, text


def test_tuning_table_one_row_grid_edge_and_length():
    one = _frames()["tuning_choice"].head(1).assign(at_grid_edge=True)
    html = tuning_section({"tuning_choice": one})
    assert "(0.01 0.1 1)" in html
    t = _read_table(html)
    assert t["at_grid_edge"].item() == "True"
    long = pd.concat([one] * 301, ignore_index=True)
    html = tuning_section({"tuning_choice": long})
    assert len(_read_table(html)) == 300
    assert "(1 more rows" in html
    assert len(_read_table(tuning_section({"tuning_choice": long.head(61)}))) == 61
