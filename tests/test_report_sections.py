"""The report's sections on hand-made frames whose answers are counted by hand: the comparison
of two runs (speed ratios, drift, spread, noise; keyed frames; what cannot be compared), the
accuracy section, basin shares, and the registry. Fast: no run, no figure."""

import numpy as np
import pandas as pd
import pytest

from suite.report import sections as S
from tests.test_report_values import num, tables

# ---- speed: the time ratios of two runs ---------------------------------------------------


def _speed(rows_first, rows_last, spread=True):
    """A roofline-like frame of two runs; rows are (optimizer, implementation, seconds,
    seconds_min, seconds_max)."""
    out = []
    for run, rows in (("r1", rows_first), ("r2", rows_last)):
        for opt, impl, sec, lo, hi in rows:
            row = {"run": run, "optimizer": opt, "implementation": impl, "size": 100,
                   "seconds": sec}
            if spread:
                row.update(seconds_min=lo, seconds_max=hi)
            out.append(row)
    return pd.DataFrame(out)


FIRST = [("adam", "numba", 1.0, 0.9, 1.1), ("adam", "torch", 1.0, 0.9, 1.1),
         ("sgd", "numba", 1.0, 0.95, 1.05), ("sgd", "torch", 1.0, 0.5, 1.0),
         ("rms", "numba", 1.0, 0.9, 1.3), ("ada", "numba", 1.0, 0.9, 1.1)]
LAST = [("adam", "numba", 2.0, 1.9, 2.1),     # 2x, ranges apart: slower
        ("adam", "torch", 1.1, 1.0, 1.2),     # within ±25 %
        ("sgd", "numba", 0.5, 0.45, 0.55),    # 2x faster, apart
        ("sgd", "torch", 2.0, 1.9, 2.1),      # 2x, but the first run's repeats varied 2x
        ("rms", "numba", 1.5, 1.25, 1.6)]     # 1.5x, ranges overlap: within the spread


def test_compare_speed_by_hand():
    m, note = S.compare_speed(_speed(FIRST, LAST))
    assert list(m.columns) == ["optimizer", "implementation", "size", "seconds_first",
                               "seconds_last", "time_ratio", "change", "seconds_min_first",
                               "seconds_max_first", "seconds_min_last", "seconds_max_last"]
    got = dict(zip(zip(m.optimizer, m.implementation, strict=True), m.change, strict=True))
    assert got == {("adam", "numba"): "slower", ("adam", "torch"): "",
                   ("sgd", "numba"): "faster", ("sgd", "torch"): "too noisy",
                   ("rms", "numba"): ""}
    np.testing.assert_allclose(m.time_ratio, [2.0, 1.1, 0.5, 2.0, 1.5], rtol=1e-15)
    assert note == ("a change is flagged where the time ratio, after the drift all measurements "
                    "share (1.00x), is beyond ×/÷1.25 (±25% or 3 robust standard deviations "
                    "of all ratios, the larger) and the ranges over repeats do not overlap; "
                    "apparent changes of measurements whose repeats varied by more than 1.5x "
                    "are too noisy to judge; 1 measurements had no counterpart; <b>1 of 5 too "
                    "noisy to judge</b> (a busy machine: measure again on a quiet one)")


def test_compare_speed_thresholds_are_arguments():
    # noise 1.5: a 2x ratio (log 0.69) is within log(2.5) = 0.92; max_spread 2.5: nothing noisy
    m, note = S.compare_speed(_speed(FIRST, LAST), noise=1.5, max_spread=2.5)
    assert set(m.change) == {""}
    assert "beyond ×/÷2.50 (±150%" in note
    assert "more than 2.5x" in note
    assert "too noisy to judge</b>" not in note
    # the edge of the spread: repeats varying exactly max_spread times are not noisy
    m, _ = S.compare_speed(_speed([("a", "n", 1.0, 1.0, 1.5)], [("a", "n", 2.0, 1.6, 2.0)]))
    assert m.change.tolist() == ["slower"]
    m, _ = S.compare_speed(_speed([("a", "n", 1.0, 1.0, 1.5)], [("a", "n", 2.0, 1.5, 2.0)]))
    assert m.change.tolist() == [""]   # touching ranges (1.5 = 1.5) overlap


def test_compare_speed_without_spread_columns():
    m, note = S.compare_speed(_speed(FIRST[:3], LAST[:3], spread=False))
    assert m.change.tolist() == ["slower", "", "faster"]   # every pair counts as apart
    assert "(these runs did not record their spread over repeats)" in note
    assert "no counterpart" not in note
    assert "seconds_min_first" not in m


def test_compare_speed_takes_best_and_median_from_the_roofline_spread():
    r = _speed([("a", "n", 1.0, 0, 0), ("b", "n", 1.0, 0, 0), ("c", "n", 1.0, 0, 0)],
               [("a", "n", 2.0, 0, 0), ("b", "n", 2.0, 0, 0), ("c", "n", 2.0, 0, 0)],
               spread=False)
    # spread = median / best - 1 per row; NaN counts as 0 and a negative one is clipped
    r["spread"] = [1.2, np.nan, -0.5, 0.1, 0.1, 0.1]
    m, note = S.compare_speed(r)
    np.testing.assert_allclose(m.seconds_max_first, [2.2, 1.0, 1.0])
    np.testing.assert_allclose(m.seconds_min_last, [2.0, 2.0, 2.0])
    np.testing.assert_allclose(m.seconds_max_last, [2.2, 2.2, 2.2])
    # a: first run's median 2.2 > 1.5 x its best: too noisy; b, c: 2x slower, apart
    assert m.change.tolist() == ["too noisy", "slower", "slower"]
    assert "<b>1 of 3 too noisy to judge</b>" in note


def test_compare_speed_drift_and_robust_band():
    # nine measurements, all 2x slower (the machine) but one 8x: only that one changed
    first = [(f"o{i}", "n", 1.0, 1.0, 1.0) for i in range(9)]
    last = [(f"o{i}", "n", 2.0, 2.0, 2.0) for i in range(8)] + [("o8", "n", 8.0, 8.0, 8.0)]
    m, note = S.compare_speed(_speed(first, last))
    assert m.change.tolist() == [""] * 8 + ["slower"]
    assert "share (2.00x), is beyond ×/÷1.25" in note
    # spread log-ratios: median 0, MAD 0.2 -> band 3 · 1.4826 · 0.2 = 0.8896 (x 2.43)
    logs = [-0.3, -0.2, -0.1, 0.0, 0.0, 0.1, 0.2, 0.3, 1.0]
    last = [(f"o{i}", "n", float(np.exp(v)), float(np.exp(v)), float(np.exp(v)))
            for i, v in enumerate(logs)]
    m, note = S.compare_speed(_speed(first, last))
    assert m.change.tolist() == [""] * 8 + ["slower"]
    assert f"beyond ×/÷{np.exp(3 * 1.4826 * 0.2):.2f}" in note
    assert "×/÷2.43" in note
    # eight measurements suffice for the drift; seven do not
    m, note = S.compare_speed(_speed(first[:8], [(f"o{i}", "n", 2.0, 2.0, 2.0)
                                                  for i in range(8)]))
    assert set(m.change) == {""}
    m, note = S.compare_speed(_speed(first[:7], [(f"o{i}", "n", 2.0, 2.0, 2.0)
                                                  for i in range(7)]))
    assert set(m.change) == {"slower"}
    assert "share (1.00x)" in note


def test_compare_speed_labels_changes_against_the_drift():
    # ten measurements 2x slower (the machine), one only 1.2x: that one got faster than the
    # rest, though its own ratio is above 1; one 3.2x got slower
    first = [(f"o{i}", "n", 1.0, 1.0, 1.0) for i in range(12)]
    last = ([(f"o{i}", "n", 2.0, 2.0, 2.0) for i in range(10)]
            + [("o10", "n", 1.2, 1.2, 1.2), ("o11", "n", 3.2, 3.2, 3.2)])
    m, note = S.compare_speed(_speed(first, last))
    assert m.change.tolist() == [""] * 10 + ["faster", "slower"]
    assert "share (2.00x)" in note


def test_compare_speed_edges_and_notes():
    # beyond means strictly beyond: a ratio of exactly 2 with noise 1 (band x/÷2) is no change
    m, _ = S.compare_speed(_speed([("a", "n", 1.0, 1.0, 1.0)], [("a", "n", 2.0, 2.0, 2.0)]),
                           noise=1.0)
    assert m.change.tolist() == [""]
    # touching ranges overlap also when the last run is faster; repeats that varied exactly
    # max_spread times in the last run are not noisy
    m, _ = S.compare_speed(_speed([("a", "n", 2.0, 2.0, 2.4)], [("a", "n", 1.0, 1.6, 2.0)]))
    assert m.change.tolist() == [""]
    m, _ = S.compare_speed(_speed([("a", "n", 2.0, 2.0, 2.4)], [("a", "n", 1.0, 1.0, 1.5)]))
    assert m.change.tolist() == ["faster"]
    # the whole note when every measurement has a counterpart and none is noisy
    m, note = S.compare_speed(_speed([("a", "n", 1.0, 1.0, 1.1)], [("a", "n", 1.0, 1.0, 1.1)]))
    assert note == ("a change is flagged where the time ratio, after the drift all measurements "
                    "share (1.00x), is beyond ×/÷1.25 (±25% or 3 robust standard deviations "
                    "of all ratios, the larger) and the ranges over repeats do not overlap; "
                    "apparent changes of measurements whose repeats varied by more than 1.5x "
                    "are too noisy to judge")
    m, note = S.compare_speed(_speed([("a", "n", 1.0, 0, 0)], [("a", "n", 3.0, 0, 0)],
                                     spread=False))
    assert m.change.tolist() == ["slower"]
    assert note == ("a change is flagged where the time ratio, after the drift all measurements "
                    "share (1.00x), is beyond ×/÷1.25 (±25% or 3 robust standard deviations "
                    "of all ratios, the larger) (these runs did not record their spread over "
                    "repeats)")


def test_compare_speed_first_and_last_of_three_runs():
    r = pd.concat([_speed([("a", "n", 1.0, 1.0, 1.0)], [("a", "n", 1.0, 1.0, 1.0)]),
                   _speed([], [("a", "n", 5.0, 5.0, 5.0)]).assign(run="r3")])
    m, _ = S.compare_speed(r)
    assert m.seconds_last.tolist() == [5.0]
    assert m.change.tolist() == ["slower"]


@pytest.mark.parametrize(("column", "first", "last", "said"), [
    ("dtype", "float32", "float64", "dtype float32 vs float64"),
    ("torch_threads", 1, 2, "torch_threads 1 vs 2"),
    ("optimizer", "adam", "sgd", "optimizer adam vs sgd")])
def test_compare_speed_not_comparable_names_the_setting(column, first, last, said):
    r = _speed([("adam", "n", 1.0, 1.0, 1.0)], [("adam", "n", 1.0, 1.0, 1.0)])
    r[column] = [first, last]
    m, note = S.compare_speed(r)
    assert m.empty
    assert note == f"not comparable: no measurement at equal settings ({said})"


def test_compare_speed_not_comparable():
    r = _speed(FIRST[:2], LAST[:2]).assign(size=[100, 100, 200, 200])
    m, note = S.compare_speed(r)
    assert m.empty
    assert note == "not comparable: no measurement at equal settings (size 100 vs 200)"


# ---- settings notes and keyed comparisons ---------------------------------------------------


def test_settings_note():
    a = pd.DataFrame({"size": [100, 100], "dtype": ["float32", "float64"], "lr": [0.1, 0.01],
                      "width": range(2), "same": [1, 2]})
    b = pd.DataFrame({"size": [400], "dtype": ["float32"], "lr": [0.123456], "same": [2, ],
                      "width": [0]}).reindex(range(1)).assign(same=[1])
    b = pd.concat([b, b.assign(same=2)], ignore_index=True)
    note = S._settings_note(a, b, ["size", "dtype", "lr", "same", "missing"])
    assert note == "size 100 vs 400; dtype float32, float64 vs float32; lr 0.01, 0.1 vs 0.123"
    # many values are counted, after the listed ones
    many = pd.DataFrame({"seed": range(7), "size": 100})
    other = pd.DataFrame({"seed": range(4, 12), "size": 200})
    assert S._settings_note(many, other, ["seed", "size"]) == \
        "size 100 vs 200; seed: 7 vs 8 values, 3 in common"
    # seven values are counted too; a column one of the frames lacks is left out
    assert S._settings_note(many, pd.DataFrame({"seed": [9], "size": 100}), ["seed"]) == \
        "seed: 7 vs 1 values, 0 in common"
    assert S._settings_note(many, pd.DataFrame({"size": [200]}), ["seed", "size"]) == \
        "size 100 vs 200"
    # six values on a side are still listed
    six = pd.DataFrame({"seed": range(6)})
    assert S._settings_note(six, pd.DataFrame({"seed": [9]}), ["seed"]) == \
        "seed 0, 1, 2, 3, 4, 5 vs 9"
    # floats equal to 3 digits are the same setting; NaN is not a value
    assert S._settings_note(pd.DataFrame({"lr": [0.1, np.nan]}),
                            pd.DataFrame({"lr": [0.1000001]}), ["lr"]) == ""


def _keyed(frame, keys, value, tol):
    """_compare_keyed on a frame's first and last run (the selection comparison_section makes;
    that it takes the first and the last of three is tested with it below)."""
    runs = list(dict.fromkeys(frame["run"]))
    return S._compare_keyed(frame[frame.run == runs[0]], frame[frame.run == runs[-1]], keys,
                            value, tol)


def test_compare_keyed():
    f = pd.DataFrame({"run": ["r1"] * 4 + ["r2"] * 4, "k": [1, 2, 3, 4, 1, 2, 3, 5],
                      "v": [1.0, 2.0, np.nan, 4.0, 1.0 + 1e-12, 2.1, np.nan, 5.0]})
    changed, n, unmatched = _keyed(f, ["k", "absent"], "v", 1e-9)
    assert n == 3
    assert unmatched == 2
    assert changed["k"].tolist() == [2]
    assert changed.columns.tolist() == ["k", "v_first", "v_last"]
    # tolerance 0: the 1e-12 difference counts too
    changed, *_ = _keyed(f, ["k"], "v", 0.0)
    assert changed["k"].tolist() == [1, 2]
    # text values compare as text (of three runs, the first and the last)
    g = pd.DataFrame({"run": ["r1", "r2", "r3"], "k": 1, "v": ["a", "b", "a"]})
    changed, n, unmatched = _keyed(g, ["k"], "v", 0.0)
    assert (n, unmatched, len(changed)) == (1, 0, 0)
    g = pd.DataFrame({"run": ["r1", "r2", "r3"], "k": 1, "v": [True, True, False]})
    changed, *_ = _keyed(g, ["k"], "v", 0.0)
    assert len(changed) == 1
    # runs that recorded a value and runs that recorded None load as one object column:
    # None against NaN is no change, against a number it is one; with text in it, all is text
    h = pd.DataFrame({"run": ["r1", "r1", "r1", "r2", "r2", "r2"], "k": [1, 2, 3, 1, 2, 3],
                      "v": pd.Series([np.nan, 3.0, 4.0, None, None, 4.0 + 1e-12],
                                     dtype=object)})
    changed, n, _ = _keyed(h, ["k"], "v", 1e-9)
    assert (n, changed["k"].tolist()) == (3, [2])
    text = pd.DataFrame({"run": ["r1", "r2"], "k": 1, "v": [3.0, "3.0x"]})
    changed, *_ = _keyed(text, ["k"], "v", 0.0)
    assert len(changed) == 1
    text = pd.DataFrame({"run": ["r1", "r2"], "k": 1, "v": ["a", "b"]})
    changed, *_ = _keyed(text, ["k"], "v", 0.0)
    assert len(changed) == 1


# ---- the comparison section -----------------------------------------------------------------


def _crossval(run, passed):
    return pd.DataFrame({"run": run, "optimizer": "adam", "config": ["a", "b", "c"],
                         "probe": "p", "dtype": "float64", "backend": "numpy",
                         "torch_impl": "for", "steps": 10, "passed": passed})


def test_comparison_section_flags_and_texts():
    frames = {"roofline": _speed(FIRST, LAST),
              "crossval": pd.concat([_crossval("r1", [True, True, True]),
                                     _crossval("r2", [True, False, False])]),
              "gradstats_summary": pd.DataFrame({
                  "run": ["r1", "r1", "r2", "r2"], "activation": "tanh", "init": "x",
                  "depth": [10, 20, 10, 30], "width": 8, "batch": 8, "seed": 0, "dtype": "f",
                  "R_z": [0.5, 0.7, 0.5 + 1e-12, 0.1]})}
    c = S.comparison_section(frames)
    assert c.verdict == "warn"
    assert c.summary == ("speed: 2 changed; speed: 1 of 5 too noisy to judge; "
                         "cross-validation: 2 changed")
    h = c.html
    assert "<h3>Speed: r2 vs r1</h3><p>a change is flagged" in h
    assert "; <b>2 changed</b>.</p>" in h
    assert ("<h3>Cross-validation: agreement</h3><p>3 compared at equal settings, <b>2 "
            "changed</b>.</p>") in h
    # deterministic frames say so; unmatched rows are counted and their settings named
    assert ("<h3>Gradient statistics: R_z</h3><p>1 compared at equal settings, <b>0 "
            "changed</b> (deterministic for a given seed, so any change is real). 2 rows had "
            "no counterpart in the other run (depth 10, 20 vs 10, 30).</p>") in h
    speed, cv = tables(h)   # the changed tables: speed ratios, then the 2 crossval changes
    assert len(speed) == 5
    assert cv["config"].tolist() == ["b", "c"]
    assert [num(v) for v in speed["time_ratio"]] == [2.0, 1.1, 0.5, 2.0, 1.5]


def _convergence(run, steps, start_0=(0.0, 1.0)):
    return pd.DataFrame({"run": run, "problem": "himmelblau", "optimizer": "adam", "lr": 0.1,
                         "start_0": list(start_0), "start_1": 0.0, "steps": 100, "seed": 0,
                         "steps_to_target_1e-04": steps})


def test_comparison_section_keyed_frames_exactly():
    # one step more to the target and another minimum reached are changes (tolerance 0);
    # the first and the last of three runs are compared; a frame with one run is skipped
    # and the frames after it are still compared
    conv = pd.concat([_convergence("r1", [10, 20]), _convergence("r2", [99, 99]),
                      _convergence("r3", [10, 21])])
    basins = pd.DataFrame({"run": ["r1", "r3"], "optimizer": "o", "lr": 0.1, "start_0": 0.0,
                           "start_1": 0.0, "minimizer_index": [1, 2]})
    c = S.comparison_section({"crossval": _crossval("r1", [True] * 3), "convergence": conv,
                              "basins": basins})
    assert c.summary == "convergence: 1 changed; basins: 1 changed"
    assert ("<h3>Convergence: steps to f - f* < 1e-4 per start</h3><p>2 compared at equal "
            "settings, <b>1 changed</b> (deterministic for a given seed, so any change is "
            "real).</p>") in c.html.replace("&lt;", "<")
    conv_t, basin_t = tables(c.html)
    assert [num(v) for v in conv_t["steps_to_target_1e-04_last"]] == [21]
    assert [num(v) for v in basin_t["minimizer_index_last"]] == [2]
    assert c.html.count("<h3>") == 2
    assert c.html.startswith("<h3>Convergence")
    assert "</table></div><h3>Basins" in c.html
    # rows without a counterpart whose keys differ in no column the note lists
    lr = pd.concat([_convergence("r1", [10, 20]),
                    _convergence("r2", [10, 20], start_0=(0.0, 2.0))])
    c = S.comparison_section({"convergence": lr})
    assert ("1 compared at equal settings, <b>0 changed</b> (deterministic for a given seed, "
            "so any change is real). 2 rows had no counterpart in the other run (start_0 0, 1 "
            "vs 0, 2).</p>") in c.html
    # of three runs, the first and the last are the ones whose settings are named
    three = pd.concat([lr, _convergence("r3", [10, 20], start_0=(0.0, 3.0))])
    c = S.comparison_section({"convergence": three})
    assert "no counterpart in the other run (start_0 0, 1 vs 0, 3).</p>" in c.html
    # a frame that cannot be compared does not stop the ones after it; no change, no table
    basins = pd.DataFrame({"run": ["r1", "r2"], "optimizer": "o", "lr": 0.1, "start_0": 0.0,
                           "start_1": 0.0, "minimizer_index": [1, 1]})
    c = S.comparison_section({"convergence": pd.concat([
        _convergence("r1", [10, 20]), _convergence("r2", [10, 20], start_0=(5.0, 6.0))]),
        "basins": basins})
    assert c.html.endswith("<h3>Basins: minimum reached per grid start</h3><p>1 compared at "
                           "equal settings, <b>0 changed</b> (deterministic for a given seed, "
                           "so any change is real).</p>")
    lr = pd.concat([_convergence("r1", [10, 20]), _convergence("r2", [10, 20])],
                   ignore_index=True)
    lr.loc[3, "lr"] = 0.1000001   # equal to 3 digits: unmatched, but no setting to name
    c = S.comparison_section({"convergence": lr})
    assert "rows had no counterpart in the other run.</p>" in c.html


def test_comparison_section_long_change_tables_fold_and_cut():
    n = 130
    conv = pd.concat([_convergence("r1", list(range(n)), start_0=range(n)),
                      _convergence("r2", [v + 1 for v in range(n)], start_0=range(n))])
    c = S.comparison_section({"convergence": conv})
    assert f"<b>{n} changed</b>" in c.html
    assert f"{n} changes <span class='muted'>({n} rows; click to show)</span>" in c.html
    assert f"({n - 100} more rows in the run's files)" in c.html
    assert len(tables(c.html)[0]) == 100


def test_comparison_section_without_changes_passes():
    frames = {"crossval": pd.concat([_crossval("r1", [True] * 3), _crossval("r2", [True] * 3)]),
              "other": pd.DataFrame({"run": ["r1"]})}
    c = S.comparison_section(frames)
    assert c.verdict == "pass"
    assert c.summary == "no change beyond the measured spread in what both runs measured"
    assert "<b>0 changed</b>." in c.html
    assert "<table" not in c.html


def test_comparison_section_what_cannot_be_compared():
    # one run: no section
    assert S.comparison_section({"crossval": _crossval("r1", [True] * 3)}) == ""
    # two runs, but no frame that both have
    c = S.comparison_section({"crossval": _crossval("r1", [True] * 3),
                              "basins": pd.DataFrame({"run": ["r2"], "optimizer": "o",
                                                      "lr": 0.1, "start_0": 0.0,
                                                      "start_1": 0.0, "minimizer_index": 1})})
    assert c.html == "<p>The runs have no frame in common.</p>"
    assert c.summary == "nothing in common to compare"
    assert c.verdict == "warn"
    # roofline at different sizes; basins without a common start
    roof = _speed(FIRST[:1], LAST[:1]).assign(size=[100, 200])
    basins = pd.DataFrame({"run": ["r1", "r2"], "optimizer": "o", "lr": 0.1,
                           "start_0": [0.0, 1.0], "start_1": 0.0, "minimizer_index": 1})
    c = S.comparison_section({"roofline": roof, "basins": basins})
    assert ("<h3>Speed</h3><p>not comparable: no measurement at equal settings (size 100 vs "
            "200)</p>") in c.html
    assert ("<h3>Basins: minimum reached per grid start</h3><p>not comparable: no measurement "
            "at equal settings (start_0 0 vs 1).</p>") in c.html
    assert c.verdict == "pass"
    # keys that differ in no column the note looks at
    basins = pd.DataFrame({"run": ["r1", "r2"], "optimizer": "o", "lr": 0.1,
                           "start_0": [0.0, 0.0], "start_1": 0.0, "minimizer_index": 1})
    basins["lr"] = basins["lr"].astype(object)
    basins.loc[1, "lr"] = "0.1"
    c = S.comparison_section({"basins": basins})
    assert "(different keys).</p>" in c.html


# ---- accuracy, basins, crossval ---------------------------------------------------------------


def test_accuracy_section_counts_ours_and_torchs():
    a = pd.DataFrame({"function": ["gelu"] * 4 + ["tanh"] * 4,
                      "quantity": "forward", "dtype": "float64",
                      "implementation": ["numpy", "numba", "torch", "torch.nn.functional"] * 2,
                      "max_excess": [0.1, 0.2, 0.3, 9.0, 0.5, 0.6, 7.0, 0.8],
                      "max_ulp": 1.0, "worst_x": 1.0, "expected": 1.0, "got": 1.0,
                      "false_zeros": 0, "nonfinite": 0,
                      "passed": [True, True, True, False, True, True, False, False]})
    # a second row for one cell: the table shows the larger (0.8 -> 2.0), not the mean
    a = pd.concat([a, a.iloc[[7]].assign(max_excess=2.0)], ignore_index=True)
    c = S.accuracy_section({"accuracy": a})
    assert c.summary == ("references: 1 of 6 cells over the bound; torch.nn.functional: 3 of 3")
    assert c.html.startswith("<p>Largest error in ulps beyond the condition number κ(x) = "
                             "|x g'(x)/g(x)| against mpmath (40 digits), on a grid over all "
                             "magnitudes and the tails; the bound is 1 ulp float32 / 4 ulp "
                             "float64 (numba 2 / 4; softmax 2 / 8, no κ). ")
    assert "; torch.nn.functional: 3 of 3 (where torch loses digits).</p>" in c.html
    assert "</table></div><h3>Cells over the bound</h3><div class=\"table\">" in c.html
    assert c.verdict == "fail"
    assert "<span class='bad'>gradsuite's references: 1 of 6 cells over the bound</span>" in \
        c.html
    wide, bad = tables(c.html)
    # one column per implementation, and no empty column named after the pivot's columns
    assert "<th></th>" not in c.html
    assert wide.columns.tolist() == ["function", "quantity", "dtype", "numpy", "numba", "torch",
                                     "torch.nn.functional"]   # in the order first seen
    assert wide["function"].tolist() == ["gelu", "tanh"]
    assert [num(v) for v in wide["torch.nn.functional"]] == [9.0, 2.0]
    assert bad["implementation"].tolist() == ["torch.nn.functional", "torch",
                                              "torch.nn.functional", "torch.nn.functional"]
    assert bad.columns.tolist() == ["function", "quantity", "dtype", "implementation",
                                    "max_ulp", "worst_x", "expected", "got", "false_zeros",
                                    "nonfinite"]
    ok = S.accuracy_section({"accuracy": a.head(8).assign(passed=True)})
    assert ok.verdict == "pass"
    assert "<span class=''>gradsuite's references: 0 of 6" in ok.html
    assert "Cells over the bound" not in ok.html
    assert S.accuracy_section({}) == ""


def test_basin_share_table():
    shares = pd.DataFrame({"optimizer": ["adam"] * 5 + ["sgd"] * 2,
                           "lr": [0.1] * 5 + [0.2] * 2,
                           "minimizer_index": [0, 2, 5, -1, 0, 1, 3],
                           "share": [0.25, 0.25, 0.25, 0.125, 0.125, 0.5, 0.5]})
    t = S.basin_share_table(shares)
    assert t.columns.tolist() == ["optimizer", "lr", "A", "B", "C", "D", "minimum 5",
                                  "diverged"]
    assert t.iloc[0].tolist() == ["adam", 0.1, 0.375, 0.0, 0.25, 0.0, 0.25, 0.125]
    assert t.iloc[1].tolist() == ["sgd", 0.2, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0]
    # no start diverged: no column; a -1 with share 0 does not count
    quiet = shares.assign(share=np.where(shares.minimizer_index == -1, 0.0, shares.share))
    assert "diverged" not in S.basin_share_table(quiet).columns
    assert "diverged" not in S.basin_share_table(shares[shares.minimizer_index >= 0]).columns
    # an index one past the labelled minima is named by its number, not an error
    four = S.basin_share_table(pd.DataFrame({"optimizer": "o", "minimizer_index": [3, 4],
                                             "share": [0.5, 0.5]}))
    assert four.columns.tolist() == ["optimizer", "D", "minimum 4"]
    assert four.columns.name is None
    # without an lr column, one row per optimizer
    t = S.basin_share_table(shares.drop(columns="lr"))
    assert t.columns.tolist()[:2] == ["optimizer", "A"]


def test_crossval_section_all_agree_and_summary_only():
    summ = pd.DataFrame({"optimizer": ["sgd", "adam", "adam"], "dtype": ["f64", "f32", "f64"],
                         "configs": [2, 3, 4], "cells": [5, 10, 20], "failed": [0, 1, 2],
                         "max_error_param": [0.0, 1e-7, 1e-15],
                         "max_error_state": [0.0, 2e-7, 3e-15]})
    full = pd.DataFrame({"optimizer": ["adam", "adam", "sgd"], "config": ["a", "b", "a"],
                         "passed": [True, True, True]})
    c = S.crossval_section({"crossval": full, "crossval_summary": summ})
    assert c.verdict == "pass"
    assert c.summary == ("2 configurations of 2 optimizers, 3 comparisons: every one agrees "
                         "with torch.optim")
    assert "<span class='pass'>0 disagree</span>" in c.html
    per_opt, per_cell = tables(c.html)
    assert per_opt.columns.tolist() == ["optimizer", "configs", "cells", "failed",
                                        "worst_error_param", "worst_error_state"]
    assert per_opt["optimizer"].tolist() == ["sgd", "adam"]    # in the order first seen
    assert [num(v) for v in per_opt["configs"]] == [2, 4]        # the max over dtypes
    assert [num(v) for v in per_opt["cells"]] == [5, 30]         # summed
    assert [num(v) for v in per_opt["failed"]] == [0, 3]
    assert [num(v) for v in per_opt["worst_error_param"]] == [0.0, 1e-7]
    assert [num(v) for v in per_opt["worst_error_state"]] == [0.0, 2e-7]
    assert len(per_cell) == 3
    bad = S.crossval_section({"crossval": full.assign(passed=[True, False, True]),
                              "crossval_summary": summ})
    assert bad.verdict == "fail"
    assert bad.summary.endswith("1 disagree with torch.optim")
    assert "<span class='bad'>1 disagree</span>" in bad.html
    assert tables(bad.html)[2]["config"].tolist() == ["b"]
    only = S.crossval_section({"crossval_summary": summ})
    assert only.verdict == "info"
    assert only.summary == ""
    assert len(tables(only.html)) == 2
    assert only.html.startswith('<div class="table">')
    assert S.crossval_section({"crossval": full}) == ""


# ---- the registry -----------------------------------------------------------------------------


def test_as_content_and_slug():
    c = S.Content("<p>x</p>", summary="s", verdict="pass")
    assert S.as_content(c) is c
    assert S.as_content("<p>y</p>") == S.Content("<p>y</p>", "", "info")
    assert S.as_content(None) == S.Content("", "", "info")
    assert S.as_content("") == S.Content("")
    assert S._slug("A Tuple  section!") == "a-tuple-section"
    assert S._slug("--Speed (2x)--") == "speed-2x"
    assert S._slug("!!!") == "section"


def test_register_places_and_replaces(monkeypatch):
    monkeypatch.setattr(S, "SECTIONS", list(S.SECTIONS))
    keys = [s.key for s in S.registered()]
    assert keys[-1] == "changes"

    def mine(frames):
        return ""

    sec = S.register("mine", "Mine", mine)
    assert sec == S.Section("mine", "Mine", mine, False)
    assert [s.key for s in S.registered()] == [*keys[:-1], "mine", "changes"]
    # replacing keeps one entry, placed anew; before=None appends; an unknown key appends
    S.register("mine", "Mine again", mine, before="summary", all_runs=True)
    got = S.registered()
    assert [s.key for s in got] == ["mine", *keys]
    assert got[0].title == "Mine again"
    assert got[0].all_runs is True
    S.register("last", "Last", mine, before=None)
    assert S.registered()[-1].key == "last"
    S.register("end", "End", mine, before="no such key")
    assert [s.key for s in S.registered()][-2:] == ["last", "end"]
    # a tuple entry gets its key from its title and keeps its builder
    S.SECTIONS.append(("A tuple: section", mine))
    assert S.registered()[-1] == S.Section("a-tuple-section", "A tuple: section", mine)
    assert isinstance(S.SECTIONS[-1], tuple)   # registered() does not rewrite the list


def test_default_sections_order():
    keys = [s.key for s in S.registered()]
    assert keys == ["summary", "crossval", "tuning", "convergence", "gradstats", "speed",
                    "training", "accuracy", "changes"]
    assert [s.all_runs for s in S.registered()] == [False] * 8 + [True]


@pytest.mark.parametrize("builder", [S.crossval_section, S.convergence_section,
                                     S.gradstats_section, S.speed_section, S.accuracy_section])
def test_sections_are_empty_without_their_frames(builder):
    assert builder({"unrelated": pd.DataFrame({"x": [1]})}) == ""


def test_comparison_section_runs_and_frames():
    """Three runs: the last is compared with the first; a roofline of one run is not compared
    with itself; a frame without a run column is not counted."""
    roof3 = pd.concat([_speed(FIRST[:1], LAST[:1]),
                       _speed(FIRST[:1], LAST[:1]).query("run == 'r2'").assign(run="r3")])
    c = S.comparison_section({"roofline": roof3, "plain": pd.DataFrame({"x": [1]})})
    assert "<h3>Speed: r3 vs r1</h3>" in c.html
    one = _speed(FIRST[:1], []).assign(run="r1")
    c = S.comparison_section({"roofline": one,
                              "crossval": pd.concat([_crossval("r1", [True] * 3),
                                                     _crossval("r2", [True] * 3)])})
    assert "Speed" not in c.html
    assert S.comparison_section({"plain": pd.DataFrame({"x": [1]}),
                                 "roofline": one}) == ""


def test_long_tables_fold_under_their_summaries_and_stop_at_their_limits():
    n = 201
    a = pd.DataFrame({"function": [f"f{i}" for i in range(n)], "quantity": "forward",
                      "dtype": "float64", "implementation": "numpy", "max_excess": 1.0,
                      "max_ulp": 1.0, "worst_x": 1.0, "expected": 1.0, "got": 1.0,
                      "false_zeros": 0, "nonfinite": 0, "passed": False})
    h = S.accuracy_section({"accuracy": a}).html
    assert ("<summary>Largest error beyond κ per function, quantity, dtype and implementation "
            "<span class='muted'>(201 rows; click to show)</span></summary>") in h
    assert "<summary>The table <span class='muted'>(201 rows" in h
    assert h.count("<p>(1 more rows in the run's files)</p>") == 2     # 200 rows shown
    summ = pd.DataFrame({"optimizer": [f"o{i}" for i in range(n)], "configs": 1, "cells": 1,
                         "failed": 1, "max_error_param": 0.0, "max_error_state": 0.0})
    full = pd.DataFrame({"optimizer": "o", "config": [f"c{i}" for i in range(101)],
                         "passed": False})
    h = S.crossval_section({"crossval": full, "crossval_summary": summ}).html
    assert ("<summary>Worst errors per optimizer × dtype × backend × torch implementation "
            "<span class='muted'>(201 rows") in h
    assert "<summary>The 101 disagreeing comparisons <span class='muted'>(101 rows" in h
    # per optimizer: 60 rows shown (the default); per cell 200; the disagreements 100
    assert "<p>(141 more rows in the run's files)</p>" in h
    assert h.count("<p>(1 more rows in the run's files)</p>") == 2


def test_training_section_is_the_training_report():
    assert S._training_section({}) == ""
    assert S._training_section({"unrelated": pd.DataFrame()}) == ""


KEYED = {   # frame -> (the columns that identify a measurement, the compared value)
    "crossval": (["optimizer", "config", "probe", "dtype", "backend", "torch_impl", "steps"],
                 "passed"),
    "gradstats_summary": (["activation", "init", "depth", "width", "batch", "seed", "dtype"],
                          "R_z"),
    "convergence": (["problem", "optimizer", "lr", "start_0", "start_1", "steps", "seed"],
                    "steps_to_target_1e-04"),
    "basins": (["optimizer", "lr", "start_0", "start_1"], "minimizer_index"),
}


@pytest.mark.parametrize("name", list(KEYED))
def test_every_key_column_separates_measurements(name):
    """Two measurements per run that differ in one key column only, with different values:
    matched by that column they agree (2 compared, 0 changed); a key left out would pair
    each with both."""
    keys, value = KEYED[name]
    vals = [True, False] if value == "passed" else [1.0, 2.0]
    for k in keys:
        rows = [{"run": run, **dict.fromkeys(keys, 0), k: i, value: vals[i]}
                for run in ("r1", "r2") for i in (0, 1)]
        h = S.comparison_section({name: pd.DataFrame(rows)}).html
        assert "<p>2 compared at equal settings, <b>0 changed</b>" in h, (name, k)


def test_every_speed_key_separates_measurements():
    keys = ["optimizer", "config", "implementation", "size", "dtype", "threads",
            "torch_threads"]
    for k in keys:
        rows = [{"run": run, **dict.fromkeys(keys, 0), k: i, "seconds": [1.0, 4.0][i],
                 "seconds_min": [1.0, 4.0][i], "seconds_max": [1.0, 4.0][i]}
                for run in ("r1", "r2") for i in (0, 1)]
        m, _ = S.compare_speed(pd.DataFrame(rows))
        assert m["time_ratio"].tolist() == [1.0, 1.0], k
    # given seconds_min, the roofline's spread is not used
    r = _speed(FIRST[:1], LAST[:1]).assign(spread=5.0)
    m, _ = S.compare_speed(r)
    assert m.seconds_max_first.tolist() == [1.1]


def test_r_z_changes_beyond_1e_9_count():
    g = pd.DataFrame({"run": ["r1", "r2"], "activation": "tanh", "init": "x", "depth": 10,
                      "width": 8, "batch": 8, "seed": 0, "dtype": "f",
                      "R_z": [0.5, 0.5 + 1e-6]})
    assert "<b>1 changed</b>" in S.comparison_section({"gradstats_summary": g}).html


def test_long_speed_comparison_folds_and_stops_at_100():
    first = [(f"o{i}", "n", 1.0, 1.0, 1.0) for i in range(101)]
    c = S.comparison_section({"roofline": _speed(first, first)})
    assert "<summary>101 time ratios <span class='muted'>(101 rows" in c.html
    assert "<p>(1 more rows in the run's files)</p>" in c.html
