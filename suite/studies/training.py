"""Training study: any optimizer on the tasks of :mod:`suite.tasks`, scored by time to a target.

:func:`run` trains one task with one optimizer for each seed and returns the curves, one row per
recorded step:

==================  ===========================================================================
task, optimizer     names (the optimizer's display name, see :mod:`suite.subjects`)
lr                  the learning rate passed (NaN: the optimizer's default)
seed                initial weights *and* the order of the examples
step, epoch         optimizer steps taken; examples seen / training-set size
train_loss          loss on the whole training set (the score)
test_loss           loss on the test set
test_accuracy       share correct on the test set (NaN for regression tasks)
wall_time           seconds spent in training steps up to this row (evaluation not counted)
diverged            the run stopped early: a non-finite loss, or a training loss above
                    ``DIVERGENCE_FACTOR`` x the initial one (benchopt's rule); every row of
                    the run carries the flag
error               the exception that stopped the run during training ('' if none)
==================  ===========================================================================

The same seed gives the same initial weights and the same sequence of minibatches to every
optimizer (batches are cut from an endless stream of seeded permutations of the training set),
so a reference rule and its torch.optim twin produce the same curves up to round-off. A
diverging run ends itself; it never stops the study.

Sweeps over task x optimizer x lr x seed are independent cells on :mod:`suite.sweep`'s
executors (local processes or Dask), checkpointed per cell. :func:`summarize` turns curves into
one row per run (steps and wall time to the task's target training loss, final losses),
:func:`aggregate` into medians and quartiles over seeds, :func:`tune` applies the tuning
protocol of :mod:`suite.studies.tuning`, and :func:`performance_profile` computes Dolan-Moré
performance profiles (for these runs or any other frame of costs, e.g. the test functions').
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite import subjects, tasks
from suite.schedules import Schedule
from suite.studies import tuning

#: a run whose training loss exceeds this multiple of its initial loss has diverged
DIVERGENCE_FACTOR = 1e5

CURVE_COLUMNS = ["task", "optimizer", "lr", "seed", "step", "epoch", "train_loss", "test_loss",
                 "test_accuracy", "wall_time", "diverged", "error"]


# ---- one run ---------------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}; expected a positive integer")
    return int(value)


class _Batches:
    """Minibatch indices from an endless stream of seeded permutations of range(n)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        import torch

        self.n, self.bs = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.buf = torch.randperm(n, generator=self.gen)

    def next(self) -> Any:
        import torch

        while len(self.buf) < self.bs:
            self.buf = torch.cat([self.buf, torch.randperm(self.n, generator=self.gen)])
        idx, self.buf = self.buf[:self.bs], self.buf[self.bs:]
        return idx


def _evaluate(task: tasks.Task, model: Any, x: Any, y: Any) -> tuple[float, float]:
    import torch

    with torch.no_grad():
        out = model(x)
        loss = float(task.loss(out, y))
        acc = task.accuracy(out, y) if task.has_accuracy else float("nan")
    return loss, acc


def train_one(task: tasks.Task | str, optimizer: Any, seed: int = 0, steps: int | None = None,
              batch_size: int | None = None, schedule: Schedule | None = None,
              record_every: int | None = None, dtype: Any = None, **hyper: Any
              ) -> list[dict[str, Any]]:
    """One run (one seed): the rows of :func:`run`."""
    t = tasks.get(task)
    sub = subjects.resolve(optimizer)
    steps = _check_positive_int("steps", t.steps if steps is None else steps)
    bs = _check_positive_int("batch_size", t.batch_size if batch_size is None else batch_size)
    every = _check_positive_int("record_every",
                                t.record_every if record_every is None else record_every)
    d = t.data(dtype)
    if bs > d.n_train:
        raise ValueError(f"batch_size={bs} exceeds the {d.n_train} training examples of "
                         f"task {t.name!r}")
    model = t.model(seed, dtype=d.x_train.dtype)
    opt = sub.make(list(model.parameters()), **hyper)
    sched = schedule.torch_scheduler(opt) if schedule is not None else None
    batches = _Batches(d.n_train, bs, seed)
    lr = float(hyper["lr"]) if "lr" in hyper else float("nan")
    rows: list[dict[str, Any]] = []
    elapsed = 0.0
    initial = math.nan

    def record(step: int) -> float:
        tr, _ = _evaluate(t, model, d.x_train, d.y_train)
        te, acc = _evaluate(t, model, d.x_test, d.y_test)
        rows.append({"task": t.name, "optimizer": sub.name, "lr": lr, "seed": int(seed),
                     "step": step, "epoch": step * bs / d.n_train, "train_loss": tr,
                     "test_loss": te, "test_accuracy": acc, "wall_time": elapsed,
                     "diverged": False, "error": ""})
        return tr

    initial = record(0)
    limit = DIVERGENCE_FACTOR * max(abs(initial), 1e-12)
    stop, error = False, ""
    for step in range(1, steps + 1):
        idx = batches.next()
        t0 = time.perf_counter()
        try:
            opt.zero_grad(set_to_none=True)
            loss = t.loss(model(d.x_train[idx]), d.y_train[idx])
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            value = float(loss.detach())
        except (ArithmeticError, RuntimeError, ValueError) as exc:
            # the optimizer (or the model under it) gave up: this run ends, the study goes on
            value, error = math.nan, f"{type(exc).__name__}: {exc}"
        elapsed += time.perf_counter() - t0
        stop = not math.isfinite(value)
        if stop or step % every == 0 or step == steps:
            tr = record(step)
            stop = stop or not math.isfinite(tr) or tr > limit
        if stop:
            break
    if stop:
        for r in rows:
            r["diverged"] = True
            r["error"] = error
    return rows


def run(task: tasks.Task | str, optimizer: Any, seeds: Iterable[int] = (0,),
        steps: int | None = None, batch_size: int | None = None,
        schedule: Schedule | None = None, **hyper: Any) -> pd.DataFrame:
    """Train ``task`` with ``optimizer`` once per seed; one row per recorded step.

    ``optimizer``: a reference name, a torch.optim-style class or factory, an import path
    ``'module:Class'`` or an :class:`~suite.subjects.OptimizerSubject`. ``steps`` and
    ``batch_size`` default to the task's budget; ``schedule`` is a
    :class:`~suite.schedules.Schedule` (torch's scheduler, stepped after every optimizer
    step); ``hyper`` goes to the optimizer (``lr=...``; torch.optim's names, renamed by the
    subject). ``record_every`` and ``dtype`` (default float32) may be passed too.
    """
    record_every = hyper.pop("record_every", None)
    dtype = hyper.pop("dtype", None)
    sub = subjects.resolve(optimizer)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; expected at least one seed")
    rows = [row for s in seeds
            for row in train_one(task, sub, s, steps, batch_size, schedule, record_every,
                                 dtype, **hyper)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


# ---- sweeps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One independent run of a sweep (picklable: tasks by name, subjects by value)."""

    task: str
    optimizer: subjects.OptimizerSubject
    lr: float
    seed: int
    steps: int | None = None
    batch_size: int | None = None
    schedule: Schedule | None = None
    record_every: int | None = None
    hyper: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # stable across processes (the checkpoint key): no object addresses
        o = self.optimizer
        return (f"Cell({self.task}, {o.name}[{o.kind}:{o.reference}:{o.backend}:"
                f"{o.import_path}:{sorted(o.hyper.items())}], lr={self.lr!r}, "
                f"seed={self.seed}, steps={self.steps}, batch_size={self.batch_size}, "
                f"schedule={self.schedule!r}, record_every={self.record_every}, "
                f"hyper={sorted(self.hyper.items())})")


def _cell(cell: Cell) -> list[dict[str, Any]]:
    return train_one(cell.task, cell.optimizer, cell.seed, cell.steps, cell.batch_size,
                     cell.schedule, cell.record_every, lr=cell.lr, **cell.hyper)


def _steps_for(task: str, steps: int | Mapping[str, int] | None) -> int | None:
    if isinstance(steps, Mapping):
        return steps.get(task)
    return steps


def sweep(task_names: Sequence[str], optimizers: Sequence[Any], lrs: Sequence[float],
          seeds: Sequence[int], steps: int | Mapping[str, int] | None = None,
          batch_size: int | None = None,
          schedule: Schedule | None = None, record_every: int | None = None,
          jobs: int = 1, dask: str | None = None, progress: str | None = None,
          checkpoint: Path | None = None, **hyper: Any) -> pd.DataFrame:
    """Curves of every task x optimizer x lr x seed, each run an independent cell.

    ``steps``: one budget for every task, a mapping task -> steps, or None (each task's own).
    """
    from suite.sweep import run_cells

    for name in task_names:
        tasks.get(name)
    subs = subjects.resolve_many(optimizers)
    if not lrs:
        raise ValueError("lrs is empty; expected at least one learning rate")
    cells = [Cell(tk, s, float(lr), int(seed), _steps_for(tk, steps), batch_size, schedule,
                  record_every, dict(hyper))
             for tk in task_names for s in subs for lr in lrs for seed in seeds]
    rows = run_cells(_cell, cells, jobs=jobs, dask=dask, progress=progress,
                     checkpoint=checkpoint)
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


# ---- metrics ----------------------------------------------------------------------------------

RUN_KEYS = ["task", "optimizer", "lr", "seed"]


def summarize(curves: pd.DataFrame, targets: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per run: steps and wall time to the target training loss, final values.

    ``targets`` maps task -> target training loss (default: each task's ``target_loss``).
    ``steps_to_target`` is the first *recorded* step with ``train_loss <= target`` (so its
    resolution is the recording interval); NaN if the run never got there (a failure).
    ``final_*`` are the last recorded values, NaN for a diverged run; ``best_train_loss`` is
    the smallest training loss recorded.
    """
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise ValueError(f"summarize: curves lack column(s) {', '.join(missing)}")
    out = []
    for key, g in curves.sort_values("step", kind="mergesort").groupby(RUN_KEYS, sort=True,
                                                                        dropna=False):
        task = str(key[0])
        target = (targets or {}).get(task)
        if target is None:
            target = tasks.get(task).target_loss
        hit = g[g["train_loss"] <= target]
        last = g.iloc[-1]
        div = bool(g["diverged"].any())
        out.append({**dict(zip(RUN_KEYS, key, strict=True)), "target_loss": float(target),
                    "steps_to_target": float(hit["step"].iloc[0]) if len(hit) else math.nan,
                    "time_to_target": float(hit["wall_time"].iloc[0]) if len(hit) else math.nan,
                    "final_train_loss": math.nan if div else float(last["train_loss"]),
                    "final_test_loss": math.nan if div else float(last["test_loss"]),
                    "final_test_accuracy": math.nan if div else float(last["test_accuracy"]),
                    "best_train_loss": float(g["train_loss"].min()),
                    "steps_run": int(last["step"]), "wall_time": float(last["wall_time"]),
                    "diverged": div, "error": str(last["error"])})
    return pd.DataFrame(out)


def quantile(values: Any, p: float) -> float:
    """NumPy's default (linear) quantile, where +inf stays +inf (np.quantile gives NaN when
    it weighs an inf by 0)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        return math.nan
    pos = p * (v.size - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or v[lo] == v[hi]:
        return float(v[lo])
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def _q(p: float) -> Any:
    def f(s: pd.Series) -> float:
        return quantile(s.to_numpy(dtype=float), p)

    f.__name__ = f"q{int(p * 100)}"
    return f


def aggregate(summary: pd.DataFrame, by: Sequence[str] = ("task", "optimizer", "lr")
              ) -> pd.DataFrame:
    """Medians and quartiles over seeds; a failure counts as +inf steps and seconds.

    So a median is finite only if at least half of the seeds reached the target; quartiles
    likewise. ``success_rate`` is the share of seeds that reached it.
    """
    df = summary.copy()
    for c in ("steps_to_target", "time_to_target"):
        df[c] = df[c].astype(float).fillna(np.inf)
    aggs: dict[str, Any] = {"n_seeds": ("seed", "size"),
                            "success_rate": ("steps_to_target", lambda s: np.isfinite(s).mean())}
    for c in ("steps_to_target", "time_to_target"):
        aggs[f"{c}_median"] = (c, _q(0.5))
        aggs[f"{c}_q25"] = (c, _q(0.25))
        aggs[f"{c}_q75"] = (c, _q(0.75))
    for c in ("final_train_loss", "final_test_loss", "final_test_accuracy"):
        aggs[f"{c}_median"] = (c, "median")
    aggs["diverged"] = ("diverged", "mean")
    return df.groupby(list(by), sort=True, dropna=False).agg(**aggs).reset_index()


# ---- the tuning protocol ------------------------------------------------------------------------


def tune(task_names: Sequence[str], optimizers: Sequence[Any],
         lrs: Sequence[float] | None = None, tuning_seeds: Sequence[int] = (0,),
         final_seeds: int = 3, steps: int | Mapping[str, int] | None = None,
         batch_size: int | None = None,
         jobs: int = 1, dask: str | None = None, progress: bool = False,
         checkpoint: Path | None = None) -> dict[str, pd.DataFrame]:
    """The protocol of :mod:`suite.studies.tuning` on the training tasks.

    Every optimizer runs every lr of one grid (default ``tuning.lr_grid(1e-4, 1, 2)``) on the
    same ``tuning_seeds`` and budget; per task the lr is chosen by ``tuning.select`` with cost
    = steps to the target training loss (failures infinite) and tie-break = final training
    loss; the choice is re-run on ``final_seeds`` fresh seeds. Frames:

    - ``training_tuning``: :func:`summarize` of every tuning run (with ``phase``);
    - ``training_choice``: the chosen lr per task and optimizer, with the criterion;
    - ``training_curves``: the re-runs' curves; ``training_runs``: their summaries;
    - ``training_table``: :func:`aggregate` of the re-runs (medians and quartiles);
    - ``training_profile``: :func:`performance_profile` of the re-runs' median steps to
      target.
    """
    grid = tuple(lrs) if lrs is not None else tuning.lr_grid(1e-4, 1.0, 2)
    subs = subjects.resolve_many(optimizers)
    ck = (lambda name: checkpoint / name) if checkpoint is not None else (lambda name: None)
    curves = sweep(task_names, subs, grid, tuning_seeds, steps, batch_size, jobs=jobs,
                   dask=dask, progress="training: tuning" if progress else None,
                   checkpoint=ck("tuning"))
    tuned = summarize(curves)
    choice = tuning.select(tuned, group=("task", "optimizer"), lr="lr", cost="steps_to_target",
                           tiebreak="final_train_loss")
    choice["lr_grid"] = ", ".join(f"{v:g}" for v in grid)
    choice["tuning_seeds"] = ", ".join(map(str, tuning_seeds))
    fresh = tuning.fresh_seeds(tuning_seeds, final_seeds)
    choice["final_seeds"] = ", ".join(map(str, fresh))
    by_name = {s.name: s for s in subs}
    from suite.sweep import run_cells

    cells = [Cell(str(task), by_name[str(opt)], float(lr), s,
                  _steps_for(str(task), steps), batch_size)
             for task, opt, lr in zip(choice["task"], choice["optimizer"], choice["lr"],
                                      strict=True)
             for s in fresh]
    final_rows = run_cells(_cell, cells, jobs=jobs, dask=dask,
                           progress="training: fresh seeds" if progress else None,
                           checkpoint=ck("final"))
    final = pd.DataFrame(final_rows, columns=CURVE_COLUMNS)
    runs = summarize(final)
    table = aggregate(runs)
    return {"training_tuning": tuned.assign(phase="tuning"), "training_choice": choice,
            "training_curves": final, "training_runs": runs, "training_table": table,
            "training_profile": performance_profile(table, cost="steps_to_target_median")}


# ---- performance profiles -------------------------------------------------------------------


def performance_profile(frame: pd.DataFrame, cost: str = "steps_to_target",
                        solver: str = "optimizer", problem: str = "task",
                        taus: Sequence[float] | None = None, tau_max: float | None = None
                        ) -> pd.DataFrame:
    """Dolan-Moré performance profiles: columns ``solver``, ``tau``, ``fraction``.

    For each problem p and solver s, ``r = cost(p, s) / min_s' cost(p, s')``;
    ``fraction(s, tau)`` is the share of problems with ``r <= tau``. A failure (NaN or inf
    cost) counts as infinitely costly: it never counts, at any tau; a problem that no solver
    solves counts against every solver. Where a frame holds several rows per (problem,
    solver), e.g. one per seed or start, their median is the cost (failures as +inf). With
    ``tau_max`` (AlgoPerf's variant, which uses 4), ratios above it count as failures.
    ``taus`` default: 1 and every distinct finite ratio (where the step function jumps).
    Costs must be positive (a ratio to a zero cost is undefined): ValueError otherwise.
    """
    missing = [c for c in (problem, solver, cost) if c not in frame.columns]
    if missing:
        raise ValueError(f"performance_profile: frame lacks column(s) {', '.join(missing)}; "
                         f"it has {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise ValueError("performance_profile: the frame is empty")
    c = pd.to_numeric(frame[cost], errors="coerce").astype(float)
    c = c.where(np.isfinite(c), np.inf)
    bad = frame[c <= 0]
    if len(bad):
        r = bad.iloc[0]
        raise ValueError(f"performance_profile: cost {cost}={r[cost]!r} for {problem}="
                         f"{r[problem]!r}, {solver}={r[solver]!r}; costs must be > 0")
    df = pd.DataFrame({"p": frame[problem].to_numpy(), "s": frame[solver].to_numpy(),
                       "c": c.to_numpy()})
    table = df.groupby(["p", "s"], sort=True)["c"].median().unstack("s")
    if table.isna().to_numpy().any():
        holes = [(p, s) for p in table.index for s in table.columns if pd.isna(table.loc[p, s])]
        raise ValueError(f"performance_profile: no {cost} for ({problem}, {solver}) = "
                         f"{holes[0]!r} ({len(holes)} pair(s) missing); every solver needs a "
                         "cost (or a failure) on every problem")
    costs = table.to_numpy(dtype=float)
    best = costs.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(best) & np.isfinite(costs), costs / best, np.inf)
    if tau_max is not None:
        ratio = np.where(ratio <= tau_max, ratio, np.inf)
    if taus is None:
        finite = ratio[np.isfinite(ratio)]
        tau_arr = np.unique(np.concatenate([[1.0], finite]))
    else:
        tau_arr = np.asarray(sorted(float(t) for t in taus), dtype=float)
        if tau_arr.size == 0 or not np.isfinite(tau_arr).all() or (tau_arr < 1).any():
            raise ValueError(f"taus={list(taus)!r}; expected finite values >= 1")
    frac = (ratio[:, :, None] <= tau_arr[None, None, :]).mean(axis=0)  # solvers x taus
    return pd.DataFrame({solver: np.repeat(table.columns.to_numpy(), len(tau_arr)),
                         "tau": np.tile(tau_arr, len(table.columns)),
                         "fraction": frac.reshape(-1)})


def profile_score(profile: pd.DataFrame, solver: str = "optimizer", tau_max: float = 4.0
                  ) -> pd.DataFrame:
    """AlgoPerf's benchmark score: the area under rho(tau) on [1, tau_max] / (tau_max - 1).

    ``profile`` is :func:`performance_profile`'s frame; the step function is integrated
    exactly (it is constant between its taus). 1 = fastest on every problem.
    """
    if not tau_max > 1:
        raise ValueError(f"tau_max={tau_max!r}; expected > 1")
    out = []
    for s, g in profile.groupby(solver, sort=True):
        g = g.sort_values("tau")
        tau = np.clip(np.append(g["tau"].to_numpy(float), tau_max), 1.0, tau_max)
        rho = g["fraction"].to_numpy(float)
        area = float(np.sum(rho * np.diff(tau)))
        out.append({solver: s, "score": area / (tau_max - 1.0)})
    return pd.DataFrame(out)


# ---- the `training` part of `gradsuite run` ------------------------------------------------------

#: learning-rate grid, tuning seeds and fresh seeds per run size
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"grid": (1e-3, 1e-1, 1), "tuning_seeds": 1, "final_seeds": 1, "budget": 0.25},
    "default": {"grid": (1e-4, 1.0, 2), "tuning_seeds": 1, "final_seeds": 3, "budget": 1.0},
    "full": {"grid": (1e-5, 10.0, 3), "tuning_seeds": 2, "final_seeds": 10, "budget": 1.0},
}


def part(args: Any) -> dict[str, pd.DataFrame]:
    """``gradsuite run --parts training``: the tuning protocol on every task (``--tasks``)."""
    size = SIZES[args.size]
    names = list(getattr(args, "tasks", None) or tasks.TASKS)
    for name in names:
        tasks.get(name)
    seeds = tuple(range(args.seed, args.seed + size["tuning_seeds"]))
    steps = None
    if size["budget"] != 1.0:  # a smoke test of the whole pipeline, not a measurement
        steps = {n: max(1, round(tasks.get(n).steps * size["budget"])) for n in names}
    # users' optimizers (--optimizer, --config) train beside the references; references by
    # name (their NumPy rules), users' as the subjects the command line resolved
    subjects = getattr(args, "subjects", None) or []
    optimizers = ([s.name if s.kind == "reference" else s for s in subjects]
                  or list(args.optimizers))
    frames = tune(names, optimizers, lrs=tuning.lr_grid(*size["grid"]),
                  tuning_seeds=seeds, final_seeds=size["final_seeds"], steps=steps,
                  jobs=args.jobs,
                  dask=args.dask, progress=True,
                  checkpoint=args.run_dir / ".cells" / "training")
    frames["training_tasks"] = pd.DataFrame([tasks.get(n).describe() for n in names])
    frames["training_profile_score"] = profile_score(frames["training_profile"])
    return frames
