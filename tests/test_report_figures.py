"""The figure-drawing sections (convergence, gradient statistics, speed) on small hand-made
frames: which figures are drawn from which frame (their alt text, in order, and the data the
matplotlib artists hold), the headings and summaries that name the quantities, the columns and
row limits of their tables, and the one-line verdicts, each checked against hand counts.

PNG encoding is replaced by a recorder (the figures themselves are still drawn), so the file
stays fast."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from suite.report import figures as F
from suite.report import sections as S
from tests.test_report_values import num, tables


@pytest.fixture
def drawn(monkeypatch):
    """Figures handed to the PNG encoder, in order; each gets the src "data:figN"."""
    got = []

    def record(fig):
        got.append(fig)
        return f"data:fig{len(got) - 1}"

    monkeypatch.setattr(F, "to_data_uri", record)
    yield got
    plt.close("all")


_FIG = re.compile(r'<figure><img alt="([^"]*)" src="([^"]*)">(.*?)</figure>')


def figures_in(html):
    """(alt, src) of every <figure>, in order; none may carry a caption."""
    found = _FIG.findall(html)
    assert all(cap == "" for *_, cap in found), "no section captions its figures"
    assert html.count("<figure>") == len(found)
    return [(alt, src) for alt, src, _ in found]


def build(builder, frames):
    c = builder(frames)
    assert isinstance(c, S.Content)
    return c


def _folded(html, label, n_rows):
    return f"<summary>{label} <span class='muted'>({n_rows} rows; click to show)</span>" in html


# ---- convergence -------------------------------------------------------------------------

def _trajectories():
    # one optimizer, two starts of three steps each, rows out of step order
    rows = []
    for start, xs in ((0, [(1.0, 2.0), (2.0, 2.5), (3.0, 2.0)]),
                      (1, [(-1.0, -1.0), (-2.0, -2.0), (-3.0, -3.0)])):
        for step in (2, 0, 1):
            x0, x1 = xs[step]
            rows.append({"optimizer": "adam", "lr": 0.01, "start_index": start, "step": step,
                         "x0": x0, "x1": x1, "gap": [10.0, 1.0, 0.1][step] * (1 + start)})
    return pd.DataFrame(rows)


def _convergence(n_problems=1):
    rows = []
    for p in range(n_problems):
        for opt, hits in (("sgd", [np.nan, 40.0, np.nan, np.nan]),   # 1 of 4
                          ("adam", [1.0, 2.0, 3.0, np.nan])):         # 3 of 4
            for i, h in enumerate(hits):
                rows.append({"problem": f"p{p}", "optimizer": opt, "lr": 0.01,
                             "start_index": i, "steps_to_target_1e-04": h,
                             "final_gap": 0.5, "diverged": False})
    return pd.DataFrame(rows)


def test_convergence_draws_each_figure_from_its_frame(drawn):
    traj = _trajectories()
    ecdf = pd.DataFrame({"problem": "himmelblau", "optimizer": ["adam"] * 2 + ["sgd"],
                         "lr": 0.01, "steps": [20, 10, 7], "fraction": [0.5, 0.25, 1.0]})
    basins = pd.DataFrame({"optimizer": "adam", "lr": 0.01, "minimizer_index": [0, 1, 2, 3],
                           "start_0": [-5.0, 5.0, -5.0, 5.0], "start_1": [-5.0, -5.0, 5, 5]})
    shares = pd.DataFrame({"optimizer": "adam", "lr": 0.01, "minimizer_index": [0, 1, 2, 3],
                           "starts": 1, "share": 0.25})
    sens = pd.DataFrame({"optimizer": "adam", "lr": [1e-3, 1e-2],
                         "success_rate": [0.2, 0.6], "median_steps": [700, 70]})
    c = build(S.convergence_section, {
        "convergence_trajectories": traj, "ecdf": ecdf, "basins": basins,
        "basin_shares": shares, "lr_sensitivity": sens, "convergence": _convergence()})
    assert figures_in(c.html) == [
        ("Himmelblau contour with trajectories", "data:fig0"),
        ("suboptimality versus step", "data:fig1"),
        ("ECDF of steps to target", "data:fig2"),
        ("basin-of-attraction maps", "data:fig3"),
        ("learning-rate sensitivity", "data:fig4")]
    assert all(isinstance(f, Figure) for f in drawn)
    contour, loss, ecdf_fig, basin_fig, sens_fig = drawn
    # the contour: each start's path in step order, from the trajectories frame
    paths = [ln for ln in contour.axes[0].get_lines() if len(ln.get_xdata()) == 3]
    np.testing.assert_array_equal(paths[0].get_xdata(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(paths[0].get_ydata(), [2.0, 2.5, 2.0])
    np.testing.assert_array_equal(paths[1].get_xdata(), [-1.0, -2.0, -3.0])
    # suboptimality: the median over the two starts per step (gaps 10, 20 -> 15 at step 0)
    (median,) = [ln for ln in loss.axes[0].get_lines() if ln.get_label() == "median"]
    np.testing.assert_array_equal(median.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(median.get_ydata(), [15.0, 1.5, 0.15])
    assert loss.axes[0].get_ylabel() == "f(x) - f*"
    # the ECDF: each optimizer's fractions, sorted by steps
    lines = {ln.get_label(): ln for ln in ecdf_fig.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["adam"].get_xdata(), [10, 20])
    np.testing.assert_array_equal(lines["adam"].get_ydata(), [0.25, 0.5])
    np.testing.assert_array_equal(lines["sgd"].get_ydata(), [1.0])
    # the basin map: minimizer index + 1 per grid start (rows: start_1)
    img = np.asarray(basin_fig.axes[0].get_images()[0].get_array())
    np.testing.assert_array_equal(img, [[1, 2], [3, 4]])
    # learning-rate sensitivity: success rate left, median steps right, against lr
    (succ,) = sens_fig.axes[0].get_lines()
    np.testing.assert_array_equal(succ.get_xdata(), [1e-3, 1e-2])
    np.testing.assert_array_equal(succ.get_ydata(), [0.2, 0.6])
    (med,) = sens_fig.axes[1].get_lines()
    np.testing.assert_array_equal(med.get_ydata(), [700, 70])
    # the blocks follow one another with nothing between them
    assert c.html.startswith('<figure><img alt="Himmelblau')
    assert "</figure><h3>Basin shares: fraction of grid starts whose final iterate is nearest " \
           "to each minimum</h3><div class=\"table\">" in c.html
    assert "</table></div><figure><img alt=\"learning-rate sensitivity\"" in c.html
    assert ("</figure><h3>All problems: success rate and median steps to f - f* &lt; 1e-4 "
            "(first hit), median final gap (final value)</h3><div class=\"table\">") in c.html
    # per optimizer in the frame's order (sgd first): 1 of 4 and 3 of 4 starts reach 1e-4
    assert c.summary == "1 problems: share of starts reaching f - f* &lt; 1e-4 sgd 25%, adam 75%"


def test_convergence_without_the_summary_frame_has_no_verdict(drawn):
    ecdf = pd.DataFrame({"optimizer": ["adam"], "steps": [3], "fraction": [1.0]})
    c = build(S.convergence_section, {"ecdf": ecdf})
    assert c.summary == ""
    assert c.verdict == "info"
    assert figures_in(c.html) == [("ECDF of steps to target", "data:fig0")]
    # the figure is titled by the problem and its axes name fractions and steps
    ax = drawn[0].axes[0]
    assert ax.get_title() == "himmelblau: ECDF of steps to target (COCO style)"
    assert ax.get_xlabel() == "steps (log scale)"
    assert ax.get_ylabel() == "fraction of (start, target) pairs"
    assert S.convergence_section({}) == ""


def test_convergence_table_cut_at_200_rows_and_folded_under_its_count():
    # 101 problems x 2 optimizers = 202 rows of the table, 200 shown
    c = build(S.convergence_section, {"convergence": _convergence(101)})
    (t,) = tables(c.html)
    assert len(t) == 200
    assert "<p>(2 more rows in the run's files)</p>" in c.html
    assert _folded(c.html, "101 problems × 2 optimizers", 202)
    assert num(t["success_1e_4"].iloc[0]) == 0.75       # p0 / adam (sorted by the groupby)
    assert c.summary.startswith("101 problems: share of starts reaching f - f* &lt; 1e-4 sgd 25%")
    # 200 rows exactly: all shown, nothing said to be left out
    c = build(S.convergence_section, {"convergence": _convergence(100)})
    assert len(tables(c.html)[0]) == 200
    assert "more rows" not in c.html


# ---- gradient statistics -----------------------------------------------------------------

def _layers():
    rows = []
    for act, init in (("relu", "he_normal"), ("tanh", "xavier")):
        for depth in (2, 3):
            for seed in (0, 1):
                for layer in range(1, depth + 1):
                    g = 10.0 ** (layer - depth) * (1 if act == "relu" else 3) * (1 + seed)
                    rows.append({"activation": act, "init": init, "depth": depth,
                                 "seed": seed, "layer": layer, "preact_grad_norm": g,
                                 "measured_factor": 0.5 * layer,
                                 "predicted_factor": 0.25 * layer})
    return pd.DataFrame(rows)


def _gradstats_summary(n_depths=2):
    return pd.DataFrame([
        {"activation": act, "init": "he_normal", "depth": depth, "seed": seed,
         "R_z": 0.1 + 0.2 * seed, "R_z_predicted": 0.0,
         "verdict": "vanishing" if (act, depth) == ("tanh", 3) else "stable",
         "max_saturated_frac": 0.1 * (seed + 1) if act == "tanh" else 0.0,
         "max_dead_frac": 0.25 * seed if act == "relu" else 0.0}
        for act in ("relu", "tanh") for depth in range(2, 2 + n_depths) for seed in (0, 1)])


def test_gradstats_figures_table_and_verdict(drawn):
    layers = _layers()
    summ = _gradstats_summary().iloc[::-1]     # depths seen 3 before 2: listed sorted
    c = build(S.gradstats_section, {"gradstats": layers, "gradstats_summary": summ})
    assert figures_in(c.html) == [("gradient norms per layer", "data:fig0"),
                                  ("measured versus predicted factors", "data:fig1"),
                                  ("depth by layer heatmap", "data:fig2")]
    norms, fac, heat = drawn
    # gradient norms: the deepest network (3), seed 0, one line per activation / init
    ax = norms.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"relu / he_normal", "tanh / xavier"}
    np.testing.assert_array_equal(lines["relu / he_normal"].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines["tanh / xavier"].get_ydata(), [0.03, 0.3, 3.0])
    assert ax.get_ylabel() == "‖∂L/∂z_l‖ (log scale)"
    assert ax.get_title().endswith("(depth 3)")
    # factors: measured (y) against predicted (x), every row of the pair
    pts = fac.axes[0].collections[0].get_offsets()
    relu = layers[layers.activation == "relu"]
    np.testing.assert_allclose(pts[:, 0], relu["predicted_factor"])
    np.testing.assert_allclose(pts[:, 1], relu["measured_factor"])
    # heat map: log10 of the seed-0 norms, a row per depth (2: layers 1-2, then NaN)
    mat = np.ma.filled(np.asarray(heat.axes[0].get_images()[0].get_array(), float), np.nan)
    np.testing.assert_allclose(mat, [[-1.0, 0.0, np.nan], [-2.0, -1.0, 0.0]])
    assert c.html.startswith("<figure>")
    assert ("</figure><h3>R_z = log10(‖∂L/∂z_1‖ / ‖∂L/∂z_L‖), measured (mean over seeds) and "
            "predicted</h3><div class=\"table\">") in c.html
    (t,) = tables(c.html)
    assert list(t.columns) == ["activation", "init", "depth", "R_z", "R_z_predicted",
                               "verdict", "max_saturated", "max_dead"]
    t = t.set_index(["activation", "depth"])
    assert num(t.loc[("tanh", "3"), "max_saturated"]) == 0.2      # max over seeds
    assert num(t.loc[("relu", "2"), "max_dead"]) == 0.25
    assert num(t.loc[("relu", "2"), "R_z"]) == pytest.approx(0.2)  # mean over seeds
    assert c.summary == "4 networks (2 activations, depths 2, 3): 3 stable, 1 vanishing"


def test_gradstats_without_summary_has_figures_only(drawn):
    c = build(S.gradstats_section, {"gradstats": _layers()})
    assert c.summary == ""
    assert len(figures_in(c.html)) == 3
    assert "<h3>" not in c.html
    assert S.gradstats_section({"gradstats_summary": _gradstats_summary()}) == ""


def test_gradstats_table_cut_at_200_rows_and_folded(drawn):
    layers = _layers()
    c = build(S.gradstats_section, {"gradstats": layers,
                                    "gradstats_summary": _gradstats_summary(101)})
    assert len(tables(c.html)[0]) == 200
    assert "<p>(2 more rows in the run's files)</p>" in c.html
    assert _folded(c.html, "R_z per activation, initialisation and depth", 202)
    c = build(S.gradstats_section, {"gradstats": layers,
                                    "gradstats_summary": _gradstats_summary(100)})
    assert "more rows" not in c.html


# ---- speed -------------------------------------------------------------------------------

ROOF_COLS = ["optimizer", "config", "implementation", "threads", "seconds", "spread",
             "GB_per_s", "fraction_of_ceiling", "fraction_spread", "fraction_of_triad",
             "speedup_vs_best_torch", "speedup_vs_best_torch_per_ceiling", "temporaries",
             "torch_threads", "numba_threads"]


def _roofline():
    """Two optimizers (sgd first), three implementations, at 2 and 1 threads (2 first)."""
    rows = []
    for threads in (2, 1):
        for opt in ("sgd", "adam"):
            for impl, sec in (("numba", 4.0), ("torch.optim fused", 1.0),
                              ("numpy", 8.0)):
                sec = sec / threads * (2 if opt == "adam" else 1)
                rows.append({"optimizer": opt, "config": "default", "implementation": impl,
                             "threads": threads, "seconds": sec, "spread": 0.01,
                             "GB_per_s": 10.0 / sec, "fraction_of_ceiling": 0.5,
                             "fraction_spread": 0.02, "fraction_of_triad": 0.4,
                             "speedup_vs_best_torch": 1.0 / sec * (2 if opt == "adam" else 1),
                             "speedup_vs_best_torch_per_ceiling": 0.3, "temporaries": 0.0,
                             "torch_threads": threads, "numba_threads": threads,
                             "ceiling_GB_per_s": 20.0 * threads, "triad_GB_per_s": 15.0,
                             "size": 1000, "dtype": "float32", "extra": "left out"})
    return pd.DataFrame(rows)


def test_speed_roofline_one_thread_bars_table_sweep_and_verdict(drawn):
    r = _roofline()
    c = build(S.speed_section, {"roofline": r})
    assert figures_in(c.html) == [("roofline bars", "data:fig0"), ("thread sweep", "data:fig1")]
    bars, sweep = drawn
    # the bars: GB/s at one thread only (the 2-thread rows come first in the frame)
    ax = bars.axes[0]
    heights = [p.get_height() for p in ax.patches]
    one = r[r.threads == 1]
    want = [one[(one.optimizer == o) & (one.implementation == i)]["GB_per_s"].item()
            for i in ("numba", "torch.optim fused", "numpy") for o in ("sgd", "adam")]
    np.testing.assert_allclose(heights, want)     # 2.5, 1.25, 10, 5, 1.25, 0.625
    assert ax.get_title() == "Optimizer step on 1,000 float32 elements, 1 thread(s)"
    assert ax.get_ylabel() == "achieved GB/s (bytes a step must move / time)"
    # the table: every timing column that the frame has, in this order, all rows
    t_roof, t_sweep = tables(c.html)
    assert list(t_roof.columns) == ROOF_COLS
    assert len(t_roof) == len(r)
    # the sweep: GB/s against threads per implementation (numba and torch.optim's)
    lines = {ln.get_label(): ln for ln in sweep.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["numba"].get_xdata(), [2, 1])
    np.testing.assert_allclose(lines["numba"].get_ydata(), [5.0, 2.5])
    assert "numpy" not in lines
    assert ("</table></div><h3>Thread sweep: step time and GB/s per thread count, ours and "
            "torch's (best of interleaved rounds)</h3><figure><img alt=\"thread sweep\"") \
        in c.html
    assert "sgd" in t_sweep["optimizer"].tolist()
    np.testing.assert_allclose(num(t_sweep.set_index(["optimizer", "threads"])
                                   .loc[("adam", "1"), "numba ms"]), 8000.0)
    # the verdict: per optimizer (frame order), our fastest at one thread (numba, not
    # torch.optim's fused): sgd 4 s -> 1 / 4, adam 8 s -> 2 / 8
    assert c.summary == ("fastest of ours vs torch.optim's fastest: sgd 0.25×, adam 0.25× "
                         "(size 1,000)")
    assert c.html.startswith("<figure>")


def test_speed_verdict_picks_our_fastest_per_optimizer(drawn):
    r = pd.DataFrame({"optimizer": ["sgd", "sgd", "sgd", "adam", "adam"],
                      "implementation": ["torch.optim fused", "numpy", "numba",
                                         "numba", "torch.optim foreach"],
                      "seconds": [0.5, 3.0, 2.0, 1.0, 4.0], "GB_per_s": 1.0,
                      "speedup_vs_best_torch": [1.0, 1 / 6, 0.25, 4.0, 1.0],
                      "triad_GB_per_s": 9.0, "size": 12345, "dtype": "float64",
                      "torch_threads": 1})
    c = build(S.speed_section, {"roofline": r})
    assert c.summary == "fastest of ours vs torch.optim's fastest: sgd 0.25×, adam 4× (size 12,345)"
    assert "Thread sweep" not in c.html                 # no threads column
    # torch's rows alone: nothing of ours to name
    c = build(S.speed_section, {"roofline": r[r.implementation.str.startswith("torch")]})
    assert c.summary == ""
    # one row: the size is read from it
    c = build(S.speed_section, {"roofline": r.iloc[[3]]})
    assert c.summary == "fastest of ours vs torch.optim's fastest: adam 4× (size 12,345)"


def test_speed_thread_sweep_needs_two_thread_counts(drawn):
    r = _roofline()
    c = build(S.speed_section, {"roofline": r[r.threads == 1]})
    assert [a for a, _ in figures_in(c.html)] == ["roofline bars"]
    assert "Thread sweep" not in c.html
    assert len(tables(c.html)) == 1


def test_speed_tables_cut_and_folded(drawn, monkeypatch):
    # big frames: the figures are replaced (their data are checked above)
    seen = {}

    def bars(frame):
        seen["bars"] = frame
        return plt.figure()

    monkeypatch.setattr(F, "roofline_bars", bars)
    monkeypatch.setattr(F, "thread_sweep", lambda f: plt.figure())
    r = pd.concat([_roofline().assign(optimizer=f"o{i}") for i in range(17)],
                  ignore_index=True)            # 17 x 12 = 204 rows, 17 x 2 = 34 sweep rows
    c = build(S.speed_section, {"roofline": r})
    assert len(seen["bars"]) == 17 * 6
    assert set(seen["bars"].threads) == {1}
    t_roof, t_sweep = tables(c.html)
    assert len(t_roof) == 200
    assert "<p>(4 more rows in the run's files)</p>" in c.html
    assert _folded(c.html, "Time, bandwidth and temporaries per optimizer and implementation",
                   204)
    assert len(t_sweep) == 34
    assert _folded(c.html, "Step time and GB/s per thread count", 34)
    # 201 thread counts of one optimizer: the sweep table is cut at 200 too
    one = _roofline().iloc[[0, 1]].drop(columns="threads")
    big = pd.concat([one.assign(threads=k) for k in range(1, 202)], ignore_index=True)
    c = build(S.speed_section, {"roofline": big})
    t_sweep = tables(c.html)[1]
    assert len(t_sweep) == 200
    assert c.html.count("<p>(1 more rows in the run's files)</p>") == 1   # the sweep only


def _bench(n):
    # group a holds the slowest benchmark: sorting by median alone would list it last
    return pd.DataFrame({"group": ["a"] + ["b"] * (n - 1), "name": [f"t{i}" for i in range(n)],
                         "median": np.arange(n, 0, -1) * 1e-3, "iqr": 1e-5, "rounds": 10,
                         "extra_size": 100, "extra_torch_threads": 1, "mean": 9.0})


def test_speed_pytest_benchmark_table(drawn):
    c = build(S.speed_section, {"pytest_benchmark": _bench(3)})
    assert c.summary == ""
    assert figures_in(c.html) == []
    assert c.html.startswith("<h3>pytest-benchmark (median seconds per call, by group)</h3>"
                             "<div class=\"table\">")
    (t,) = tables(c.html)
    assert list(t.columns) == ["group", "name", "median", "iqr", "rounds", "extra_size",
                               "extra_torch_threads"]
    assert list(t["name"]) == ["t0", "t2", "t1"]    # group a first, then b by median
    c = build(S.speed_section, {"pytest_benchmark": _bench(301)})
    assert len(tables(c.html)[0]) == 300
    assert "<p>(1 more rows in the run's files)</p>" in c.html
    assert _folded(c.html, "301 benchmarks", 301)
    c = build(S.speed_section, {"pytest_benchmark": _bench(300)})
    assert "more rows" not in c.html


def _asv(n_commits, n_latest=2):
    rows = [{"commit": f"c{k}", "date": pd.Timestamp("2026-01-01") + pd.Timedelta(days=k),
             "benchmark": f"bench_optim.Step{j}.time_step", "params": "(1000,)",
             "value": (k + 1) * 1e-3 * (j + 1), "unit": "seconds"}
            for k in range(n_commits) for j in range(n_latest if k == n_commits - 1 else 2)]
    return pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)


def test_speed_asv_history_and_latest(drawn):
    a = _asv(2)
    c = build(S.speed_section, {"asv": a})
    assert figures_in(c.html) == [("asv history", "data:fig0")]
    ax = drawn[0].axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"Step0 (1000,)", "Step1 (1000,)"}
    np.testing.assert_allclose(lines["Step1 (1000,)"].get_ydata(), [2e-3, 4e-3])
    assert ax.get_ylabel() == "seconds per call (log scale)"
    assert c.html.count("<h3>asv results, commit c1 (2 commit(s) in the history)</h3>") == 1
    (t,) = tables(c.html)
    assert list(t.columns) == ["benchmark", "params", "value"]
    assert sorted(num(v) for v in t["value"]) == [2e-3, 4e-3]   # the latest commit's only
    assert c.summary == ""
    # one commit: no history to draw
    c = build(S.speed_section, {"asv": _asv(1)})
    assert figures_in(c.html) == []
    assert "<h3>asv results, commit c0 (1 commit(s) in the history)</h3>" in c.html
    # the latest commit with a single measurement: its commit is named all the same
    c = build(S.speed_section, {"asv": _asv(3, n_latest=1)})
    assert "<h3>asv results, commit c2 (3 commit(s) in the history)</h3>" in c.html
    assert len(tables(c.html)[0]) == 1
    # an empty frame: no section
    assert S.speed_section({"asv": _asv(1).iloc[:0]}) == ""


def test_speed_asv_table_cut_at_300_and_folded(drawn, monkeypatch):
    monkeypatch.setattr(F, "asv_history", lambda a: plt.figure())
    c = build(S.speed_section, {"asv": _asv(2, n_latest=301)})
    (t,) = tables(c.html)
    assert len(t) == 300
    assert "<p>(1 more rows in the run's files)</p>" in c.html
    assert _folded(c.html, "301 asv measurements", 301)
    c = build(S.speed_section, {"asv": _asv(2, n_latest=300)})
    assert "more rows" not in c.html


def test_speed_blocks_join_without_separator(drawn):
    c = build(S.speed_section, {"pytest_benchmark": _bench(2), "asv": _asv(1)})
    assert "</table></div><h3>asv results" in c.html
    assert S.speed_section({}) == ""
