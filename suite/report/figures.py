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
from matplotlib.ticker import MaxNLocator

COLORS = {"sgd": "#1f77b4", "adagrad": "#2ca02c", "rmsprop": "#d62728", "adam": "#ff7f0e",
          "adamw": "#9467bd"}
#: line style and marker per reference optimizer, so that overlapping curves stay apart
LINES = {"sgd": ("-", "o"), "adagrad": ("--", "s"), "rmsprop": ("-.", "^"), "adam": ("-", "D"),
         "adamw": (":", "v")}
_PALETTE = ["#17becf", "#bcbd22", "#8c564b", "#e377c2", "#393b79", "#637939",
            "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1"]
_DASHES = ["-", "--", "-.", ":"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
MINIMA_COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
#: Himmelblau's minima in suite.problems' order, as the figures and tables name them
MINIMA_LABELS = ["A", "B", "C", "D"]
#: the width every figure is drawn at (inches; 100 dpi on the page)
WIDTH = 11.5


def styles(names: object) -> dict[str, dict[str, str]]:
    """``{name: {"color", "ls", "marker"}}``: the references keep fixed styles; other names
    (users' optimizers) get distinct ones in sorted order, the same in every figure."""
    names = list(dict.fromkeys(str(n) for n in names))  # type: ignore[attr-defined]
    out = {}
    others = sorted(n for n in names if n not in COLORS)
    for n in names:
        if n in COLORS:
            ls, mk = LINES[n]
            out[n] = {"color": COLORS[n], "ls": ls, "marker": mk}
        else:
            k = others.index(n)
            out[n] = {"color": _PALETTE[k % len(_PALETTE)],
                      "ls": _DASHES[(k // len(_PALETTE) + k) % len(_DASHES)],
                      "marker": _MARKERS[k % len(_MARKERS)]}
    return out


def _legend_right(ax: plt.Axes, **kw: object) -> None:
    """The legend outside the data, to the right of the axes."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=9,
              frameon=False, **kw)


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _grid(n: int, ncols: int = 3, panel: tuple[float, float] = (3.6, 3.4), **kw: object
          ) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows),
                             squeeze=False, layout="constrained", **kw)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _label_minima(ax: plt.Axes, minimizers: np.ndarray, size: int = 120) -> None:
    ax.scatter(minimizers[:, 0], minimizers[:, 1], marker="*", s=size, c="gold",
               edgecolors="k", zorder=6)
    for lab, (x, y) in zip(MINIMA_LABELS, minimizers, strict=False):
        ax.annotate(lab, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=11,
                    fontweight="bold", zorder=7,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.8})


def himmelblau_contour(traj: pd.DataFrame) -> Figure:
    """One panel per optimizer: its trajectories from every start over Himmelblau's contours
    (circle = start, cross = end), minima A-D labelled as in the basin table."""
    from suite import problems

    p = problems.get("himmelblau")
    g = np.linspace(-5.5, 5.5, 300)
    xx, yy = np.meshgrid(g, g)
    zz = p.f(np.stack([xx, yy], axis=-1))
    opts = list(dict.fromkeys(traj["optimizer"]))
    st = styles(opts)
    n_starts = traj.groupby("optimizer")["start_index"].nunique().max()
    fig, axes = _grid(len(opts), ncols=3, panel=(3.8, 3.7), sharex=True, sharey=True)
    for ax, opt in zip(axes.flat, opts, strict=False):
        sub = traj[traj["optimizer"] == opt]
        ax.contour(xx, yy, np.log10(zz + 1e-3), levels=20, cmap="Greys", linewidths=0.5,
                   alpha=0.7)
        c = st[str(opt)]["color"]
        for _, path in sub.groupby("start_index"):
            path = path.sort_values("step")
            ax.plot(path["x0"], path["x1"], color=c, lw=1.3)
            ax.plot(path["x0"].iloc[0], path["x1"].iloc[0], "o", color=c, ms=4, mfc="white")
            ax.plot(path["x0"].iloc[-1], path["x1"].iloc[-1], "x", color="k", ms=5)
        _label_minima(ax, p.minimizers)
        ax.set(title=f"{opt} (lr={sub['lr'].iloc[0]:g})", xlim=(-5.5, 5.5), ylim=(-5.5, 5.5),
               aspect="equal")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    fig.suptitle(f"Himmelblau: trajectories from {n_starts} starts (○ start, × end; "
                 "★ minima A-D)")
    return fig


def loss_vs_step(traj: pd.DataFrame) -> Figure:
    """One panel per optimizer: median suboptimality over starts with its 10-90 % band; the
    other optimizers' medians in grey for comparison."""
    opts = list(dict.fromkeys(traj["optimizer"]))
    st = styles(opts)
    q = {o: traj[traj["optimizer"] == o].groupby("step")["gap"].quantile([0.1, 0.5, 0.9])
         .unstack().clip(lower=1e-32) for o in opts}
    fig, axes = _grid(len(opts), ncols=3, panel=(3.8, 3.0), sharex=True, sharey=True)
    for ax, opt in zip(axes.flat, opts, strict=False):
        for other in opts:
            if other != opt:
                ax.plot(q[other].index, q[other][0.5], color="0.75", lw=0.8)
        c = st[str(opt)]["color"]
        ax.fill_between(q[opt].index, q[opt][0.1], q[opt][0.9], color=c, alpha=0.25,
                        lw=0, label="10-90 % of starts")
        ax.plot(q[opt].index, q[opt][0.5], color=c, lw=2, label="median")
        ax.set(yscale="log", title=str(opt))
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("f(x) - f*")
    axes.flat[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Himmelblau: suboptimality over steps (median and 10-90 % band over starts; "
                 "grey: the other optimizers' medians)")
    return fig


def ecdf_plot(ecdf: pd.DataFrame, problem: str = "himmelblau") -> Figure:
    fig, ax = plt.subplots(figsize=(WIDTH * 0.8, 4.5), layout="constrained")
    sub = ecdf[ecdf["problem"] == problem] if "problem" in ecdf else ecdf
    st = styles(sub["optimizer"].unique())
    for opt, s in sub.groupby("optimizer", sort=False):
        s = s.sort_values("steps")
        k = st[str(opt)]
        ax.step(s["steps"], s["fraction"], where="post", color=k["color"], ls=k["ls"], lw=2,
                label=str(opt))
    ax.set(xscale="log", xlabel="steps (log scale)", ylabel="fraction of (start, target) pairs",
           title=f"{problem}: ECDF of steps to target (COCO style)",
           ylim=(0, 1.02))
    _legend_right(ax)
    return fig


def basin_maps(basins: pd.DataFrame) -> Figure:
    """Per optimizer: the minimum (A-D) that each grid start ends nearest to; black only
    where a start diverged. Works on any grid (pivoted on the start coordinates)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from suite import problems

    mins = problems.get("himmelblau").minimizers
    opts = list(dict.fromkeys(basins["optimizer"]))
    diverged = bool((basins["minimizer_index"] < 0).any())
    cmap = ListedColormap(["#222222", *MINIMA_COLORS[:4]])
    fig, axes = _grid(len(opts), ncols=min(len(opts), 5), panel=(2.9, 3.0), sharex=True,
                      sharey=True)
    for ax, opt in zip(axes.flat, opts, strict=False):
        sub = basins[basins["optimizer"] == opt]
        img = sub.pivot_table(index="start_1", columns="start_0", values="minimizer_index",
                              aggfunc="first")
        x, y = img.columns.to_numpy(float), img.index.to_numpy(float)
        ax.imshow(img.to_numpy(float) + 1, origin="lower", cmap=cmap, vmin=-0.5, vmax=4.5,
                  extent=(x.min(), x.max(), y.min(), y.max()), interpolation="nearest",
                  aspect="equal")
        for lab, (mx, my) in zip(MINIMA_LABELS, mins, strict=False):
            ax.annotate(lab, (mx, my), ha="center", va="center", fontsize=10,
                        fontweight="bold", color="white")
        ax.set(title=f"{opt}, lr={sub['lr'].iloc[0]:g}")
    for ax in axes[-1]:
        ax.set_xlabel("start x")
    for ax in axes[:, 0]:
        ax.set_ylabel("start y")
    labels = [f"{lab} ({mx:.2f}, {my:.2f})" for lab, (mx, my) in
              zip(MINIMA_LABELS, mins, strict=False)]
    handles = [Patch(color=c, label=lab) for c, lab in
               zip(MINIMA_COLORS[:4], labels, strict=True)]
    if diverged:
        handles.append(Patch(color="#222222", label="diverged"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    fig.suptitle("Himmelblau: basins of attraction (the minimum each start ends nearest to)")
    return fig


def lr_sensitivity(sens: pd.DataFrame) -> Figure:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(WIDTH, 4), layout="constrained")
    st = styles(sens["optimizer"].unique())
    for opt, s in sens.groupby("optimizer", sort=False):
        k = st[str(opt)]
        kw = {"color": k["color"], "ls": k["ls"], "marker": k["marker"], "label": str(opt)}
        a1.plot(s["lr"], s["success_rate"], **kw)
        a2.plot(s["lr"], s["median_steps"], **kw)
    a1.set(xscale="log", xlabel="learning rate (log scale)", ylabel="success rate (f - f* < 1e-4)",
           title="success rate vs learning rate", ylim=(-0.02, 1.02))
    a2.set(xscale="log", yscale="log", xlabel="learning rate (log scale)",
           ylabel="median steps to 1e-4 (log scale)", title="speed vs learning rate")
    _legend_right(a2)
    fig.suptitle("Himmelblau: learning-rate sensitivity")
    return fig


def grad_norms(layers: pd.DataFrame) -> Figure:
    depth = layers["depth"].max()
    sub = layers[(layers["depth"] == depth) & (layers["seed"] == layers["seed"].min())]
    fig, ax = plt.subplots(figsize=(WIDTH * 0.85, 5), layout="constrained")
    for k, ((act, init), s) in enumerate(sub.groupby(["activation", "init"], sort=False)):
        ax.plot(s["layer"], s["preact_grad_norm"].clip(lower=1e-300), label=f"{act} / {init}",
                color=_PALETTE[k % len(_PALETTE)] if k >= 10 else f"C{k}",
                ls=_DASHES[k % len(_DASHES)], marker=_MARKERS[k % len(_MARKERS)], ms=3)
    ax.set(yscale="log", xlabel="layer l (1 = input side)",
           ylabel="‖∂L/∂z_l‖ (log scale)",
           title=f"Back-propagated gradient norm per layer at initialisation (depth {depth})")
    _legend_right(ax)
    return fig


def factors(layers: pd.DataFrame) -> Figure:
    sub = layers.dropna(subset=["measured_factor", "predicted_factor"])
    fig, ax = plt.subplots(figsize=(WIDTH * 0.7, 5), layout="constrained")
    for k, ((act, init), s) in enumerate(sub.groupby(["activation", "init"], sort=False)):
        ax.scatter(s["predicted_factor"], s["measured_factor"], s=12, label=f"{act} / {init}",
                   marker=_MARKERS[k % len(_MARKERS)],
                   color=_PALETTE[k % len(_PALETTE)] if k >= 10 else f"C{k}")
    lo = max(min(sub["predicted_factor"].min(), sub["measured_factor"].min()), 1e-3)
    hi = max(sub["predicted_factor"].max(), sub["measured_factor"].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax.set(xscale="log", yscale="log", xlabel="predicted factor √(n Var(W) E[f'(z)²])",
           ylabel="measured ‖δ_l‖ / ‖δ_{l+1}‖", title="Per-layer factor: measured vs mean-field")
    _legend_right(ax)
    return fig


def depth_layer_heatmaps(layers: pd.DataFrame) -> Figure:
    """log10 of the gradient norm per depth (rows) and layer (columns), one panel per
    activation / initialisation, each with its own colour bar."""
    pairs = list(dict.fromkeys(zip(layers["activation"], layers["init"], strict=True)))
    fig, axes = _grid(len(pairs), ncols=4, panel=(WIDTH / 4, 2.6))
    for ax, (act, init) in zip(axes.flat, pairs, strict=False):
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{act} / {init}", fontsize=10)
        ax.set_xlabel("layer", fontsize=9)
        ax.set_ylabel("depth", fontsize=9)
        cb = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
        cb.ax.tick_params(labelsize=8)
    fig.suptitle("log10 ‖∂L/∂z_l‖ by network depth (rows) and layer (columns); colour bars "
                 "per panel")
    return fig


def roofline_bars(roof: pd.DataFrame) -> Figure:
    impls = list(dict.fromkeys(roof["implementation"]))
    opts = list(dict.fromkeys(roof["optimizer"]))
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5), layout="constrained")
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
    _legend_right(ax)
    return fig


def asv_history(asv: pd.DataFrame) -> Figure:
    """Each time_* benchmark's value per commit (one line per parameter combination)."""
    sub = asv[asv["benchmark"].str.contains(".time_") & asv["value"].notna()]
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5), layout="constrained")
    for (bench, params), s in sub.groupby(["benchmark", "params"]):
        s = s.sort_values("date")
        ax.plot(s["date"], s["value"], marker="o", lw=1,
                label=f"{bench.split('.')[-2]} {params}"[:60])
    ax.set(yscale="log", xlabel="commit date", ylabel="seconds per call (log scale)",
           title="asv: time per call across commits")
    if len(sub.groupby(["benchmark", "params"])) <= 12:
        _legend_right(ax)
    return fig


def thread_sweep_table(roof: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer and thread count: each implementation's step time (ms) and GB/s, and the
    GB/s of the ceiling paired with it (on its own arrays)."""
    t = roof.pivot_table(index=["optimizer", "threads"], columns="implementation",
                         values=["seconds", "GB_per_s"], aggfunc="first", sort=False)
    t.columns = [f"{impl} {'ms' if q == 'seconds' else 'GB/s'}" for q, impl in t.columns]
    for c in [c for c in t.columns if c.endswith(" ms")]:
        t[c] = t[c] * 1e3
    ceil = roof.pivot_table(index=["optimizer", "threads"], columns="implementation",
                            values="ceiling_GB_per_s", aggfunc="first", sort=False)
    ceil.columns = [f"{impl} ceiling GB/s" for impl in ceil.columns]
    return t.join(ceil).reset_index()


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
        numba = sub[sub.implementation == "numba"]
        c = (numba if len(numba) else sub).groupby("threads")["ceiling_GB_per_s"].first()
        ax.plot(c.index, c.values, "k--", label="ceiling on numba's arrays (paired)")
        ax.set(title=f"{o} ({sub['config'].iloc[0]})" if "config" in sub else o,
               xlabel="threads", xticks=sorted(sub["threads"].unique()))
    axes[0][0].set_ylabel("GB/s (bytes a step must move / time)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Thread sweep, {roof['size'].iloc[0]:,} {roof['dtype'].iloc[0]} elements")
    fig.tight_layout()
    return fig
