"""Matplotlib figures for the report; each returns a Figure (titles, labelled axes, legends).

One fixed colour per optimizer across every figure (:data:`COLORS`).
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

COLORS = {"sgd": "#1f77b4", "adagrad": "#2ca02c", "rmsprop": "#d62728", "adam": "#ff7f0e",
          "adamw": "#9467bd"}
MINIMA_COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def himmelblau_contour(traj: pd.DataFrame) -> Figure:
    from suite import problems

    p = problems.get("himmelblau")
    g = np.linspace(-5.5, 5.5, 300)
    xx, yy = np.meshgrid(g, g)
    zz = p.f(np.stack([xx, yy], axis=-1))
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.contour(xx, yy, np.log10(zz + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
    for opt, sub in traj.groupby("optimizer"):
        for i, (_, path) in enumerate(sub.groupby("start_index")):
            path = path.sort_values("step")
            ax.plot(path["x0"], path["x1"], color=COLORS.get(str(opt), "k"), lw=1, alpha=0.8,
                    label=f"{opt} (lr={path['lr'].iloc[0]:g})" if i == 0 else None)
    ax.scatter(p.minimizers[:, 0], p.minimizers[:, 1], marker="*", s=150, c="gold",
               edgecolors="k", zorder=5, label="minima A-D")
    ax.set(title="Himmelblau: trajectories from 11 starts", xlabel="x", ylabel="y",
           xlim=(-5.5, 5.5), ylim=(-5.5, 5.5))
    ax.legend(fontsize=8, loc="upper left")
    return fig


def loss_vs_step(traj: pd.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for opt, sub in traj.groupby("optimizer"):
        q = sub.groupby("step")["gap"].quantile([0.1, 0.5, 0.9]).unstack()
        q = q.clip(lower=1e-32)
        c = COLORS.get(str(opt), "k")
        ax.plot(q.index, q[0.5], color=c, label=f"{opt} median")
        ax.fill_between(q.index, q[0.1], q[0.9], color=c, alpha=0.2)
    ax.set(yscale="log", xlabel="step", ylabel="f(x) - f* (log scale)",
           title="Himmelblau: suboptimality, median and 10-90 % band over starts")
    ax.legend(fontsize=8)
    return fig


def ecdf_plot(ecdf: pd.DataFrame, problem: str = "himmelblau") -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sub = ecdf[ecdf["problem"] == problem] if "problem" in ecdf else ecdf
    for opt, s in sub.groupby("optimizer"):
        s = s.sort_values("steps")
        ax.step(s["steps"], s["fraction"], where="post", color=COLORS.get(str(opt), "k"),
                label=str(opt))
    ax.set(xscale="log", xlabel="steps (log scale)", ylabel="fraction of (start, target) pairs",
           title=f"{problem}: ECDF of steps to targets 1e-2, 1e-4, 1e-8 (COCO style)",
           ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return fig


def basin_maps(basins: pd.DataFrame) -> Figure:
    opts = list(dict.fromkeys(basins["optimizer"]))
    fig, axes = plt.subplots(1, len(opts), figsize=(3.2 * len(opts), 3.4), squeeze=False)
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#222222", *MINIMA_COLORS[:4]])
    for ax, opt in zip(axes[0], opts, strict=True):
        sub = basins[basins["optimizer"] == opt]
        n = round(np.sqrt(len(sub)))
        img = sub["minimizer_index"].to_numpy().reshape(n, n) + 1
        lo, hi = sub["start_0"].min(), sub["start_0"].max()
        ax.imshow(img, origin="lower", extent=(lo, hi, lo, hi), cmap=cmap, vmin=0, vmax=4,
                  interpolation="nearest")
        ax.set(title=f"{opt}, lr={sub['lr'].iloc[0]:g}", xlabel="start x")
    axes[0][0].set_ylabel("start y")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=c, label=lab) for c, lab in
                        zip(cmap.colors, ["diverged", "A (3, 2)", "B (-2.81, 3.13)",
                                          "C (-3.78, -3.28)", "D (3.58, -1.85)"], strict=True)],
               loc="lower center", ncol=5, fontsize=8, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle("Himmelblau: basins of attraction (which minimum each start reaches)")
    return fig


def lr_sensitivity(sens: pd.DataFrame) -> Figure:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for opt, s in sens.groupby("optimizer"):
        c = COLORS.get(str(opt), "k")
        a1.plot(s["lr"], s["success_rate"], "o-", color=c, label=str(opt))
        a2.plot(s["lr"], s["median_steps"], "o-", color=c, label=str(opt))
    a1.set(xscale="log", xlabel="learning rate (log scale)", ylabel="success rate (f - f* < 1e-4)",
           title="Himmelblau: success rate vs learning rate", ylim=(-0.02, 1.02))
    a2.set(xscale="log", yscale="log", xlabel="learning rate (log scale)",
           ylabel="median steps to 1e-4 (log scale)", title="Himmelblau: speed vs learning rate")
    a1.legend(fontsize=8)
    return fig


def grad_norms(layers: pd.DataFrame) -> Figure:
    depth = layers["depth"].max()
    sub = layers[(layers["depth"] == depth) & (layers["seed"] == layers["seed"].min())]
    fig, ax = plt.subplots(figsize=(8, 5))
    for (act, init), s in sub.groupby(["activation", "init"]):
        ax.plot(s["layer"], s["preact_grad_norm"].clip(lower=1e-300), label=f"{act} / {init}")
    ax.set(yscale="log", xlabel="layer l (1 = input side)",
           ylabel="‖∂L/∂z_l‖ (log scale)",
           title=f"Back-propagated gradient norm per layer at initialisation (depth {depth})")
    ax.legend(fontsize=7, ncol=2)
    return fig


def factors(layers: pd.DataFrame) -> Figure:
    sub = layers.dropna(subset=["measured_factor", "predicted_factor"])
    fig, ax = plt.subplots(figsize=(6, 5))
    for (act, init), s in sub.groupby(["activation", "init"]):
        ax.scatter(s["predicted_factor"], s["measured_factor"], s=8, label=f"{act} / {init}")
    lo = max(min(sub["predicted_factor"].min(), sub["measured_factor"].min()), 1e-3)
    hi = max(sub["predicted_factor"].max(), sub["measured_factor"].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax.set(xscale="log", yscale="log", xlabel="predicted factor √(n Var(W) E[f'(z)²])",
           ylabel="measured ‖δ_l‖ / ‖δ_{l+1}‖", title="Per-layer factor: measured vs mean-field")
    ax.legend(fontsize=7)
    return fig


def depth_layer_heatmaps(layers: pd.DataFrame) -> Figure:
    pairs = list(dict.fromkeys(zip(layers["activation"], layers["init"], strict=True)))[:4]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.5), squeeze=False)
    for ax, (act, init) in zip(axes[0], pairs, strict=True):
        s = layers[(layers["activation"] == act) & (layers["init"] == init)]
        s = s[s["seed"] == s["seed"].min()]
        depths = sorted(s["depth"].unique())
        mat = np.full((len(depths), int(max(depths))), np.nan)
        for i, d in enumerate(depths):
            row = s[s["depth"] == d].sort_values("layer")
            mat[i, : len(row)] = np.log10(row["preact_grad_norm"].clip(lower=1e-300))
        im = ax.imshow(mat, aspect="auto", origin="lower", cmap="viridis",
                       extent=(0.5, mat.shape[1] + 0.5, -0.5, len(depths) - 0.5))
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set(title=f"{act} / {init}", xlabel="layer", ylabel="network depth")
        fig.colorbar(im, ax=ax, label="log10 ‖∂L/∂z_l‖")
    fig.suptitle("Gradient norm by depth and layer")
    return fig


def roofline_bars(roof: pd.DataFrame) -> Figure:
    impls = list(dict.fromkeys(roof["implementation"]))
    opts = list(dict.fromkeys(roof["optimizer"]))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    w = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        vals = [roof[(roof.optimizer == o) & (roof.implementation == impl)]["GB_per_s"]
                for o in opts]
        ax.bar(np.arange(len(opts)) + j * w, [v.iloc[0] if len(v) else 0 for v in vals], w,
               label=impl)
    triad = roof["triad_GB_per_s"].iloc[0]
    ax.axhline(triad, color="k", ls="--", label=f"triad {triad:.1f} GB/s (write-allocate counted)")
    ax.set_xticks(np.arange(len(opts)) + 0.4 - w / 2, opts)
    ax.set(ylabel="achieved GB/s (bytes a step must move / time)",
           title=f"Optimizer step on {roof['size'].iloc[0]:,} {roof['dtype'].iloc[0]} elements, "
                 f"{roof['torch_threads'].iloc[0]} thread(s)")
    ax.legend(fontsize=7, ncol=3)
    return fig


def asv_history(asv: pd.DataFrame) -> Figure:
    """Each time_* benchmark's value per commit (one line per parameter combination)."""
    sub = asv[asv["benchmark"].str.contains(".time_") & asv["value"].notna()]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (bench, params), s in sub.groupby(["benchmark", "params"]):
        s = s.sort_values("date")
        ax.plot(s["date"], s["value"], marker="o", lw=1,
                label=f"{bench.split('.')[-2]} {params}"[:60])
    ax.set(yscale="log", xlabel="commit date", ylabel="seconds per call (log scale)",
           title="asv: time per call across commits")
    if len(sub.groupby(["benchmark", "params"])) <= 12:
        ax.legend(fontsize=6)
    return fig


def thread_sweep_table(roof: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and thread count: each implementation's step time (ms) and GB/s, and the
    paired ceiling's GB/s."""
    t = roof.pivot_table(index=["optimizer", "threads"], columns="implementation",
                         values=["seconds", "GB_per_s"], aggfunc="first", sort=False)
    t.columns = [f"{impl} {'ms' if q == 'seconds' else 'GB/s'}" for q, impl in t.columns]
    for c in [c for c in t.columns if c.endswith(" ms")]:
        t[c] = t[c] * 1e3
    ceil = roof.groupby(["optimizer", "threads"], sort=False)["ceiling_GB_per_s"].first()
    return t.join(ceil.rename("ceiling GB/s")).reset_index()


def thread_sweep(roof: pd.DataFrame) -> Figure:
    """GB/s against the thread count, one panel per optimizer: the Numba step, torch.optim's
    implementations and the paired ceiling."""
    opts = list(dict.fromkeys(roof["optimizer"]))
    fig, axes = plt.subplots(1, len(opts), figsize=(3.2 * len(opts), 3.6), squeeze=False,
                             sharey=True)
    for ax, o in zip(axes[0], opts, strict=True):
        sub = roof[roof.optimizer == o]
        for impl, s in sub.groupby("implementation", sort=False):
            if impl == "numba" or impl.startswith("torch.optim"):
                ax.plot(s["threads"], s["GB_per_s"], marker="o", label=impl)
        c = sub.groupby("threads")["ceiling_GB_per_s"].first()
        ax.plot(c.index, c.values, "k--", label="ceiling (paired)")
        ax.set(title=f"{o} ({sub['config'].iloc[0]})" if "config" in sub else o,
               xlabel="threads", xticks=sorted(sub["threads"].unique()))
    axes[0][0].set_ylabel("GB/s (bytes a step must move / time)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Thread sweep, {roof['size'].iloc[0]:,} {roof['dtype'].iloc[0]} elements")
    fig.tight_layout()
    return fig
