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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# ---- the sweep: optimizers x problems x lrs x seeds as independent cells ---------------------


@dataclass(frozen=True)
class Cell:
    """One run of the protocol: a subject on a problem at one lr and one seed.

    ``repr`` names the subject by what identifies it (name, kind, import path, fixed
    hyperparameters), not by object addresses, so that checkpoints of a sweep are recognised
    when it resumes in another process.
    """

    subject: Any
    problem: str
    dim: int
    lr: float
    seed: int
    steps: int
    n_starts: int
    target: float
    phase: str = "tune"

    def __repr__(self) -> str:
        d = self.subject.describe()
        return (f"Cell({d['optimizer']!r}, {d['optimizer_kind']}, {d['import_path']!r}, "
                f"{d['backend']!r}, {d['hyper']!r}, {self.problem!r}, {self.dim}, {self.lr!r}, "
                f"{self.seed}, {self.steps}, {self.n_starts}, {self.target!r}, {self.phase!r})")


def run_cell(cell: Cell) -> list[dict[str, Any]]:
    """Rows (one per start) of one cell. An optimizer that raises gives one row per start
    marked ``failed`` with the error, never an exception: the sweep goes on."""
    from suite import problems
    from suite.studies import convergence as C

    prob = problems.get(cell.problem, dim=cell.dim)
    starts = C.random_starts(prob, cell.n_starts, cell.seed)
    base = {"problem": prob.name, "optimizer": cell.subject.name, "lr": cell.lr,
            "seed": cell.seed, "phase": cell.phase, "target": cell.target}
    col = C.target_column(cell.target)
    backend = "numba" if cell.subject.rule() is not None and not prob.noise else None
    try:
        df = C.run(prob, cell.subject, starts, cell.steps, backend=backend,
                   targets=(cell.target,), seed=cell.seed, lr=cell.lr)
    except Exception as exc:  # noqa: BLE001 - a user's optimizer may raise anything
        err = f"{type(exc).__name__}: {exc}"[:500]
        return [{**base, "start_index": i, "steps_to_target": math.nan,
                 "final_gap": math.nan, "best_gap": math.nan, "diverged": False,
                 "failed": True, "error": err, "path": ""} for i in range(cell.n_starts)]
    return [{**base, "start_index": int(r["start_index"]),
             "steps_to_target": float(r[col]), "final_gap": float(r["final_gap"]),
             "best_gap": float(r["best_gap"]), "diverged": bool(r["diverged"]),
             "failed": False, "error": "", "path": str(r["backend"])}
            for _, r in df.iterrows()]


def sweep(optimizers: Sequence[Any], problems: Sequence[str | tuple[str, int]],
          lrs: Sequence[float] | None = None, seeds: Sequence[int] = (0, 1),
          steps: int = 2000, n_starts: int = 8, target: float = 1e-4, n_fresh: int = 2,
          lr_grids: dict[str, Sequence[float]] | None = None, jobs: int = 1,
          dask: str | None = None, checkpoint: Path | None = None,
          progress: bool = False) -> dict[str, pd.DataFrame]:
    """The whole protocol on :mod:`suite.sweep`'s executors; returns three frames.

    ``optimizers``: anything :func:`suite.subjects.resolve` accepts (references run on the
    Numba runner). ``problems``: names (2-D) or ``(name, dim)``. Every (optimizer, problem,
    lr, seed) is one cell of ``n_starts`` seeded random starts and ``steps`` steps; its cost
    is the first step with f - f* < ``target`` (NaN if never: +inf to :func:`select`).
    ``lrs`` is the grid for every optimizer (default :func:`lr_grid`); ``lr_grids`` may give
    one optimizer its own (recorded, but then the protocol is no longer the same for all).
    The chosen lr is re-run on ``n_fresh`` fresh seeds (:func:`fresh_seeds`).

    Workers import a subject made from an import path by that path: on a Dask cluster the
    module must be importable on every worker (an installed package, or its directory on
    the workers' ``PYTHONPATH``). With ``checkpoint`` every finished cell is kept and an
    interrupted sweep resumes.

    Frames: ``tuning_grid`` (one row per start of every grid cell), ``tuning_choice`` (one
    row per optimizer and problem: the chosen lr, its median cost and success rate on the
    tuning seeds, the grid, the seeds, the fresh seeds and the criterion), ``tuned`` (one row
    per start of the re-runs on fresh seeds, at the chosen lr).
    """
    from suite.subjects import resolve_many
    from suite.sweep import run_cells

    subs = resolve_many(optimizers, backend="numba")
    probs = [(p, 2) if isinstance(p, str) else (str(p[0]), int(p[1])) for p in problems]
    dup = sorted({p for p, _ in probs if sum(q == p for q, _ in probs) > 1})
    if dup:
        raise ValueError(f"problem(s) {', '.join(dup)} given twice; one dimension each")
    grid = tuple(lrs) if lrs is not None else lr_grid()
    grids = {s.name: tuple((lr_grids or {}).get(s.name, grid)) for s in subs}
    if not seeds:
        raise ValueError("sweep needs at least one tuning seed")
    cells = [Cell(s, p, d, float(lr), int(seed), steps, n_starts, target)
             for s in subs for p, d in probs for lr in grids[s.name] for seed in seeds]
    ck = (lambda part: checkpoint / part) if checkpoint is not None else (lambda part: None)
    rows = run_cells(run_cell, cells, jobs=jobs, dask=dask, checkpoint=ck("tune"),
                     progress="tuning: grid" if progress else None)
    grid_frame = pd.DataFrame(rows)
    choice = select(grid_frame, cost="steps_to_target", tiebreak="final_gap")
    fresh = fresh_seeds(seeds, n_fresh)
    choice["lr_grid"] = choice["optimizer"].map(lambda n: " ".join(f"{v:g}" for v in grids[n]))
    choice["tuning_seeds"] = " ".join(map(str, seeds))
    choice["fresh_seeds"] = " ".join(map(str, fresh))
    choice["steps"], choice["starts_per_seed"], choice["target"] = steps, n_starts, target
    # a choice at either end of its grid: the best lr may lie outside it (widen the grid)
    choice["at_grid_edge"] = [lr in (min(grids[o]), max(grids[o]))
                              for o, lr in zip(choice["optimizer"], choice["lr"], strict=True)]
    failed = grid_frame.groupby(["optimizer", "problem"])["failed"].mean().rename(
        "failed_share")
    choice = choice.merge(failed.reset_index(), on=["optimizer", "problem"], how="left")
    by_name = {s.name: s for s in subs}
    for col in ("optimizer_kind", "reference", "import_path"):
        choice[col] = choice["optimizer"].map(lambda n, c=col: by_name[n].describe()[c])
    dims = dict(probs)
    rerun = [Cell(by_name[r.optimizer], r.problem, dims[r.problem], float(r.lr), seed, steps,
                  n_starts, target, "fresh")
             for r in choice.itertuples() for seed in fresh]
    tuned = pd.DataFrame(run_cells(run_cell, rerun, jobs=jobs, dask=dask,
                                   checkpoint=ck("fresh"),
                                   progress="tuning: fresh seeds" if progress else None))
    return {"tuning_grid": grid_frame, "tuning_choice": choice, "tuned": tuned}

