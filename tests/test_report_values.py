"""The report's tables and figures carry the right numbers: each section is built from
hand-made frames whose answers are known, and its tables are read back from the HTML (and its
figures' data from the matplotlib artists) and checked value by value."""

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from suite.report import figures as F
from suite.report import sections as S


class _Tables(HTMLParser):
    """Every <table> of a fragment as a list of rows of cell texts (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def tables(html):
    p = _Tables()
    p.feed(html)
    out = []
    for rows in p.tables:
        head, *body = rows
        out.append(pd.DataFrame(body, columns=head))
    return out


def page(builder, frames):
    """The HTML a section builder produces (a string, or Content's html)."""
    return S.as_content(builder(frames)).html


def num(cell):
    return np.nan if cell in ("-", "") else float(cell)


# ---- convergence ------------------------------------------------------------------------

def _convergence_frame():
    rows = []
    hits = {("himmelblau", "adam"): [1.0, 2.0, 3.0, np.nan],      # 3 of 4 solved
            ("himmelblau", "sgd"): [np.nan, np.nan, 40.0, np.nan]}  # 1 of 4
    gaps = {("himmelblau", "adam"): [1e-9, 2e-9, 3e-9, 0.5],
            ("himmelblau", "sgd"): [0.1, 0.2, 1e-6, np.inf]}
    for (prob, opt), h in hits.items():
        for i, k in enumerate(h):
            rows.append({"problem": prob, "optimizer": opt, "lr": 0.01, "start_index": i,
                         "steps_to_target_1e-04": k, "final_gap": gaps[prob, opt][i],
                         "diverged": bool(opt == "sgd" and i == 3)})
    return pd.DataFrame(rows)


def test_convergence_table_values():
    html = page(S.convergence_section, {"convergence": _convergence_frame()})
    (t,) = tables(html)
    assert list(t.columns) == ["problem", "optimizer", "lr", "starts", "success_1e_4",
                               "median_steps_1e_4", "median_final_gap", "diverged"]
    t = t.set_index("optimizer")
    assert num(t.loc["adam", "starts"]) == 4
    assert num(t.loc["adam", "success_1e_4"]) == 0.75   # a success rate, not a failure rate
    assert num(t.loc["sgd", "success_1e_4"]) == 0.25
    assert num(t.loc["adam", "median_steps_1e_4"]) == 2.0  # over solved starts
    assert num(t.loc["sgd", "median_steps_1e_4"]) == 40.0
    assert num(t.loc["adam", "median_final_gap"]) == pytest.approx(2.5e-9, rel=1e-2)
    assert num(t.loc["sgd", "diverged"]) == 0.25
    assert num(t.loc["adam", "diverged"]) == 0.0
    assert num(t.loc["adam", "lr"]) == 0.01
    assert "f - f* &lt; 1e-4" in html or "f - f* < 1e-4" in html


def test_basin_share_table_and_map_values():
    """A 2 x 2 grid of starts: shares of minima (-1 = diverged) read back from the table, and
    the map's pixels are the grid's minimizer indices."""
    idx = [0, 0, 1, -1]
    basins = pd.DataFrame({"optimizer": "adam", "lr": 0.01, "minimizer_index": idx,
                           "start_0": [-5.0, 5.0, -5.0, 5.0], "start_1": [-5.0, -5.0, 5, 5]})
    shares = pd.DataFrame({"optimizer": "adam", "lr": 0.01, "minimizer_index": [-1, 0, 1],
                           "starts": [1, 2, 1], "share": [0.25, 0.5, 0.25]})
    html = page(S.convergence_section, {"basins": basins, "basin_shares": shares})
    t = tables(html)[0]
    labels = [F.MINIMA_LABELS[0], F.MINIMA_LABELS[1], "diverged"]
    assert [num(t[c].item()) for c in labels] == [0.5, 0.25, 0.25]
    img = F.basin_maps(basins).axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(img), np.reshape(idx, (2, 2)) + 1)


def test_ecdf_and_sensitivity_figures_plot_the_frames_values():
    ecdf = pd.DataFrame({"problem": "himmelblau", "optimizer": ["adam"] * 3 + ["sgd"] * 2,
                         "lr": 0.01, "steps": [10, 20, 30, 5, 50],
                         "fraction": [1 / 9, 2 / 9, 3 / 9, 0.5, 1.0]})
    fig = F.ecdf_plot(ecdf)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["adam"].get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(lines["adam"].get_ydata(), [1 / 9, 2 / 9, 3 / 9])
    np.testing.assert_allclose(lines["sgd"].get_ydata(), [0.5, 1.0])
    assert fig.axes[0].get_ylim()[1] <= 1.05  # fractions, not percentages
    sens = pd.DataFrame({"optimizer": "adam", "lr": [1e-3, 1e-2, 1e-1],
                         "success_rate": [0.1, 0.5, 0.9], "median_steps": [900, 300, 50]})
    fig = F.lr_sensitivity(sens)
    (succ,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(succ.get_ydata(), [0.1, 0.5, 0.9])
    assert "success" in fig.axes[0].get_ylabel()
    (med,) = fig.axes[1].get_lines()
    np.testing.assert_allclose(med.get_ydata(), [900, 300, 50])


# ---- gradient statistics ----------------------------------------------------------------

def test_gradstats_table_values():
    summ = pd.DataFrame({"activation": "relu", "init": "he_normal", "depth": 10,
                         "seed": [0, 1], "R_z": [0.1, 0.3], "R_z_predicted": [0.0, 0.0],
                         "verdict": "stable", "max_saturated_frac": [0.0, 0.0],
                         "max_dead_frac": [0.125, 0.25]})
    layers = pd.DataFrame({"activation": "relu", "init": "he_normal", "depth": 10, "seed": 0,
                           "layer": np.arange(1, 11), "preact_grad_norm": np.geomspace(1, 2, 10),
                           "measured_factor": 1.0, "predicted_factor": 1.0})
    html = page(S.gradstats_section, {"gradstats": layers, "gradstats_summary": summ})
    (t,) = tables(html)
    row = t.iloc[0]
    assert num(row["R_z"]) == pytest.approx(0.2)        # mean over seeds
    assert num(row["R_z_predicted"]) == 0.0
    assert row["verdict"] == "stable"
    assert num(row["max_dead"]) == 0.25                  # max over seeds
    fig = F.grad_norms(layers)
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), layers["preact_grad_norm"])


# ---- cross-validation and speed ---------------------------------------------------------

def test_crossval_counts_disagreements():
    full = pd.DataFrame({"optimizer": "adam", "config": ["a", "a", "b", "c"],
                         "passed": [True, False, True, True]})
    summ = pd.DataFrame({"optimizer": ["adam"], "dtype": ["float64"], "configs": [3],
                         "cells": [4], "failed": [1], "max_error_param": [1e-15],
                         "max_error_state": [2e-15]})
    html = page(S.crossval_section, {"crossval": full, "crossval_summary": summ})
    assert "3 configurations, 4 comparisons" in html
    assert "1 disagree" in html
    t = tables(html)[0]
    assert num(t["failed"].item()) == 1
    assert num(t["cells"].item()) == 4


def test_speed_tables_keep_units_and_columns():
    roof = pd.DataFrame({"optimizer": ["adam", "adam"], "implementation": ["numba", "fused"],
                         "seconds": [0.0123, 0.0246], "GB_per_s": [12.5, 6.25],
                         "fraction_of_triad": [0.8, 0.4], "speedup_vs_best_torch": [2.0, 1.0],
                         "temporaries": [0.0, 1.0], "torch_threads": 1, "numba_threads": 1,
                         "triad_GB_per_s": 15.6, "size": 1 << 24, "dtype": "float32"})
    bench = pd.DataFrame({"group": ["g", "g"], "name": ["fast", "slow"],
                          "median": [2.5e-4, 1e-3], "iqr": [1e-5, 2e-5], "rounds": [100, 50]})
    html = page(S.speed_section, {"roofline": roof, "pytest_benchmark": bench})
    t_roof, t_bench = tables(html)
    assert list(t_roof.columns) == ["optimizer", "implementation", "seconds", "GB_per_s",
                                    "fraction_of_triad", "speedup_vs_best_torch",
                                    "temporaries", "torch_threads", "numba_threads"]
    np.testing.assert_allclose([num(v) for v in t_roof["seconds"]], [0.0123, 0.0246])
    np.testing.assert_allclose([num(v) for v in t_roof["GB_per_s"]], [12.5, 6.25])
    assert "median seconds" in html
    b = t_bench.set_index("name")
    assert num(b.loc["fast", "median"]) == 2.5e-4       # seconds, not ms or µs
    assert list(t_bench["name"]) == ["fast", "slow"]     # sorted by median within a group
    fig = F.roofline_bars(roof)
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    np.testing.assert_allclose(heights, [6.25, 12.5])


def test_comparison_counts_changed_first_hits():
    c = pd.DataFrame({"run": ["r1"] * 3 + ["r2"] * 3, "problem": "p", "optimizer": "o",
                      "lr": 0.1, "start_index": [0, 1, 2] * 2, "start_0": [0.0, 1.0, 2.0] * 2,
                      "start_1": 0.0, "steps": 100,
                      "steps_to_target_1e-04": [5, np.nan, 7, 5, 9, np.nan]})
    html = page(S.comparison_section, {"convergence": c})
    assert "3 compared at equal settings, <b>2 changed</b>" in html


# ---- the table and figure blocks themselves -----------------------------------------------

def test_table_block_values_folding_and_cuts():
    from suite.report import tables as T

    df = pd.DataFrame({"run": "r1", "name": ["a<b>", "b", "c", "d", "e"],
                       "x": [0.0123456, 12345.678, np.nan, 1.0, 2.5e-7]})
    html = T.table(df, max_rows=3, fold_rows=2)
    (t,) = tables(html)
    assert list(t.columns) == ["name", "x"]              # one run: its column is dropped
    assert list(t["x"]) == ["0.0123", "1.23e+04", "-"]   # 3 significant digits, NaN as '-'
    assert t["name"][0] == "a<b>"                        # escaped in the HTML, text intact
    assert "a&lt;b&gt;" in html
    assert "(2 more rows in the run's files)" in html
    assert html.startswith("<details><summary>The table <span class='muted'>(5 rows; click "
                           "to show)</span></summary>")
    assert html.endswith("</details>")
    # two runs keep the column; at the limits nothing is folded or cut
    two = df.assign(run=["r1", "r2", "r1", "r2", "r1"]).head(3)
    html = T.table(two, max_rows=3, fold_rows=3, summary="Mine")
    (t,) = tables(html)
    assert list(t.columns) == ["run", "name", "x"]
    assert len(t) == 3
    assert "<details" not in html
    assert "more rows" not in html
    html = T.table(two, max_rows=3, fold_rows=2, summary="Mine")
    assert "<summary>Mine <span class='muted'>(3 rows; click to show)</span></summary>" in html
    # no border attribute (pandas writes border="1" unless told 0): the page's CSS draws them
    assert T.table(df.head(2)).startswith('<div class="table"><table class="dataframe">')
    assert len(tables(T.table(pd.DataFrame({"v": range(100)})))[0]) == 60   # default cut


def test_details_and_figure_blocks():
    from suite.report import tables as T

    assert T.details("S", "<p>c</p>") == "<details><summary>S</summary><p>c</p></details>"
    assert T.details("S", "c", open_=True) == "<details open><summary>S</summary>c</details>"
    fig = T.figure("data:image/png;base64,AAAA", 'a "b" <c>', caption="x < y")
    assert fig == ('<figure><img alt="a &quot;b&quot; &lt;c&gt;" '
                   'src="data:image/png;base64,AAAA"><figcaption>x &lt; y</figcaption></figure>')
    assert T.figure("u", "alt") == '<figure><img alt="alt" src="u"></figure>'
    assert T.esc("<&>") == "&lt;&amp;&gt;"
    assert "<details" in T.table(pd.DataFrame({"v": range(16)}))
    assert "<details" not in T.table(pd.DataFrame({"v": range(15)}))
