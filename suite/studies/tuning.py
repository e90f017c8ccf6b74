"""A fair tuning protocol: the same learning-rate grid, budget and criterion for every optimizer.

The protocol (after DeepOBS and AlgoPerf's external tuning, see the README):

1. For each optimizer and problem, run every learning rate of one log grid (:func:`lr_grid`,
   the same for every optimizer) on the same seeds and the same budget of steps.
2. Pick the learning rate by a declared criterion (:func:`select`): the smallest **median cost
   over seeds** (e.g. steps to target; a run that never reaches the target costs +inf, so a
   learning rate that fails on more than half of the seeds can only win if every other one
   does too); ties by the smaller median tie-breaker (e.g. final gap); remaining ties by the
   smaller learning rate.
3. Re-run the chosen learning rate on fresh seeds (never those used to choose) and report that.

Frames carry the grid, the choice and the seeds, so a reader can check the protocol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

CRITERION = "min median {cost} over seeds (failures = inf); ties: min median {tiebreak}, then min lr"


def lr_grid(lo: float = 1e-4, hi: float = 1.0, per_decade: int = 2) -> tuple[float, ...]:
    """``per_decade`` log-spaced learning rates from ``lo`` to ``hi`` inclusive (3 digits).

    >>> lr_grid(1e-3, 1e-1, 2)
    (0.001, 0.00316, 0.01, 0.0316, 0.1)
    """
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"lr_grid needs 0 < lo <= hi < inf, got lo={lo}, hi={hi}")
    if not isinstance(per_decade, int) or per_decade < 1:
        raise ValueError(f"per_decade={per_decade!r}; expected a positive integer")
    n = round(math.log10(hi / lo) * per_decade)
    return tuple(float(f"{v:.3g}") for v in np.logspace(math.log10(lo), math.log10(hi), n + 1))


def fresh_seeds(tuning_seeds: Sequence[int], n: int) -> tuple[int, ...]:
    """``n`` seeds disjoint from those used for tuning (the next integers above them)."""
    start = max(tuning_seeds, default=-1) + 1
    return tuple(range(start, start + n))


def select(frame: pd.DataFrame, group: Sequence[str] = ("optimizer", "problem"),
           lr: str = "lr", cost: str = "steps_to_target", tiebreak: str = "final_gap"
           ) -> pd.DataFrame:
    """The chosen learning rate per ``group`` (one row each), by the declared criterion.

    ``frame`` has one row per run (group x lr x seed) with a ``cost`` column (NaN or inf when
    the run failed: it counts as +inf) and a ``tiebreak`` column (NaN counts as +inf).
    Returns the group columns, ``lr``, ``median_cost``, ``median_tiebreak``, ``success_rate``
    (share of seeds with a finite cost), ``n_runs`` and ``criterion``.
    """
    missing = [c for c in (*group, lr, cost, tiebreak) if c not in frame.columns]
    if missing:
        raise ValueError(f"select: frame lacks column(s) {', '.join(missing)}; "
                         f"it has {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise ValueError("select: the frame is empty; nothing to choose from")
    df = frame[[*group, lr, cost, tiebreak]].copy()
    c = pd.to_numeric(df[cost], errors="coerce").astype(float)
    t = pd.to_numeric(df[tiebreak], errors="coerce").astype(float)
    df["_cost"] = c.where(np.isfinite(c), np.inf)
    df["_tie"] = t.where(np.isfinite(t), np.inf)
    df["_ok"] = np.isfinite(c)
    per_lr = (df.groupby([*group, lr], sort=True)
              .agg(median_cost=("_cost", "median"), median_tiebreak=("_tie", "median"),
                   success_rate=("_ok", "mean"), n_runs=("_cost", "size"))
              .reset_index())
    per_lr = per_lr.sort_values([*group, "median_cost", "median_tiebreak", lr],
                                kind="mergesort")
    best = per_lr.groupby(list(group), sort=True).head(1).reset_index(drop=True)
    best["criterion"] = CRITERION.format(cost=cost, tiebreak=tiebreak)
    return best
