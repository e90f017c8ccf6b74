"""Report sections: each takes the loaded frames and returns an HTML fragment ('' if absent)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from suite.report import figures as F
from suite.report.html import _table

Frames = dict[str, pd.DataFrame]


def _img(fig: object, alt: str) -> str:
    return f'<figure><img alt="{alt}" src="{F.to_data_uri(fig)}"></figure>'  # type: ignore[arg-type]


def crossval_section(frames: Frames) -> str:
    if "crossval_summary" not in frames:
        return ""
    summ = frames["crossval_summary"]
    full = frames.get("crossval")
    text = ""
    if full is not None:
        n_fail = int((~full["passed"].astype(bool)).sum())
        text = (f"<p>{full['config'].nunique()} configurations, {len(full)} comparisons of "
                f"parameters and every state entry at every step against torch.optim's "
                f"for-loop, foreach and fused implementations; "
                f"<span class='{'bad' if n_fail else ''}'>{n_fail} disagree</span>.</p>")
    return text + _table(summ, 200)


def convergence_section(frames: Frames) -> str:
    out = []
    if "convergence_trajectories" in frames:
        t = frames["convergence_trajectories"]
        out.append(_img(F.himmelblau_contour(t), "Himmelblau contour with trajectories"))
        out.append(_img(F.loss_vs_step(t), "suboptimality versus step"))
    if "ecdf" in frames:
        out.append(_img(F.ecdf_plot(frames["ecdf"]), "ECDF of steps to target"))
    if "basins" in frames:
        out.append(_img(F.basin_maps(frames["basins"]), "basin-of-attraction maps"))
        shares = frames["basin_shares"].pivot_table(index=["optimizer", "lr"],
                                                    columns="minimizer_index", values="share")
        out.append("<h3>Basin shares (fraction of grid starts per minimum; -1 = diverged)</h3>"
                   + _table(shares.reset_index()))
    if "lr_sensitivity" in frames:
        out.append(_img(F.lr_sensitivity(frames["lr_sensitivity"]), "learning-rate sensitivity"))
    if "convergence" in frames:
        c = frames["convergence"]
        g = c.groupby(["problem", "optimizer", "lr"]).agg(
            starts=("start_index", "size"),
            success_1e_4=("steps_to_target_1e-04", lambda s: s.notna().mean()),
            median_steps_1e_4=("steps_to_target_1e-04", "median"),
            median_final_gap=("final_gap", "median"), diverged=("diverged", "mean"),
        ).reset_index()
        out.append("<h3>All problems: success rate and median steps to f - f* &lt; 1e-4 "
                   "(first hit), median final gap (final value)</h3>" + _table(g, 200))
    return "".join(out)


def gradstats_section(frames: Frames) -> str:
    if "gradstats" not in frames:
        return ""
    layers = frames["gradstats"]
    out = [_img(F.grad_norms(layers), "gradient norms per layer"),
           _img(F.factors(layers), "measured versus predicted factors"),
           _img(F.depth_layer_heatmaps(layers), "depth by layer heatmap")]
    if "gradstats_summary" in frames:
        s = frames["gradstats_summary"]
        s = s.groupby(["activation", "init", "depth"]).agg(
            R_z=("R_z", "mean"), R_z_predicted=("R_z_predicted", "mean"),
            verdict=("verdict", "first"), max_saturated=("max_saturated_frac", "max"),
            max_dead=("max_dead_frac", "max")).reset_index()
        out.append("<h3>R_z = log10(‖∂L/∂z_1‖ / ‖∂L/∂z_L‖), measured (mean over seeds) and "
                   "predicted</h3>" + _table(s, 200))
    return "".join(out)


def speed_section(frames: Frames) -> str:
    out = []
    if "roofline" in frames:
        r = frames["roofline"]
        one_t = r[r["threads"] == r["threads"].min()] if "threads" in r else r
        out.append(_img(F.roofline_bars(one_t), "roofline bars"))
        cols = ["optimizer", "config", "implementation", "threads", "seconds", "spread",
                "GB_per_s", "fraction_of_ceiling", "fraction_spread", "fraction_of_triad",
                "speedup_vs_best_torch", "temporaries", "torch_threads", "numba_threads"]
        out.append(_table(r[[c for c in cols if c in r]], 200))
        if "threads" in r and r["threads"].nunique() > 1:
            out.append("<h3>Thread sweep: step time and GB/s per thread count, ours and "
                       "torch's (best of interleaved rounds)</h3>")
            out.append(_img(F.thread_sweep(r), "thread sweep"))
            out.append(_table(F.thread_sweep_table(r), 200))
    if "pytest_benchmark" in frames:
        pb = frames["pytest_benchmark"]
        cols = [c for c in ("group", "name", "median", "iqr", "rounds", "extra_size",
                            "extra_torch_threads") if c in pb]
        out.append("<h3>pytest-benchmark (median seconds per call, by group)</h3>"
                   + _table(pb[cols].sort_values(["group", "median"]), 300))
    if "asv" in frames and len(frames["asv"]):
        a = frames["asv"]
        if a["commit"].nunique() > 1:
            out.append(_img(F.asv_history(a), "asv history"))
        latest = a[a["date"] == a["date"].max()]
        out.append(f"<h3>asv results, commit {latest['commit'].iloc[0]} "
                   f"({a['commit'].nunique()} commit(s) in the history)</h3>"
                   + _table(latest[["benchmark", "params", "value"]], 300))
    return "".join(out)


def comparison_section(frames: Frames) -> str:
    """Where two or more runs are loaded: what changed between the first and the last."""
    parts = []
    if "roofline" in frames and frames["roofline"]["run"].nunique() > 1:
        r = frames["roofline"]
        runs = list(dict.fromkeys(r["run"]))
        key = [k for k in ("optimizer", "implementation", "threads") if k in r]
        cols = ["seconds", "spread"] if "spread" in r else ["seconds"]
        j = r[r.run == runs[0]].set_index(key)[cols].join(
            r[r.run == runs[-1]].set_index(key)[cols], lsuffix="_a", rsuffix="_b", how="inner")
        ratio = (j["seconds_b"] / j["seconds_a"]).rename("time_ratio").to_frame()
        if "spread" in r:  # each run's stated spread (median / best - 1), both added up
            ratio["spread"] = (j["spread_a"] + j["spread_b"]).clip(lower=0.05).fillna(0.25)
            how = "beyond the two runs' stated spreads (at least ±5 %) counts as a change"
        else:
            ratio["spread"] = 0.25
            how = "beyond ±25 % counts as a change"
        ratio = ratio.reset_index()
        ratio["change"] = [
            "slower" if x > 1 + t else "faster" if x < 1 / (1 + t) else "within spread"
            for x, t in zip(ratio["time_ratio"], ratio["spread"], strict=True)]
        parts.append(f"<h3>Speed: {runs[-1]} vs {runs[0]} ({how})"
                     "</h3>" + _table(ratio, 100))
    if "gradstats_summary" in frames and frames["gradstats_summary"]["run"].nunique() > 1:
        s = frames["gradstats_summary"]
        runs = list(dict.fromkeys(s["run"]))
        k = ["activation", "init", "depth", "seed"]
        a = s[s.run == runs[0]].set_index(k)["R_z"]
        b = s[s.run == runs[-1]].set_index(k)["R_z"]
        d = (b - a).rename("R_z_change").reset_index()
        parts.append("<h3>Gradient statistics: change of R_z</h3>" +
                     _table(d[d["R_z_change"].abs() > 1e-9], 100))
    if "convergence" in frames and frames["convergence"]["run"].nunique() > 1:
        c = frames["convergence"]
        runs = list(dict.fromkeys(c["run"]))
        k = ["problem", "optimizer", "lr", "start_index"]
        col = "steps_to_target_1e-04"
        a = c[c.run == runs[0]].set_index(k)[col]
        b = c[c.run == runs[-1]].set_index(k)[col]
        changed = (a.fillna(-1) != b.fillna(-1)).sum()
        parts.append(f"<p>Convergence: {changed} starts changed their steps to 1e-4.</p>")
    return "".join(parts)


def accuracy_section(frames: Frames) -> str:
    """Activation accuracy: the largest error in ulps beyond the condition number, per cell."""
    if "accuracy" not in frames:
        return ""
    a = frames["accuracy"]
    wide = a.pivot_table(index=["function", "quantity", "dtype"], columns="implementation",
                         values="max_excess", aggfunc="max", sort=False).reset_index()
    bad = a[~a["passed"].astype(bool)]
    cols = ["function", "quantity", "dtype", "implementation", "max_ulp", "worst_x",
            "expected", "got", "false_zeros", "nonfinite"]
    text = ("<p>Largest error in ulps beyond the condition number κ(x) = |x g'(x)/g(x)| "
            "against mpmath (40 digits), on a grid over all magnitudes and the tails; the "
            "bound is 1 ulp float32 / 4 ulp float64 (numba 2 / 4; softmax 2 / 8, no κ). "
            f"<span class='{'bad' if len(bad) else ''}'>{len(bad)} of {len(a)} cells over "
            "the bound</span>.</p>")
    return (text + _table(wide, 200) + "<h3>Cells over the bound</h3>"
            + _table(bad[[c for c in cols if c in bad]], 200))


def _training_section(frames: Frames) -> str:
    from suite.report import training

    return training.section(frames)


SECTIONS: list[tuple[str, Callable[[Frames], str]]] = [
    ("Cross-validation against torch.optim", crossval_section),
    ("Convergence on test functions", convergence_section),
    ("Gradient statistics at initialisation", gradstats_section),
    ("Speed", speed_section),
    ("Training on real data", _training_section),
    ("Changes between runs", comparison_section),
    ("Activation accuracy", accuracy_section),
]
