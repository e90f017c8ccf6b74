"""The convergence part of ``gradsuite run``: every optimizer at its tuned learning rate.

Instead of hand-picked learning rates, every optimizer (references and users' own) gets the
protocol of :mod:`suite.studies.tuning` on every problem: the same lr grid, budget, seeds and
criterion; the choice is re-run on fresh seeds, and the Himmelblau figures (trajectories,
basins of attraction) use each optimizer's tuned lr there. The lr-sensitivity curves are the
tuning grid itself on Himmelblau.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: the classic Himmelblau starts drawn as trajectories
HIMMELBLAU_STARTS = [(0, 0), (1, 0), (-4, 0), (4, 0), (0, 4), (0, -4), (-1, -1), (2, 2),
                     (-5, -5), (5, 5), (-0.270845, -0.923039)]

SIZES: dict[str, dict[str, Any]] = {
    "quick": {"steps": 500, "starts": 4, "seeds": 2, "fresh": 2, "grid": (1e-4, 1.0, 1),
              "traj_steps": 600, "basin": 40, "basin_per_start": 12, "basin_steps": 600},
    "default": {"steps": 1500, "starts": 5, "seeds": 2, "fresh": 2, "grid": (1e-4, 1.0, 2),
                "traj_steps": 3000, "basin": 120, "basin_per_start": 15, "basin_steps": 1500},
    "full": {"steps": 5000, "starts": 10, "seeds": 3, "fresh": 5, "grid": (1e-5, 1.0, 3),
             "traj_steps": 20000, "basin": 200, "basin_per_start": 40, "basin_steps": 2000},
}


#: the columns of the fixed-start frame (hyperparameter columns differ between optimizers)
FIXED_COLUMNS = ("problem", "optimizer", "backend", "final_value", "final_gap", "best_gap",
                 "final_grad_norm", "minimizer_index", "distance_to_minimizer", "diverged",
                 "steps")


def sensitivity_from_grid(grid: pd.DataFrame, problem: str = "himmelblau") -> pd.DataFrame:
    """``convergence.sensitivity``'s columns from the tuning grid's rows on ``problem``."""
    g = grid[grid["problem"] == problem]
    rows = []
    for (opt, lr), sub in g.groupby(["optimizer", "lr"], sort=True):
        hit = sub["steps_to_target"]
        rows.append({"problem": problem, "optimizer": opt, "lr": lr,
                     "target": float(sub["target"].iloc[0]), "starts": len(sub),
                     "seed": " ".join(map(str, sorted(set(sub["seed"])))),
                     "success_rate": float(hit.notna().mean()),
                     "median_steps": float(hit.median()) if hit.notna().any() else math.nan,
                     "diverged_rate": float(sub["diverged"].mean()),
                     "failed_rate": float(sub["failed"].mean()),
                     "median_final_gap": float(sub["final_gap"].median())})
    return pd.DataFrame(rows)


def convergence_part(args: Any) -> dict[str, pd.DataFrame]:
    """The frames of the convergence part (``args``: ``gradsuite run``'s namespace with
    ``subjects``, ``lr_grids``, ``tuning`` filled by :func:`suite.studyfile.apply_to_args`)."""
    from tqdm.auto import tqdm

    from suite import problems as P
    from suite.studies import convergence as C
    from suite.studies import tuning

    sz = SIZES[args.size]
    tun = dict(getattr(args, "tuning", {}) or {})
    lrs = tun.get("lrs") or tuning.lr_grid(*sz["grid"])
    n_seeds = tun.get("seeds", sz["seeds"])
    seeds = tuple(range(args.seed, args.seed + n_seeds))
    target = tun.get("target", 1e-4)
    subjects = args.subjects
    names = [n for n in P.NAMES if n in args.problems]
    out = tuning.sweep(subjects, names, lrs=lrs, seeds=seeds, steps=tun.get("steps", sz["steps"]),
                       n_starts=tun.get("starts", sz["starts"]), target=target,
                       n_fresh=tun.get("fresh_seeds", sz["fresh"]),
                       lr_grids=getattr(args, "lr_grids", None), jobs=args.jobs, dask=args.dask,
                       checkpoint=args.run_dir / ".cells" / "convergence", progress=True)
    choice = out["tuning_choice"]
    tuned = out["tuned"].rename(columns={"steps_to_target": C.target_column(target)})
    frames = {**out, "convergence": tuned, "ecdf": C.ecdf(tuned, targets=(target,))}
    conf = user_conformance(subjects)
    if len(conf):
        frames["user_conformance"] = conf
    if "himmelblau" not in names:
        return frames
    him = P.get("himmelblau")
    lr_of = choice[choice.problem == "himmelblau"].set_index("optimizer")["lr"]
    starts = np.array(HIMMELBLAU_STARTS, dtype=float)
    traj, fixed, basins = [], [], []
    for sub in tqdm(subjects, desc="convergence: himmelblau", unit="optimizer"):
        lr = float(lr_of[sub.name])
        backend = "numba" if sub.rule() is not None else None
        try:
            s, t = C.run_full(him, sub, starts, sz["traj_steps"], backend=backend,
                              record_every=max(1, sz["traj_steps"] // 300), lr=lr)
            n = sz["basin"] if backend or sub.elementwise else sz["basin_per_start"]
            g = C.run(him, sub, C.grid_starts(him, n), sz["basin_steps"], backend=backend,
                      targets=(target,), lr=lr)
        except Exception as exc:  # noqa: BLE001 - a user's optimizer may raise anything
            print(f"convergence: {sub.name} failed on himmelblau at lr={lr:g}: {exc}")
            continue
        cols = [c for c in s.columns if c in FIXED_COLUMNS or c.startswith(("start_",
                                                                            "steps_to_"))]
        fixed.append(s[cols].assign(lr=lr))
        traj.append(t)
        keep = ["problem", "optimizer", "lr", "start_0", "start_1", "minimizer_index",
                C.target_column(target), "diverged"]
        basins.append(g.assign(lr=lr)[keep])
    if traj:
        frames["convergence_trajectories"] = pd.concat(traj, ignore_index=True)
        frames["convergence_fixed_starts"] = pd.concat(fixed, ignore_index=True)
        b = pd.concat(basins, ignore_index=True)
        frames["basins"] = b
        frames["basin_shares"] = C.basin_shares(b)
    frames["lr_sensitivity"] = sensitivity_from_grid(out["tuning_grid"])
    return frames


def user_conformance(subjects: list[Any], steps: int = 50) -> pd.DataFrame:
    """One row per user optimizer that names a reference: ``check_optimizer``'s verdict
    (float64, ``steps`` steps, the reference's default configurations); an optimizer that
    raises gets the verdict ``error``."""
    from suite.conformance import check_optimizer

    rows = []
    for sub in subjects:
        if sub.kind == "reference" or sub.reference is None:
            continue
        def factory(params: Any, _sub: Any = sub, **hyper: Any) -> Any:
            return _sub.make(params, **hyper)

        factory.__name__ = factory.__qualname__ = sub.name
        try:
            res = check_optimizer(factory, reference=sub.reference, steps=steps,
                                  dtypes=("float64",))
            n = len(res.frame)
            ok = int(res.frame["passed"].eq(True).sum()) if n else 0
            verdict = "PASS" if res.passed else "FAIL"
            detail = str(res).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - a user's optimizer may raise anything
            n, ok, verdict, detail = 0, 0, "error", f"{type(exc).__name__}: {exc}"[:300]
        rows.append({"optimizer": sub.name, "reference": sub.reference, "verdict": verdict,
                     "cells": n, "cells_agree": ok, "detail": detail, "steps": steps})
    return pd.DataFrame(rows)
