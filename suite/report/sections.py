"""The report's sections: a registry that every part of a run adds its section to.

A section has a key (its anchor), a title and a builder. The builder takes the loaded frames
(name -> DataFrame; each restricted to the newest run that has it unless the section asks for
``all_runs``) and returns :class:`Content` — the HTML, a one-line summary that the first screen
shows as the section's verdict, and the verdict's kind — or a plain HTML string, or ``''``
when its frames are absent (the section is then left out)::

    from suite.report import sections

    def training_section(frames):
        if "training" not in frames:
            return ""
        return sections.Content(html, summary="3 tasks: adam reaches the target first",
                                verdict="info")

    sections.register("training", "Training tasks", training_section)

Entries of :data:`SECTIONS` may also be ``(title, builder)`` tuples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from suite.report import figures as F
from suite.report.summary import summary_section, tuning_section
from suite.report.tables import esc, figure, table

Frames = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Content:
    """What a section builder returns: ``html``, a one-line ``summary`` (HTML) for the first
    screen, and ``verdict``: "pass", "fail", "warn" or "info" (the summary's colour)."""

    html: str
    summary: str = ""
    verdict: str = "info"


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    build: Callable[[Frames], Content | str]
    all_runs: bool = False


def _img(fig: object, alt: str, caption: str = "") -> str:
    return figure(F.to_data_uri(fig), alt, caption)  # type: ignore[arg-type]


def as_content(result: Content | str | None) -> Content:
    if isinstance(result, Content):
        return result
    return Content(result or "")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


# ---------------------------------------------------------------------------------------------
# cross-validation

def crossval_section(frames: Frames) -> Content | str:
    if "crossval_summary" not in frames:
        return ""
    summ = frames["crossval_summary"]
    full = frames.get("crossval")
    text, line, verdict = "", "", "info"
    if full is not None:
        n_fail = int((~full["passed"].astype(bool)).sum())
        verdict = "fail" if n_fail else "pass"
        line = (f"{full['config'].nunique()} configurations of "
                f"{full['optimizer'].nunique()} optimizers, {len(full)} comparisons: "
                + (f"{n_fail} disagree with torch.optim" if n_fail else
                   "every one agrees with torch.optim"))
        text = (f"<p>{full['config'].nunique()} configurations, {len(full)} comparisons of "
                f"parameters and every state entry at every step against torch.optim's "
                f"for-loop, foreach and fused implementations; "
                f"<span class='{'bad' if n_fail else 'pass'}'>{n_fail} disagree</span>.</p>")
    per_opt = summ.groupby("optimizer", sort=False).agg(
        configs=("configs", "max"), cells=("cells", "sum"), failed=("failed", "sum"),
        worst_error_param=("max_error_param", "max"),
        worst_error_state=("max_error_state", "max")).reset_index()
    text += table(per_opt)
    text += table(summ, 200, summary="Worst errors per optimizer × dtype × backend × torch "
                  "implementation")
    if full is not None and (~full["passed"].astype(bool)).any():
        bad = full[~full["passed"].astype(bool)]
        text += table(bad, 100, summary=f"The {len(bad)} disagreeing comparisons")
    return Content(text, summary=line, verdict=verdict)


# ---------------------------------------------------------------------------------------------
# convergence

MINIMA_LABELS = F.MINIMA_LABELS


def basin_share_table(shares: pd.DataFrame) -> pd.DataFrame:
    """One row per optimizer x lr, one column per minimum A-D (share of grid starts whose
    final iterate is nearest to it) and a ``diverged`` column only where some start diverged."""
    keys = [k for k in ("optimizer", "lr") if k in shares]
    wide = shares.pivot_table(index=keys, columns="minimizer_index", values="share",
                              aggfunc="sum", fill_value=0.0)
    names = {i: MINIMA_LABELS[i] if 0 <= i < len(MINIMA_LABELS) else f"minimum {i}"
             for i in wide.columns if i >= 0}
    cols = [i for i in sorted(wide.columns) if i >= 0]
    out = wide[cols].rename(columns=names)
    if -1 in wide.columns and (wide[-1] > 0).any():
        out["diverged"] = wide[-1]
    out.columns.name = None
    return out.reset_index()


def convergence_section(frames: Frames) -> Content | str:
    out = []
    line = ""
    if "convergence_trajectories" in frames:
        t = frames["convergence_trajectories"]
        out.append(_img(F.himmelblau_contour(t), "Himmelblau contour with trajectories"))
        out.append(_img(F.loss_vs_step(t), "suboptimality versus step"))
    if "ecdf" in frames:
        out.append(_img(F.ecdf_plot(frames["ecdf"]), "ECDF of steps to target"))
    if "basins" in frames:
        out.append(_img(F.basin_maps(frames["basins"]), "basin-of-attraction maps"))
    if "basin_shares" in frames:
        out.append("<h3>Basin shares: fraction of grid starts whose final iterate is nearest "
                   "to each minimum</h3>" + table(basin_share_table(frames["basin_shares"])))
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
                   "(first hit), median final gap (final value)</h3>"
                   + table(g, 200, summary=f"{g['problem'].nunique()} problems × "
                           f"{g['optimizer'].nunique()} optimizers"))
        per = c.groupby("optimizer", sort=False)["steps_to_target_1e-04"].agg(
            lambda s: s.notna().mean())
        line = (f"{c['problem'].nunique()} problems: share of starts reaching f - f* &lt; 1e-4 "
                + ", ".join(f"{esc(o)} {v:.0%}" for o, v in per.items()))
    return Content("".join(out), summary=line) if out else ""


# ---------------------------------------------------------------------------------------------
# gradient statistics

def gradstats_section(frames: Frames) -> Content | str:
    if "gradstats" not in frames:
        return ""
    layers = frames["gradstats"]
    out = [_img(F.grad_norms(layers), "gradient norms per layer"),
           _img(F.factors(layers), "measured versus predicted factors"),
           _img(F.depth_layer_heatmaps(layers), "depth by layer heatmap")]
    line = ""
    if "gradstats_summary" in frames:
        s = frames["gradstats_summary"]
        s = s.groupby(["activation", "init", "depth"]).agg(
            R_z=("R_z", "mean"), R_z_predicted=("R_z_predicted", "mean"),
            verdict=("verdict", "first"), max_saturated=("max_saturated_frac", "max"),
            max_dead=("max_dead_frac", "max")).reset_index()
        counts = s["verdict"].value_counts()
        line = (f"{len(s)} networks ({s['activation'].nunique()} activations, depths "
                f"{', '.join(str(d) for d in sorted(s['depth'].unique()))}): "
                + ", ".join(f"{n} {esc(v)}" for v, n in counts.items()))
        out.append("<h3>R_z = log10(‖∂L/∂z_1‖ / ‖∂L/∂z_L‖), measured (mean over seeds) and "
                   "predicted</h3>" + table(s, 200, summary="R_z per activation, "
                                            "initialisation and depth"))
    return Content("".join(out), summary=line)


# ---------------------------------------------------------------------------------------------
# speed

def speed_section(frames: Frames) -> Content | str:
    out = []
    line = ""
    if "roofline" in frames:
        r = frames["roofline"]
        one_t = r[r["threads"] == r["threads"].min()] if "threads" in r else r
        out.append(_img(F.roofline_bars(one_t), "roofline bars"))
        cols = ["optimizer", "config", "implementation", "threads", "seconds", "spread",
                "GB_per_s", "fraction_of_ceiling", "fraction_spread", "fraction_of_triad",
                "speedup_vs_best_torch", "speedup_vs_best_torch_per_ceiling", "temporaries",
                "torch_threads", "numba_threads"]
        out.append(table(r[[c for c in cols if c in r]], 200,
                         summary="Time, bandwidth and temporaries per optimizer and "
                                 "implementation"))
        if "threads" in r and r["threads"].nunique() > 1:
            out.append("<h3>Thread sweep: step time and GB/s per thread count, ours and "
                       "torch's (best of interleaved rounds)</h3>")
            out.append(_img(F.thread_sweep(r), "thread sweep"))
            out.append(table(F.thread_sweep_table(r), 200, summary="Step time and GB/s per "
                             "thread count"))
        ours = one_t[~one_t["implementation"].str.startswith("torch")]
        if len(ours):
            best = ours.loc[ours.groupby("optimizer", sort=False)["seconds"].idxmin()]
            line = ("fastest of ours vs torch.optim's fastest: " + ", ".join(
                f"{esc(o)} {x:.2g}×" for o, x in zip(best["optimizer"],
                                                     best["speedup_vs_best_torch"],
                                                     strict=True))
                    + f" (size {int(r['size'].iloc[0]):,})")
    if "pytest_benchmark" in frames:
        pb = frames["pytest_benchmark"]
        cols = [c for c in ("group", "name", "median", "iqr", "rounds", "extra_size",
                            "extra_torch_threads") if c in pb]
        out.append("<h3>pytest-benchmark (median seconds per call, by group)</h3>"
                   + table(pb[cols].sort_values(["group", "median"]), 300,
                           summary=f"{len(pb)} benchmarks"))
    if "asv" in frames and len(frames["asv"]):
        a = frames["asv"]
        if a["commit"].nunique() > 1:
            out.append(_img(F.asv_history(a), "asv history"))
        latest = a[a["date"] == a["date"].max()]
        out.append(f"<h3>asv results, commit {latest['commit'].iloc[0]} "
                   f"({a['commit'].nunique()} commit(s) in the history)</h3>"
                   + table(latest[["benchmark", "params", "value"]], 300,
                           summary=f"{len(latest)} asv measurements"))
    return Content("".join(out), summary=line) if out else ""


# ---------------------------------------------------------------------------------------------
# comparison of runs

def _runs(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["run"]))


def _settings_note(a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> str:
    """Which setting columns take different values in the two runs (why rows do not match):
    few values are listed, many are counted."""
    def fmt(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    listed, counted = [], []
    for c in cols:
        if c in a and c in b:
            va, vb = sorted(a[c].dropna().unique()), sorted(b[c].dropna().unique())
            if {fmt(v) for v in va} == {fmt(v) for v in vb}:
                continue  # equal to 3 digits: the same setting
            if max(len(va), len(vb)) <= 6:
                listed.append(f"{c} {', '.join(map(fmt, va))} vs {', '.join(map(fmt, vb))}")
            else:
                common = len({fmt(v) for v in va} & {fmt(v) for v in vb})
                counted.append(f"{c}: {len(va)} vs {len(vb)} values, {common} in common")
    return "; ".join(listed + counted)


def compare_speed(r: pd.DataFrame, noise: float = 0.25, max_spread: float = 1.5
                  ) -> tuple[pd.DataFrame, str]:
    """Time ratio last/first run per optimizer x implementation at equal size, dtype and
    threads.

    A change is flagged only where the ratio, divided by the median ratio of all measurements
    (a drift of the machine's state that every implementation shares), is beyond ``noise``
    and beyond 3 robust standard deviations (1.4826 MAD) of all the log-ratios, *and* the two
    runs' ranges
    over repeats (``seconds_min``..``seconds_max``; or, where the roofline records the best
    time and its ``spread``, best..median) do not overlap. Where the ratio is beyond
    ``noise`` but the repeats varied by more than ``max_spread`` (max/min) in either run, the
    measurement was disturbed (a busy machine): it is marked "too noisy" instead of judged."""
    runs = _runs(r)
    keys = [k for k in ("optimizer", "config", "implementation", "size", "dtype", "threads",
                        "torch_threads") if k in r]
    if "seconds_min" not in r and "spread" in r:
        # the best time over rounds and its stated spread (median / best - 1): the range from
        # the best to the median
        r = r.assign(seconds_min=r["seconds"],
                     seconds_max=r["seconds"] * (1 + r["spread"].fillna(0).clip(lower=0)))
    a, b = r[r.run == runs[0]], r[r.run == runs[-1]]
    m = a.merge(b, on=keys, suffixes=("_first", "_last"))
    if m.empty:
        note = _settings_note(a, b, ["size", "dtype", "torch_threads", "optimizer"])
        return m, f"not comparable: no measurement at equal settings ({esc(note)})"
    m["time_ratio"] = m["seconds_last"] / m["seconds_first"]
    # how much the two runs' machine states differed, measured on all their timings: the
    # median log-ratio (a drift every implementation shares) and the robust spread (MAD)
    # of the log-ratios around it; a change must stand out from both
    logr = np.log(m["time_ratio"].astype(float))
    drift, band = 0.0, np.log1p(noise)
    if len(m) >= 8:
        drift = float(np.median(logr))
        band = max(band, 3 * 1.4826 * float(np.median(np.abs(logr - drift))))
    beyond = (logr - drift).abs() > band
    have_spread = {"seconds_min_first", "seconds_max_first", "seconds_min_last",
                   "seconds_max_last"} <= set(m.columns)
    if have_spread:
        apart = ((m["seconds_min_last"] > m["seconds_max_first"])
                 | (m["seconds_max_last"] < m["seconds_min_first"]))
        noisy = ((m["seconds_max_first"] > max_spread * m["seconds_min_first"])
                 | (m["seconds_max_last"] > max_spread * m["seconds_min_last"]))
        spread = (f"and the ranges over repeats do not overlap; apparent changes of measurements "
                  f"whose repeats varied by more than {max_spread:g}x are too noisy to judge")
        noisy = beyond & noisy  # an apparent change that the spread of repeats cannot support
    else:
        # without ranges over repeats every change beyond the band counts, none as too noisy
        apart = pd.Series(True, index=m.index)
        noisy = pd.Series(False, index=m.index)
        spread = "(these runs did not record their spread over repeats)"
    # slower or faster than the drift that every measurement shares (the ratio itself may be
    # above 1 for a measurement that got faster than the rest)
    m["change"] = np.where(noisy, "too noisy", np.where(
        beyond & apart, np.where(logr > drift, "slower", "faster"), ""))
    cols = [*keys, "seconds_first", "seconds_last", "time_ratio", "change"]
    cols += [c for c in ("seconds_min_first", "seconds_max_first", "seconds_min_last",
                         "seconds_max_last") if c in m]
    dropped = len(a) + len(b) - 2 * len(m)
    n_noisy = int(noisy.sum())
    note = (f"a change is flagged where the time ratio, after the drift all measurements "
            f"share ({np.exp(drift):.2f}x), is beyond ×/÷{np.exp(band):.2f} (±{noise:.0%} or "
            f"3 robust standard deviations of all ratios, the larger) {spread}"
            + (f"; {dropped} measurements had no counterpart" if dropped else "")
            + (f"; <b>{n_noisy} of {len(m)} too noisy to judge</b> (a busy machine: "
               "measure again on a quiet one)" if n_noisy else ""))
    return m[cols], note


def _numbers(v: pd.Series) -> pd.Series | None:
    """``v`` as float64 where every value that is not missing is a number (an object column,
    as a frame concatenated from runs with and without values loads, included), else None."""
    n = pd.to_numeric(v, errors="coerce").astype(float)
    return n if (n.isna() == v.isna()).all() else None


def _compare_keyed(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], value: str, tol: float
                   ) -> tuple[pd.DataFrame, int, int]:
    """The first run's (``a``) and the last run's (``b``) ``value`` at equal ``keys``: (rows
    that changed, rows compared, rows without a counterpart). Numbers are equal within ``tol`` (relative and
    absolute), missing equals missing (NaN or None); a column with any value that is not a
    number compares as text."""
    keys = [k for k in keys if k in a]
    m = a[[*keys, value]].merge(b[[*keys, value]], on=keys, suffixes=("_first", "_last"))
    va, vb = m[f"{value}_first"], m[f"{value}_last"]
    na, nb = _numbers(va), _numbers(vb)
    if na is not None and nb is not None:
        same = (np.isclose(na, nb, rtol=tol, atol=tol) | (na.isna() & nb.isna()) | (va == vb))
    else:
        same = (va.astype(str) == vb.astype(str))
    changed = m[~same]
    return changed, len(m), len(a) + len(b) - 2 * len(m)


def comparison_section(frames: Frames) -> Content | str:
    """Where two or more runs are loaded: what changed between the first and the last, on
    the measurements both runs made at equal settings; what cannot be compared is said."""
    runs_seen = {r for f in frames.values() if isinstance(f, pd.DataFrame) and "run" in f
                 for r in f["run"].unique()}
    if len(runs_seen) < 2:
        return ""
    parts: list[str] = []
    flags: list[str] = []
    if "roofline" in frames and frames["roofline"]["run"].nunique() > 1:
        r = frames["roofline"]
        runs = _runs(r)
        cmp_, note = compare_speed(r)
        if cmp_.empty:
            parts.append(f"<h3>Speed</h3><p>{note}</p>")
        else:
            n = int(cmp_["change"].isin(["slower", "faster"]).sum())
            n_noisy = int((cmp_["change"] == "too noisy").sum())
            if n:
                flags.append(f"speed: {n} changed")
            if n_noisy:
                flags.append(f"speed: {n_noisy} of {len(cmp_)} too noisy to judge")
            parts.append(f"<h3>Speed: {esc(runs[-1])} vs {esc(runs[0])}</h3><p>{note}; "
                         f"<b>{n} changed</b>.</p>"
                         + table(cmp_, 100, summary=f"{len(cmp_)} time ratios"))
    for name, keys, value, tol, label in (
            ("crossval", ["optimizer", "config", "probe", "dtype", "backend", "torch_impl",
                          "steps"], "passed", 0.0, "Cross-validation: agreement"),
            ("gradstats_summary", ["activation", "init", "depth", "width", "batch", "seed",
                                   "dtype"], "R_z", 1e-9, "Gradient statistics: R_z"),
            ("convergence", ["problem", "optimizer", "lr", "start_0", "start_1", "steps",
                             "seed"], "steps_to_target_1e-04", 0.0,
             "Convergence: steps to f - f* < 1e-4 per start"),
            ("basins", ["optimizer", "lr", "start_0", "start_1"], "minimizer_index", 0.0,
             "Basins: minimum reached per grid start")):
        if name not in frames or frames[name]["run"].nunique() < 2:
            continue
        f = frames[name]
        runs = _runs(f)
        a, b = f[f.run == runs[0]], f[f.run == runs[-1]]
        changed, n_common, n_unmatched = _compare_keyed(a, b, keys, value, tol)
        if n_common == 0:
            note = _settings_note(a, b, keys)
            parts.append(f"<h3>{esc(label)}</h3><p>not comparable: no measurement at equal "
                         f"settings ({esc(note) or 'different keys'}).</p>")
            continue
        extra = ""
        if n_unmatched:
            note = _settings_note(a, b, keys)
            extra = (f" {n_unmatched} rows had no counterpart in the other run"
                     + (f" ({esc(note)})" if note else "") + ".")
        if len(changed):
            flags.append(f"{label.split(':')[0].lower()}: {len(changed)} changed")
        parts.append(f"<h3>{esc(label)}</h3><p>{n_common} compared at equal settings, "
                     f"<b>{len(changed)} changed</b>"
                     + (" (deterministic for a given seed, so any change is real)"
                        if name != "crossval" else "") + f".{extra}</p>"
                     + (table(changed, 100, summary=f"{len(changed)} changes")
                        if len(changed) else ""))
    if not parts:
        return Content("<p>The runs have no frame in common.</p>",
                       summary="nothing in common to compare", verdict="warn")
    summary = ("; ".join(flags) if flags else
               "no change beyond the measured spread in what both runs measured")
    return Content("".join(parts), summary=summary, verdict="warn" if flags else "pass")


def accuracy_section(frames: Frames) -> Content | str:
    """Activation accuracy: the largest error in ulps beyond the condition number, per cell."""
    if "accuracy" not in frames:
        return ""
    a = frames["accuracy"]
    wide = a.pivot_table(index=["function", "quantity", "dtype"], columns="implementation",
                         values="max_excess", aggfunc="max", sort=False).reset_index()
    wide.columns.name = None  # else the table gets an empty column headed "implementation"
    bad = a[~a["passed"].astype(bool)]
    # gradsuite's backends (numpy, numba, torch) against torch's own functions
    ours = a["implementation"].isin(["numpy", "numba", "torch"])
    ours_bad, torch_bad = int((~a["passed"].astype(bool) & ours).sum()), int(
        (~a["passed"].astype(bool) & ~ours).sum())
    cols = ["function", "quantity", "dtype", "implementation", "max_ulp", "worst_x",
            "expected", "got", "false_zeros", "nonfinite"]
    text = ("<p>Largest error in ulps beyond the condition number κ(x) = |x g'(x)/g(x)| "
            "against mpmath (40 digits), on a grid over all magnitudes and the tails; the "
            "bound is 1 ulp float32 / 4 ulp float64 (numba 2 / 4; softmax 2 / 8, no κ). "
            f"<span class='{'bad' if ours_bad else ''}'>gradsuite's references: {ours_bad} "
            f"of {int(ours.sum())} cells over the bound</span>; torch.nn.functional: "
            f"{torch_bad} of {int((~ours).sum())} (where torch loses digits).</p>")
    out = text + table(wide, 200, summary="Largest error beyond κ per function, quantity, "
                       "dtype and implementation")
    if len(bad):
        out += "<h3>Cells over the bound</h3>" + table(bad[[c for c in cols if c in bad]], 200)
    return Content(out, summary=f"references: {ours_bad} of {int(ours.sum())} cells over the "
                   f"bound; torch.nn.functional: {torch_bad} of {int((~ours).sum())}",
                   verdict="fail" if ours_bad else "pass")


def _training_section(frames: Frames) -> Content | str:
    from suite.report import training

    return training.section(frames)


SECTIONS: list[Section | tuple[str, Callable[[Frames], Content | str]]] = [
    Section("summary", "At a glance: every optimizer", summary_section),
    Section("crossval", "Cross-validation against torch.optim", crossval_section),
    Section("tuning", "Tuning protocol: the learning rate chosen per optimizer and problem",
            tuning_section),
    Section("convergence", "Convergence on test functions", convergence_section),
    Section("gradstats", "Gradient statistics at initialisation", gradstats_section),
    Section("speed", "Speed", speed_section),
    Section("training", "Training on real data", _training_section),
    Section("accuracy", "Activation accuracy", accuracy_section),
    Section("changes", "Changes between runs", comparison_section, all_runs=True),
]


def register(key: str, title: str, build: Callable[[Frames], Content | str],
             all_runs: bool = False, before: str | None = "changes") -> Section:
    """Add a section (replacing one with the same key), placed before ``before`` (default:
    before the comparison of runs, which stays last; None: at the end)."""
    sec = Section(key, title, build, all_runs)
    entries = [s for s in registered() if s.key != key]
    keys = [s.key for s in entries]
    at = keys.index(before) if before in keys else len(entries)
    entries.insert(at, sec)
    SECTIONS[:] = entries
    return sec


def registered() -> list[Section]:
    """:data:`SECTIONS` as :class:`Section` objects (tuples get a key from their title)."""
    return [s if isinstance(s, Section) else Section(_slug(s[0]), s[0], s[1])
            for s in SECTIONS]
