"""The report at a glance: one row per optimizer (references and users' own), and the tuning
protocol's table.

:func:`optimizer_summary` builds the table from a run's frames:

- ``conformance``: the references' agreement with torch.optim (``crossval``: cells that
  agree / cells), a user's optimizer against the reference it names (``user_conformance``),
  ``-`` where nothing applies or the part did not run;
- ``speed_vs_torch``: the roofline's speedup over torch's fastest implementation of the same
  step (references: gradsuite's fastest backend, named in ``fastest``; users: their step
  against torch's fastest implementation of the reference they name);
- ``success_rate`` and ``median_steps``: over every problem, seed and start of the re-runs on
  fresh seeds at the tuned learning rates (``convergence``): the share that reached the
  target, and the median first-hit step of those that did;
- ``tuned_lr``: the chosen learning rate per problem (its range, and Himmelblau's).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from suite.report.tables import table as _table

Frames = dict[str, pd.DataFrame]


def _target_col(frame: pd.DataFrame) -> str | None:
    cols = [c for c in frame.columns if c.startswith("steps_to_target_")]
    return "steps_to_target_1e-04" if "steps_to_target_1e-04" in cols else (
        cols[0] if cols else None)


def optimizer_summary(frames: Frames) -> pd.DataFrame:
    """One row per optimizer (see the module docstring); empty if no part ran."""
    order: list[str] = []
    for key in ("tuning_choice", "convergence", "roofline"):
        if key in frames:
            order += [o for o in dict.fromkeys(frames[key]["optimizer"]) if o not in order]
    rows = {o: {"optimizer": o} for o in order}
    if "tuning_choice" in frames:
        ch = frames["tuning_choice"]
        for o, sub in ch.groupby("optimizer", sort=False):
            r = rows[o]
            r["kind"] = sub["optimizer_kind"].iloc[0] if "optimizer_kind" in sub else ""
            r["reference"] = sub["reference"].iloc[0] if "reference" in sub else ""
            lrs = sub["lr"].astype(float)
            r["tuned_lr"] = (f"{lrs.min():g}" if lrs.min() == lrs.max()
                             else f"{lrs.min():g} .. {lrs.max():g}")
            him = sub[sub["problem"] == "himmelblau"]["lr"]
            r["tuned_lr_himmelblau"] = float(him.iloc[0]) if len(him) else math.nan
    if "crossval" in frames:
        cv = frames["crossval"]
        for o, sub in cv.groupby("optimizer"):
            if o in rows:
                ok = int(sub["passed"].astype(bool).sum())
                rows[o]["conformance"] = (f"{'PASS' if ok == len(sub) else 'FAIL'} vs "
                                          f"torch.optim ({ok}/{len(sub)})")
    if "user_conformance" in frames:
        for r in frames["user_conformance"].itertuples():
            if r.optimizer in rows:
                rows[r.optimizer]["conformance"] = (f"{r.verdict} vs {r.reference} "
                                                    f"({r.cells_agree}/{r.cells})")
    if "roofline" in frames:
        rf = frames["roofline"]
        for o, sub in rf.groupby("optimizer", sort=False):
            if o not in rows:
                continue
            ours = sub[~sub["implementation"].astype(str).str.startswith("torch")]
            if len(ours):
                best = ours.loc[ours["speedup_vs_best_torch"].astype(float).idxmax()] \
                    if ours["speedup_vs_best_torch"].notna().any() else ours.iloc[0]
                rows[o]["speed_vs_torch"] = float(best["speedup_vs_best_torch"])
                rows[o]["fastest"] = str(best["implementation"])
                if "state_bytes_per_param_byte" in best:
                    rows[o]["state_bytes_per_param_byte"] = float(
                        best["state_bytes_per_param_byte"])
    if "convergence" in frames:
        cv = frames["convergence"]
        col = _target_col(cv)
        if col is not None:
            for o, sub in cv.groupby("optimizer", sort=False):
                hit = sub[col]
                rows[o]["success_rate"] = float(hit.notna().mean())
                rows[o]["median_steps"] = float(hit.median()) if hit.notna().any() \
                    else math.nan
                rows[o]["problems_solved"] = (
                    f"{int((sub.groupby('problem')[col].apply(lambda s: s.notna().mean()) >= 0.5).sum())}"
                    f"/{sub['problem'].nunique()}")
    cols = ["optimizer", "kind", "reference", "conformance", "speed_vs_torch", "fastest",
            "state_bytes_per_param_byte", "success_rate", "median_steps", "problems_solved",
            "tuned_lr", "tuned_lr_himmelblau"]
    df = pd.DataFrame(list(rows.values()))
    for c in cols:
        if c not in df:
            df[c] = np.nan if c in ("speed_vs_torch", "success_rate", "median_steps") else "-"
    return df[cols]


def summary_section(frames: Frames) -> str:
    table = optimizer_summary(frames)
    if table.empty:
        return ""
    return ("<p>Every optimizer at its tuned learning rate (the same grid, budget, seeds and "
            "criterion for each; see the tuning table). success_rate and median_steps: over "
            "every problem, fresh seed and start; problems_solved: problems where at least "
            "half of the runs reached the target. speed_vs_torch: above 1 is faster than "
            "torch's fastest implementation of the same (or the named reference's) step.</p>"
            + _table(table, 100))


def tuning_section(frames: Frames) -> str:
    if "tuning_choice" not in frames:
        return ""
    ch = frames["tuning_choice"]
    first = ch.iloc[0]
    text = (f"<p>Protocol: every optimizer runs every learning rate of the grid "
            f"({first['lr_grid']}) on tuning seeds {first['tuning_seeds']} "
            f"({first['starts_per_seed']} random starts each, {first['steps']} steps); the "
            f"choice is by <b>{first['criterion']}</b> and is re-run on fresh seeds "
            f"{first['fresh_seeds']}. A cell whose optimizer raised counts as failed "
            f"(failed_share).</p>")
    cols = ["optimizer", "problem", "lr", "at_grid_edge", "median_cost", "median_tiebreak",
            "success_rate", "failed_share", "lr_grid"]
    return text + _table(ch[[c for c in cols if c in ch]], 300)
