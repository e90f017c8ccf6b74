"""Convergence on the test functions: many starts at once, first-hit and final-value metrics.

``run(problem, optimizer, starts, steps, backend="numpy", targets=(1e-2, 1e-4, 1e-8), **hyper)``
returns one row per start. N starts are one (N, d) parameter: the rules are elementwise, so
that is exactly N independent runs (and the same as torch.optim on an (N, d) parameter with
loss Σ f). Backends: ``numpy`` and ``torch`` run the batch step by step with the reference
rules; ``numba`` runs each start's whole optimisation in one compiled loop, in parallel over
starts (``numba.prange``), with the rules of :mod:`suite.optim.numba_kernels`.

Two kinds of metric, because they disagree (RMSprop with a constant lr first touches the
minimum, then settles into a period-2 cycle about 0.7·lr from it):

- **first hit**: ``steps_to_target_<t>`` is the first step k (1-based: after k updates) with
  f(x_k) - f_min < t; missing (NaN) if never.
- **final value**: ``final_value`` = f(x_K), ``final_gap`` = f(x_K) - f_min,
  ``best_gap`` = min_{1<=k<=K} f(x_k) - f_min (the start x_0 does not count, as for the first
  hit: ``best_gap < t`` exactly when ``steps_to_target_<t>`` is set), ``final_grad_norm``, and
  the nearest known minimiser (``minimizer_index``, ``distance_to_minimizer``) of x_K.

``diverged`` marks starts whose iterate became non-finite (never an exception);
``start_in_domain`` flags starts outside the problem's usual domain (allowed).

Any optimizer :func:`suite.subjects.resolve` accepts can be studied: a reference name, a
torch.optim-style class or factory, an import path ``'module:Class'`` or a subject. A reference
runs on ``backend`` (numpy, numba or torch; default the subject's own). Anything else runs on
torch tensors (``dtype``) with the problem's analytic gradient, and its result equals running
it on **each start alone**, whatever it does across tensors (global gradient clipping,
per-tensor norms): starts share one (N, d) tensor only when the subject is ``elementwise``
(the references but Adafactor, torch.optim's twins of them, or a user's explicit
``elementwise=True``); otherwise every start gets its own (d,) parameter and its own optimizer
instance (``per_start``), while the problem's value and gradient are still evaluated for all
starts at once. A noisy problem draws its gradient noise for the whole batch of starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from suite import optim
from suite.problems import Problem
from suite.problems import get as get_problem
from suite.schedules import Schedule
from suite.subjects import OptimizerSubject, resolve

DEFAULT_TARGETS = (1e-2, 1e-4, 1e-8)


def target_column(t: float) -> str:
    return f"steps_to_target_{t:.0e}"


def _check_starts(problem: Problem, starts: Any) -> np.ndarray:
    x = np.asarray(starts, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != problem.dim:
        raise ValueError(f"starts have shape {np.shape(starts)}; {problem.name} needs "
                         f"(n_starts, {problem.dim})")
    if not np.all(np.isfinite(x)):
        raise ValueError("starts contain non-finite values")
    return x


def subject_for(optimizer: Any, backend: str | None = None) -> OptimizerSubject:
    """The subject for ``optimizer``; a reference gets ``backend``'s kernels (numba: numpy's
    rule, the compiled runner is chosen by ``run``)."""
    sub = resolve(optimizer, backend="numpy" if backend in (None, "numba") else backend)
    if sub.rule() is not None and backend is not None:
        sub = replace(sub, backend="numpy" if backend == "numba" else backend)
    return sub


def run(problem: Problem | str, optimizer: Any, starts: Any, steps: int,
        backend: str | None = None, targets: Sequence[float] = DEFAULT_TARGETS,
        schedule: Schedule | None = None, seed: int = 0, record_every: int = 0,
        dtype: str = "float64", **hyper: Any) -> pd.DataFrame:
    """One row per start (see the module docstring); :func:`run_full` adds trajectories."""
    return run_full(problem, optimizer, starts, steps, backend, targets, schedule, seed,
                    record_every, dtype, **hyper)[0]


def run_full(problem: Problem | str, optimizer: Any, starts: Any, steps: int,
             backend: str | None = None, targets: Sequence[float] = DEFAULT_TARGETS,
             schedule: Schedule | None = None, seed: int = 0, record_every: int = 0,
             dtype: str = "float64", **hyper: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary frame, trajectory frame). Trajectories hold f - f_min and x every
    ``record_every`` steps (0: no trajectories), one row per (start, step).

    ``optimizer``: anything :func:`suite.subjects.resolve` accepts. ``backend`` applies to
    reference rules (numpy, numba, torch; default: the subject's own, numpy for a name);
    other optimizers always run on torch. ``hyper`` overrides the subject's hyperparameters
    (torch.optim's names, e.g. ``lr``)."""
    prob = get_problem(problem) if isinstance(problem, str) else problem
    x0 = _check_starts(prob, starts)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}; expected a positive integer")
    tg = np.array(sorted(targets, reverse=True), dtype=np.float64)
    if not np.all(tg > 0):
        raise ValueError(f"targets must be positive, got {list(targets)}")
    if backend is not None and backend not in ("numpy", "numba", "torch"):
        raise ValueError(f"unknown backend {backend!r}; expected numpy, numba or torch")
    sched = schedule or Schedule()
    sub = subject_for(optimizer, backend)
    rule = sub.rule(**hyper)
    if rule is None or not sub.elementwise:
        # a user's optimizer, or a reference that is not elementwise (Adafactor's factored
        # moments): one parameter and one instance per start, unless declared elementwise
        res, hyp, mode = _run_subject(prob, sub, hyper, x0, steps, tg, sched, seed,
                                      record_every, dtype)
        return _frames(prob, sub.name, hyp, mode, x0, tg, sched, seed, steps, *res)
    if backend == "numba" and rule.name not in _OPT_CODES:  # no batched runner: step by step
        rule = replace(sub, backend="numba").rule(**hyper)
        assert rule is not None
        res = _run_stepwise(prob, rule, x0.copy(), steps, tg, sched, seed, record_every,
                            "numpy", dtype)
    elif backend == "numba":
        if prob.noise:
            raise NotImplementedError("noisy problems run on the numpy and torch backends")
        res = _run_numba(prob, rule, x0, steps, tg, sched, record_every)
    else:
        res = _run_stepwise(prob, rule, x0, steps, tg, sched, seed, record_every,
                            sub.backend or "numpy", dtype)
    return _frames(prob, sub.name, rule.hyper, backend or sub.backend or "numpy", x0, tg,
                   sched, seed, steps, *res)


def _run_stepwise(prob: Problem, rule: optim.Rule, x0: np.ndarray, steps: int, tg: np.ndarray,
                  sched: Schedule, seed: int, record_every: int, backend: str, dtype: str
                  ) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n = len(x0)
    if backend == "torch":
        import torch

        x: Any = torch.tensor(x0, dtype=getattr(torch, dtype))

        def to_np(a: Any) -> np.ndarray:
            return a.detach().cpu().double().numpy()
    else:
        x = x0.astype(dtype)

        def to_np(a: Any) -> np.ndarray:
            return np.asarray(a, dtype=np.float64)

    # N starts are one (N, d) parameter for elementwise rules; otherwise (Adafactor's per-tensor
    # statistics) each start is its own parameter, a row view of x
    def parts(a: Any) -> list[Any]:
        return [a] if rule.spec.elementwise else [a[i] for i in range(n)]

    state = rule.init(parts(x))
    hits = np.full((n, len(tg)), -1, dtype=np.int64)
    best = np.full(n, np.inf)
    rec_f, rec_x, rec_t = [], [], []
    lr0 = rule.hyper["lr"]
    with np.errstate(all="ignore"):
        f = to_np(prob.f(x)) - prob.f_min
        if record_every:
            rec_f.append(f.copy()), rec_x.append(to_np(x).copy()), rec_t.append(0)
        for t in range(steps):
            g = prob.grad(x, rng)
            rule.step(parts(x), parts(g), state, lr=sched.lr_at(lr0, t))
            f = to_np(prob.f(x)) - prob.f_min
            _update_hits(hits, f, tg, t + 1)
            best = np.fmin(best, f)
            if record_every and ((t + 1) % record_every == 0 or t + 1 == steps):
                rec_f.append(f.copy()), rec_x.append(to_np(x).copy()), rec_t.append(t + 1)
        gn = np.linalg.norm(to_np(prob.grad_fn(x)), axis=-1)
    d = x0.shape[1]
    return (to_np(x), f + prob.f_min, gn, hits, best, np.array(rec_t, dtype=np.int64),
            np.array(rec_f).reshape(len(rec_t), n), np.array(rec_x).reshape(len(rec_t), n, d))


def _lr_key(sub: OptimizerSubject, group: dict[str, Any]) -> str:
    """The param-group key holding the learning rate: the renamed one if the group has it,
    else torch.optim's ``lr``."""
    key = sub.rename.get("lr", "lr")
    return key if key in group else "lr"


def _run_subject(prob: Problem, sub: OptimizerSubject, hyper: dict[str, Any], x0: np.ndarray,
                 steps: int, tg: np.ndarray, sched: Schedule, seed: int, record_every: int,
                 dtype: str) -> tuple[tuple[np.ndarray, ...], dict[str, Any], str]:
    """Any optimizer with torch.optim's interface, on torch tensors with the analytic
    gradient: one (N, d) parameter if the subject is elementwise, else one (d,) parameter and
    one optimizer instance per start (see the module docstring)."""
    import torch

    rng = np.random.default_rng(seed)
    n, d = x0.shape
    tdtype = getattr(torch, dtype)
    batched = bool(sub.elementwise)
    with torch.no_grad():
        if batched:
            xb = torch.nn.Parameter(torch.tensor(x0, dtype=tdtype))
            params = [xb]
            opts = [sub.make([xb], **hyper)]
        else:
            params = [torch.nn.Parameter(torch.tensor(x0[i], dtype=tdtype)) for i in range(n)]
            opts = [sub.make([p], **hyper) for p in params]
    groups = [g for o in opts for g in o.param_groups]
    lr_key = _lr_key(sub, groups[0])
    lr0 = groups[0].get(lr_key, math.nan)
    constant = sched.kind == "constant"
    if not constant and lr_key not in groups[0]:
        raise ValueError(f"optimizer {sub.name!r} has no {lr_key!r} in its param groups; a "
                         "learning-rate schedule needs one (pass rename={'lr': ...} if the "
                         "optimizer calls it otherwise)")
    hits = np.full((n, len(tg)), -1, dtype=np.int64)
    best = np.full(n, np.inf)
    rec_f: list[np.ndarray] = []
    rec_x: list[np.ndarray] = []
    rec_t: list[int] = []

    def current() -> Any:
        return params[0].detach() if batched else torch.stack([p.detach() for p in params])

    with np.errstate(all="ignore"), torch.no_grad():
        x = current()
        f = prob.f(x).double().numpy() - prob.f_min
        if record_every:
            rec_f.append(f.copy()), rec_x.append(x.double().numpy().copy()), rec_t.append(0)
        for t in range(steps):
            g = prob.grad(x, rng)
            if batched:
                params[0].grad = g
            else:
                for p, gi in zip(params, g.unbind(0), strict=True):
                    p.grad = gi
            if not constant:
                lr = sched.lr_at(lr0, t)
                for grp in groups:
                    grp[lr_key] = lr
            for o in opts:
                o.step()
            x = current()
            f = prob.f(x).double().numpy() - prob.f_min
            _update_hits(hits, f, tg, t + 1)
            best = np.fmin(best, f)
            if record_every and ((t + 1) % record_every == 0 or t + 1 == steps):
                rec_f.append(f.copy()), rec_x.append(x.double().numpy().copy())
                rec_t.append(t + 1)
        xk = x.double().numpy().copy()
        gn = np.linalg.norm(prob.grad_fn(xk), axis=-1)
    hyp = {**sub.hyperparameters(**hyper), "lr": lr0,
           "optimizer_kind": sub.kind, "import_path": sub.import_path or "",
           "reference": sub.reference or ""}
    res = (xk, f + prob.f_min, gn, hits, best, np.array(rec_t, dtype=np.int64),
           np.array(rec_f).reshape(len(rec_t), n), np.array(rec_x).reshape(len(rec_t), n, d))
    return res, hyp, "torch-batched" if batched else "torch-per-start"


def _update_hits(hits: np.ndarray, f: np.ndarray, tg: np.ndarray, k: int) -> None:
    for j, t in enumerate(tg):
        new = (hits[:, j] < 0) & (f < t)
        hits[new, j] = k


def _column_value(value: Any) -> Any:
    if isinstance(value, bool | int | float | str | np.integer | np.floating | np.bool_):
        return value
    return str(value)


def _frames(prob: Problem, name: str, hyper: Any, backend: str, x0: np.ndarray, tg: np.ndarray,
            sched: Schedule, seed: int, steps: int, xk: np.ndarray, fk: np.ndarray,
            gn: np.ndarray, hits: np.ndarray, best: np.ndarray, rec_t: np.ndarray,
            rec_f: np.ndarray, rec_x: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    n, d = x0.shape
    finite = np.all(np.isfinite(xk), axis=1) & np.isfinite(fk)
    idx, dist = prob.nearest_minimizer(np.where(np.isfinite(xk), xk, 0.0))
    cols: dict[str, Any] = {
        "problem": prob.name, "optimizer": name, "backend": backend,
        "start_index": np.arange(n),
    }
    for j in range(d):
        cols[f"start_{j}"] = x0[:, j]
    cols["start_in_domain"] = prob.in_domain(x0)
    for j, t in enumerate(tg):
        cols[target_column(t)] = np.where(hits[:, j] >= 0, hits[:, j], np.nan)
    cols.update({
        "final_value": fk, "final_gap": fk - prob.f_min, "best_gap": best,
        "final_grad_norm": gn,
        "minimizer_index": np.where(finite, idx, -1), "distance_to_minimizer":
            np.where(finite, dist, np.nan),
        "diverged": ~finite, "steps": steps, "schedule": sched.label, "seed": seed,
    })
    for key, value in hyper.items():
        if key not in cols:
            cols[key] = _column_value(value)
    summary = pd.DataFrame(cols)
    if len(rec_t):
        k = len(rec_t)
        traj = pd.DataFrame({
            "problem": prob.name, "optimizer": name, "lr": hyper["lr"],
            "start_index": np.tile(np.arange(n), k), "step": np.repeat(rec_t, n),
            "gap": rec_f.reshape(-1),
            **{f"x{j}": rec_x[:, :, j].reshape(-1) for j in range(d)},
        })
    else:
        traj = pd.DataFrame()
    return summary, traj


# ---- numba: every start's whole run in one compiled loop, parallel over starts -------------

_OPT_CODES = {"sgd": 0, "adagrad": 1, "rmsprop": 2, "adam": 3, "adamw": 4}


def _hyper_array(rule: optim.Rule) -> np.ndarray:
    h = rule.hyper
    if rule.name == "sgd":
        vals = [h["momentum"], h["dampening"], h["weight_decay"], h["nesterov"], h["maximize"]]
    elif rule.name == "adagrad":
        vals = [h["lr_decay"], h["weight_decay"], h["initial_accumulator_value"], h["eps"],
                h["maximize"]]
    elif rule.name == "rmsprop":
        vals = [h["alpha"], h["eps"], h["weight_decay"], h["momentum"], h["centered"],
                h["maximize"]]
    else:
        vals = [h["betas"][0], h["betas"][1], h["eps"], h["weight_decay"], h["amsgrad"],
                h["maximize"]]
    return np.array([float(v) for v in vals], dtype=np.float64)


def _run_numba(prob: Problem, rule: optim.Rule, x0: np.ndarray, steps: int, tg: np.ndarray,
               sched: Schedule, record_every: int) -> tuple[np.ndarray, ...]:
    from suite.studies import _convergence_numba as K

    pid, data = K.problem_data(prob)
    n, d = x0.shape
    n_rec = (steps // record_every + (1 if steps % record_every else 0) + 1) if record_every \
        else 0
    lr0 = float(rule.hyper["lr"])
    consts = K.step_constants(rule.name, rule.hyper,
                              np.array([sched.lr_at(lr0, t) for t in range(steps)]))
    out_x = np.empty_like(x0)
    out_f = np.empty(n)
    hits = np.full((n, len(tg)), -1, dtype=np.int64)
    best = np.empty(n)
    rec_f = np.empty((n_rec, n))
    rec_x = np.empty((n_rec, n, d))
    K.run_blocks(x0, steps, pid, data, float(prob.f_min), _OPT_CODES[rule.name],
                consts, _hyper_array(rule), tg, record_every, out_x, out_f, hits, best, rec_f,
                rec_x, K.LANES)
    with np.errstate(all="ignore"):
        gn = np.linalg.norm(prob.grad_fn(out_x), axis=-1)
    rec_t = np.array([min(k * record_every, steps) for k in range(n_rec)], dtype=np.int64)
    return out_x, out_f, gn, hits, best, rec_t, rec_f, rec_x


def torch_optim_trajectory(problem: Problem | str, optimizer: str, starts: Any, steps: int,
                           schedule: Schedule | None = None, **hyper: Any) -> np.ndarray:
    """Iterates of torch.optim itself on the same batch (float64), shape (steps+1, n, d)."""
    import torch

    prob = get_problem(problem) if isinstance(problem, str) else problem
    x0 = _check_starts(prob, starts)
    rule = optim.get(optimizer, **hyper)
    # one (n, d) parameter, or one parameter per start for rules that are not elementwise
    xs = [torch.nn.Parameter(torch.tensor(a)) for a in
          ([x0] if rule.spec.elementwise else list(x0))]
    opt = rule.torch_optimizer(xs)
    sched = (schedule or Schedule()).torch_scheduler(opt)
    out = [x0.copy()]
    for _ in range(steps):
        with torch.no_grad():
            g = prob.grad_fn(torch.stack([x.detach() for x in xs]).reshape(x0.shape))
            for i, x in enumerate(xs):
                x.grad = g if rule.spec.elementwise else g[i].clone()
        opt.step()
        sched.step()
        out.append(np.stack([x.detach().numpy() for x in xs]).reshape(x0.shape).copy())
    return np.stack(out)


def grid_starts(problem: Problem, n: int) -> np.ndarray:
    """An n x n grid of starts over the problem's domain (2-D problems)."""
    if problem.dim != 2:
        raise ValueError(f"basin maps need a 2-D problem; {problem.name} has dim {problem.dim}")
    lo, hi = problem.domain
    g = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def random_starts(problem: Problem, n: int, seed: int = 0) -> np.ndarray:
    lo, hi = problem.domain
    return np.random.default_rng(seed).uniform(lo, hi, (n, problem.dim))


def basin_shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Share of starts per reached minimiser (-1 = diverged), per optimizer and lr."""
    keys = [c for c in ("problem", "optimizer", "lr", "backend") if c in frame]
    g = frame.groupby([*keys, "minimizer_index"]).size().rename("starts").reset_index()
    g["share"] = g["starts"] / g.groupby(keys)["starts"].transform("sum")
    return g


def ecdf(frame: pd.DataFrame, targets: Sequence[float] = DEFAULT_TARGETS) -> pd.DataFrame:
    """COCO-style ECDF: fraction of (start, target) pairs solved within k steps."""
    rows = []
    keys = [c for c in ("problem", "optimizer", "lr") if c in frame]
    for key, sub in frame.groupby(keys):
        hits = np.concatenate([sub[target_column(t)].to_numpy() for t in targets
                               if target_column(t) in sub])
        total = len(hits)
        solved = np.sort(hits[~np.isnan(hits)])
        for i, k in enumerate(solved):
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,),
                                    strict=True)), "steps": k, "fraction": (i + 1) / total})
    return pd.DataFrame(rows)


def sensitivity(problem: Problem | str, optimizer: Any, lrs: Sequence[float], n_starts: int,
                steps: int, target: float = 1e-4, seed: int = 0, backend: str | None = "numba",
                **hyper: Any) -> pd.DataFrame:
    """Success rate and median steps to ``target`` per learning rate, over seeded random
    starts (the same starts for every lr). ``optimizer``: anything ``resolve`` accepts;
    ``backend`` applies to reference rules."""
    prob = get_problem(problem) if isinstance(problem, str) else problem
    sub = subject_for(optimizer, backend)
    starts = random_starts(prob, n_starts, seed)
    rows = []
    for lr in lrs:
        df = run(prob, sub, starts, steps, backend=backend, targets=(target,),
                 seed=seed, lr=lr, **hyper)
        hit = df[target_column(target)]
        rows.append({"problem": prob.name, "optimizer": sub.name, "lr": lr,
                     "target": target, "starts": n_starts, "seed": seed,
                     "success_rate": float(hit.notna().mean()),
                     "median_steps": float(hit.median()) if hit.notna().any() else math.nan,
                     "diverged_rate": float(df["diverged"].mean()),
                     "median_final_gap": float(df["final_gap"].median())})
    return pd.DataFrame(rows)
