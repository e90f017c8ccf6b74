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
