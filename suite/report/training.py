"""Report section for the training study: loss bands per task, time to target, profiles."""

from __future__ import annotations

import html as _html
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from suite.report import figures as F
from suite.report.html import _table

Frames = dict[str, pd.DataFrame]
_EXTRA = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000"]


def _colors(names: list[str]) -> dict[str, str]:
    extra = itertools.cycle(_EXTRA)
    return {n: F.COLORS.get(n) or next(extra) for n in names}


def loss_bands(curves: pd.DataFrame, choice: pd.DataFrame | None = None,
               targets: dict[str, float] | None = None) -> Figure:
    """Training loss vs step per task: median over seeds and the quartile band."""
    task_names = list(dict.fromkeys(curves["task"]))
    cols = min(3, len(task_names))
    rows = -(-len(task_names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = _colors(sorted(curves["optimizer"].astype(str).unique()))
    for ax, task in zip(axes.flat, task_names, strict=False):
        sub = curves[curves["task"] == task]
        for opt, g in sub.groupby("optimizer", sort=True):
            q = g.groupby("step")["train_loss"].quantile([0.25, 0.5, 0.75]).unstack()
            c = colors[str(opt)]
            lr = g["lr"].iloc[0]
            ax.plot(q.index, q[0.5], color=c, label=f"{opt} (lr={lr:g})")
            ax.fill_between(q.index, q[0.25], q[0.75], color=c, alpha=0.2)
        if targets and task in targets:
            ax.axhline(targets[task], color="k", ls="--", lw=0.8, label="target")
        ax.set(title=task, xlabel="step", ylabel="training loss", yscale="log")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(task_names):]:
        ax.set_visible(False)
    fig.suptitle("Training loss: median over fresh seeds, band = quartiles (tuned lr)")
    fig.tight_layout()
    return fig


def profile_plot(profile: pd.DataFrame, solver: str = "optimizer",
                 title: str = "Performance profile") -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = _colors(sorted(profile[solver].astype(str).unique()))
    tau_hi = max(float(profile["tau"].max()) * 1.5, 2.0)
    styles = itertools.cycle(["-", "--", "-.", ":"])
    for s, g in profile.groupby(solver, sort=True):
        g = g.sort_values("tau")
        x = np.append(g["tau"].to_numpy(float), tau_hi)
        y = np.append(g["fraction"].to_numpy(float), g["fraction"].iloc[-1])
        # identical profiles would hide each other: a line style each
        ax.step(x, y, where="post", color=colors[str(s)], ls=next(styles), lw=1.8,
                label=str(s))
    ax.set(xscale="log", xlabel="τ (cost / best cost on the problem)",
           ylabel="fraction of problems within τ", ylim=(-0.02, 1.02), title=title)
    ticks = [t for t in (1, 1.5, 2, 3, 4, 6, 10, 20, 50, 100) if t <= tau_hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    return fig


def section(frames: Frames) -> str:
    if "training_table" not in frames:
        return ""
    from suite.studies import training

    out = []
    tasks_df = frames.get("training_tasks")
    targets = None
    if tasks_df is not None:
        targets = dict(zip(tasks_df["task"], tasks_df["target_loss"], strict=True))
        cols = ["task", "kind", "n_train", "n_test", "n_parameters", "steps", "batch_size",
                "epochs", "target_loss", "target_accuracy", "description"]
        out.append("<h3>Tasks (bundled data only; budgets are steps of one minibatch)</h3>"
                   + _table(tasks_df[[c for c in cols if c in tasks_df]], 50))
    if "training_choice" in frames:
        ch = frames["training_choice"]
        crit = _html.escape(str(ch["criterion"].iloc[0])) if len(ch) else ""
        grid = _html.escape(str(ch["lr_grid"].iloc[0])) if "lr_grid" in ch and len(ch) else ""
        out.append(f"<p>Tuning protocol: the same lr grid ({grid}) and budget for every "
                   f"optimizer on tuning seed(s) "
                   f"{_html.escape(str(ch['tuning_seeds'].iloc[0]))}; choice: {crit} "
                   f"(cost = steps to the task's target training loss, tie-break = final "
                   f"training loss); reported on fresh seeds "
                   f"{_html.escape(str(ch['final_seeds'].iloc[0]))}.</p>")
    if "training_curves" in frames and len(frames["training_curves"]):
        out.append(_img(loss_bands(frames["training_curves"], targets=targets),
                         "training loss bands per task"))
    t = frames["training_table"]
    cols = ["task", "optimizer", "lr", "n_seeds", "success_rate", "steps_to_target_median",
            "steps_to_target_q25", "steps_to_target_q75", "time_to_target_median",
            "final_train_loss_median", "final_test_accuracy_median", "diverged"]
    out.append("<h3>Time to target (fresh seeds, tuned lr): steps and seconds of training "
               "to the target training loss, median [quartiles]; a failure counts as ∞"
               "</h3>" + _table(t[[c for c in cols if c in t]], 200))
    if "training_profile" in frames:
        out.append(_img(profile_plot(frames["training_profile"],
                                      title="Performance profile over the training tasks "
                                            "(median steps to target)"),
                         "performance profile over the training tasks"))
    if "training_profile_score" in frames:
        out.append("<h3>Area under the profile on [1, 4] / 3 (AlgoPerf's score; 1 = "
                   "fastest on every task)</h3>" + _table(frames["training_profile_score"]))
    if "convergence" in frames:
        conv = frames["convergence"]
        col = "steps_to_target_1e-04"
        if col in conv and "problem" in conv:
            if "run" in conv:
                conv = conv[conv["run"] == conv["run"].iloc[-1]]
            try:
                prof = training.performance_profile(conv, cost=col, problem="problem")
                out.append(_img(profile_plot(prof, title="Performance profile over the "
                                              "test functions (median steps to f - f* < "
                                              "1e-4 over starts)"),
                                 "performance profile over the test functions"))
            except ValueError as exc:
                out.append(f'<p class="warn">test-function profile: '
                           f"{_html.escape(str(exc))}</p>")
    return "".join(out)


def _img(fig: Figure, alt: str) -> str:
    return f'<figure><img alt="{alt}" src="{F.to_data_uri(fig)}"></figure>'
