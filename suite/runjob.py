"""``gradsuite run``: the main job. Every part of the suite, written to its own run directory.

A run directory ``reports/run-<UTC time>/`` holds one Parquet file per frame (CSV as well with
``--csv``), ``options.json`` (the options it was started with), ``provenance.json`` (versions,
commit, CPU, threads, command line, seeds, start and end time) and ``index.html``. Nothing in
an earlier run directory is ever overwritten; every file is written atomically.

Sweeps (cross-validation, gradient statistics) checkpoint every finished cell under
``.cells/<part>`` (a part's cells go in ``.cells/<part>`` or ``.cells/<part>-*``); the
checkpoints are removed once the part's frames are written. ``--resume DIR`` takes the
options ``DIR`` was started with (options given again must agree), keeps the parts whose
frames are on disk, reruns only the unfinished cells of the others, runs the parts added with
``--parts`` and writes a new version of the page (``index-2.html``, ...): an interrupted run
(Ctrl-C, SIGTERM) keeps what it finished, and a finished run can be extended.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from suite.report.load import write_frame, write_json

PartFn = Callable[[argparse.Namespace], dict[str, pd.DataFrame]]


def _part_crossval(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    from suite.optim import crossval
    from suite.optim.configs import configs_for

    configs = [c for c in configs_for(source=None if args.size == "full" else "torch")
               if c.optimizer in args.optimizers]
    if args.size == "quick":
        configs = configs[::4]
    probes = ("scaled", "model")
    dtypes = ("float64", "float32") if args.size == "full" else ("float64",)
    frame = crossval.run_table(configs, probes=probes, dtypes=dtypes, steps=200,
                               jobs=args.jobs, dask=args.dask, progress=True,
                               checkpoint=args.run_dir / ".cells" / "crossval")
    return {"crossval": frame, "crossval_summary": crossval.summary(frame)}


#: a default learning rate per optimizer for the Himmelblau figures (the notes' reference runs)
HIMMELBLAU_LR = {"sgd": 1e-3, "adagrad": 0.1, "rmsprop": 1e-2, "adam": 1e-2, "adamw": 1e-2}
HIMMELBLAU_STARTS = [(0, 0), (1, 0), (-4, 0), (4, 0), (0, 4), (0, -4), (-1, -1), (2, 2),
                     (-5, -5), (5, 5), (-0.270845, -0.923039)]


def _sizes(size: str) -> dict[str, int]:
    return {
        "quick": {"steps": 600, "grid": 40, "sens_starts": 40, "problem_starts": 30},
        "default": {"steps": 3000, "grid": 120, "sens_starts": 200, "problem_starts": 100},
        "full": {"steps": 20000, "grid": 200, "sens_starts": 1000, "problem_starts": 500},
    }[size]


def _part_convergence(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    import numpy as np
    from tqdm.auto import tqdm

    from suite import problems as P
    from suite.studies import convergence as C

    sz = _sizes(args.size)
    him = P.get("himmelblau")
    starts = np.array(HIMMELBLAU_STARTS, dtype=float)
    fixed, traj, basins, sens, others = [], [], [], [], []
    opts = [o for o in args.optimizers if o in HIMMELBLAU_LR]
    for opt in tqdm(opts, desc="convergence: himmelblau", unit="optimizer"):
        lr = HIMMELBLAU_LR[opt]
        s, t = C.run_full(him, opt, starts, sz["steps"], backend="numba",
                          record_every=max(1, sz["steps"] // 300), lr=lr)
        fixed.append(s)
        traj.append(t)
        g = C.run(him, opt, C.grid_starts(him, sz["grid"]), 2000, backend="numba", lr=lr)
        keep = ["problem", "optimizer", "lr", "start_0", "start_1", "minimizer_index",
                "steps_to_target_1e-04", "diverged"]
        basins.append(g[keep])
        lrs = [lr * f for f in (0.1, 0.3, 1, 3, 10, 30)]
        sens.append(C.sensitivity(him, opt, lrs, sz["sens_starts"], sz["steps"],
                                  target=1e-4, seed=args.seed))
    for name in tqdm([n for n in P.NAMES if n in args.problems and n != "himmelblau"],
                     desc="convergence: other problems", unit="problem"):
        prob = P.get(name, dim=2)
        x0 = C.random_starts(prob, sz["problem_starts"], args.seed)
        for opt in opts:
            lr = HIMMELBLAU_LR[opt] if name != "goldstein_price" else HIMMELBLAU_LR[opt] * 1e-3
            others.append(C.run(prob, opt, x0, sz["steps"], backend="numba", lr=lr,
                                seed=args.seed))
    summary = pd.concat(fixed + others, ignore_index=True)
    return {"convergence": summary, "convergence_trajectories": pd.concat(traj),
            "basins": pd.concat(basins, ignore_index=True),
            "basin_shares": C.basin_shares(pd.concat(basins, ignore_index=True)),
            "lr_sensitivity": pd.concat(sens, ignore_index=True),
            "ecdf": C.ecdf(summary.assign(lr=summary["lr"]))}


def _part_gradstats(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    from suite.studies import gradstats as G

    pairs = [("sigmoid", "xavier_normal"), ("tanh", "xavier_normal"), ("tanh", "torch_default"),
             ("relu", "he_normal"), ("relu", "xavier_normal"), ("selu", "lecun_normal"),
             ("gelu", "he_normal"), ("relu", "normal_0.01")]
    depths = {"quick": [5, 10], "default": [10, 30, 50], "full": [10, 30, 50, 100]}[args.size]
    seeds = [args.seed, args.seed + 1] if args.size != "quick" else [args.seed]
    width = 64 if args.size == "quick" else 128
    frames = [G.sweep([a], [i], depths, seeds, width=width, batch=64, jobs=args.jobs,
                      dask=args.dask, progress=True,
                      checkpoint=args.run_dir / ".cells" / f"gradstats-{a}-{i}")
              for a, i in pairs]
    layers = pd.concat(frames, ignore_index=True)
    return {"gradstats": layers, "gradstats_summary": G.summary(layers)}


def _part_speed(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    from suite import bench

    size = {"quick": 1 << 20, "default": 1 << 22, "full": 1 << 24}[args.size]
    return {"roofline": bench.roofline(size=size, threads=bench.sweep_threads(),
                                       optimizers=args.optimizers, progress=True)}


def _part_training(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    from suite.studies import training

    return training.part(args)


PARTS: dict[str, PartFn] = {"crossval": _part_crossval, "convergence": _part_convergence,
                            "gradstats": _part_gradstats, "training": _part_training,
                            "speed": _part_speed}


def register(name: str, fn: PartFn) -> None:
    """Add a part. It runs before ``speed``, which stays last: the roofline's allocator
    setting (every block >= 64 KiB mmap-ed) stays for the rest of the process."""
    speed = PARTS.pop("speed", None)
    PARTS[name] = fn
    if speed is not None and name != "speed":
        PARTS["speed"] = speed


def _part_accuracy(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    from suite.activations import accuracy

    return accuracy.run_part(args.size)


register("accuracy", _part_accuracy)  # activations' ulp errors against mpmath


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(argv: list[str]) -> dict[str, Any]:
    import numba
    import numpy
    import torch

    import suite
    from suite.sweep import set_threads

    try:
        import cpuinfo  # type: ignore[import-untyped]

        cpu = cpuinfo.get_cpu_info().get("brand_raw", platform.processor())
    except Exception:  # noqa: BLE001 - provenance is best effort (py-cpuinfo optional)
        cpu = platform.processor() or platform.machine()
    return {
        "schema_version": 1,
        "gradsuite": suite.__version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__, "numba": numba.__version__, "torch": torch.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "cpu": cpu, "cpu_count": os.cpu_count(),
        "threads": set_threads(1),
        "command": " ".join(["gradsuite", *argv]),
    }


def new_run_dir(root: Path) -> Path:
    """A fresh directory under ``root``; an existing one is never reused."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for k in range(1000):
        path = root / (f"run-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {root}")


DEFAULT_OPTIONS: dict[str, Any] = {
    "size": "default", "seed": 0,
    "optimizers": ["sgd", "adagrad", "rmsprop", "adam", "adamw"],
    "problems": ["himmelblau", "rosenbrock", "beale", "booth", "rastrigin", "ackley",
                 "goldstein_price", "styblinski_tang", "three_hump_camel"],
}
#: options that decide what a part measures: a resumed run must keep them
_FIXED_ON_RESUME = ("size", "seed")


def _recorded_options(run_dir: Path) -> dict[str, Any]:
    """The options a run directory was started with (``options.json``; older runs: what
    ``provenance.json`` recorded), or {} when neither is readable."""
    from suite.report.load import ResultFileError, read_json

    for name in ("options.json", "provenance.json"):
        try:
            doc = read_json(run_dir / name)
        except ResultFileError:
            continue
        if "options" in doc:
            return dict(doc["options"])
        out = {}
        if "size" in doc:
            out["size"] = doc["size"]
        if isinstance(doc.get("seeds"), dict) and "seed" in doc["seeds"]:
            out["seed"] = doc["seeds"]["seed"]
        return out
    return {}


def _resolve_options(args: argparse.Namespace, recorded: dict[str, Any]) -> str | None:
    """Fill options not given on the command line from ``recorded`` (a resumed run), then
    from the defaults; an error message where a given option contradicts the recorded one."""
    for key, default in DEFAULT_OPTIONS.items():
        given = getattr(args, key, None)
        if given is None:
            setattr(args, key, recorded.get(key, default))
        elif key in _FIXED_ON_RESUME and key in recorded and recorded[key] != given:
            return (f"--{key} {given} contradicts the resumed run's --{key} {recorded[key]}; "
                    "a run's parts must share it (start a new run instead)")
    if args.parts is None:
        args.parts = [p for p in recorded.get("parts", PARTS) if p in PARTS] or list(PARTS)
    if getattr(args, "tasks", None) is None and recorded.get("tasks"):
        args.tasks = recorded["tasks"]
    return None


def _remove_checkpoints(run_dir: Path, part: str) -> None:
    """A finished part's cell checkpoints (``.cells/<part>``, ``.cells/<part>-*``)."""
    import shutil

    cells = run_dir / ".cells"
    for d in [cells / part, *cells.glob(f"{part}-*")]:
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(OSError):
        cells.rmdir()  # only when empty


def cmd_run(args: argparse.Namespace) -> int:
    from suite import problems
    from suite.optim import OPTIMIZERS
    from suite.tasks import TASKS

    recorded = _recorded_options(Path(args.resume)) if args.resume else {}
    error = _resolve_options(args, recorded)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dask:
        from suite.sweep import MissingExtraError, require_dask

        try:
            require_dask()
        except MissingExtraError as exc:
            print(f"error: --dask: {exc}", file=sys.stderr)
            return 2
    for what, given, valid in (("part", args.parts, list(PARTS)),
                               ("optimizer", args.optimizers, list(OPTIMIZERS)),
                               ("problem", args.problems, list(problems.NAMES)),
                               ("task", getattr(args, "tasks", None) or [], list(TASKS))):
        unknown = [p for p in given if p not in valid]
        if unknown:
            print(f"unknown {what}(s) {', '.join(unknown)}; expected some of "
                  f"{', '.join(valid)}", file=sys.stderr)
            return 2
    root = Path(args.out)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            if not run_dir.is_dir():
                print(f"--resume {run_dir}: no such run directory", file=sys.stderr)
                return 2
        else:
            run_dir = new_run_dir(root)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        print(f"output directory {root} is not writable: {exc}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if args.argv is None else args.argv
    options = {"size": args.size, "seed": args.seed, "optimizers": list(args.optimizers),
               "problems": list(args.problems), "parts": list(args.parts),
               "tasks": getattr(args, "tasks", None)}
    if not (run_dir / "options.json").exists():
        write_json({"options": options, "command": " ".join(["gradsuite", *argv])},
                   run_dir / "options.json")
    prov = provenance(argv)
    prov["seeds"] = {"seed": args.seed}
    prov["size"] = args.size
    prov["options"] = options
    prov["started"] = dt.datetime.now(dt.UTC).isoformat()
    prov["parts"] = {}
    print(f"run directory: {run_dir}")
    args.run_dir = run_dir
    # in PARTS order whatever the command line's order: speed last, because its memory
    # measurement changes the allocator's policy for the rest of the process
    ran = []
    for name in [p for p in PARTS if p in args.parts]:
        if (run_dir / f"{name}.done").exists():
            print(f"[{name}] done in an earlier attempt; kept")
            continue
        t0 = time.perf_counter()
        frames = PARTS[name](args)
        for fname, frame in frames.items():
            write_frame(frame, run_dir / f"{fname}.parquet")
            if args.csv:
                write_frame(frame, run_dir / f"{fname}.csv")
        write_json({"frames": sorted(frames)}, run_dir / f"{name}.done")
        _remove_checkpoints(run_dir, name)
        ran.append(name)
        prov["parts"][name] = {"seconds": round(time.perf_counter() - t0, 2),
                               "frames": sorted(frames)}
        print(f"[{name}] {time.perf_counter() - t0:.1f} s")
    prov["finished"] = dt.datetime.now(dt.UTC).isoformat()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = "provenance.json" if not (run_dir / "provenance.json").exists() else \
        f"provenance-resumed-{stamp}.json"
    write_json(prov, run_dir / name)
    if not args.no_report:
        from suite.report import html

        if ran or not (run_dir / "index.html").exists():
            page = html.build_report([run_dir], html.next_page(run_dir))
            print(f"report: {page}")
        else:
            print(f"nothing new to run; report: {html.latest_page(run_dir)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from suite.report import html

    dirs = [Path(d) for d in args.runs]
    if not dirs:
        newest = html.newest_run(Path(args.reports_dir))
        if newest is None:
            print(f"no run directory under {args.reports_dir}/; give run directories or run "
                  "`gradsuite run` first", file=sys.stderr)
            return 2
        dirs = [newest]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        print(f"no such run directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    from suite.report.load import ResultFileError, read_asv_results, read_benchmark_json

    extra = {}
    try:
        if args.benchmark_json:
            extra["pytest_benchmark"] = read_benchmark_json(Path(args.benchmark_json))
    except ResultFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asv_dir = Path(args.asv_results)
    if asv_dir.is_dir():
        extra["asv"] = read_asv_results(asv_dir)
    try:
        out = Path(args.out) if args.out else html.next_page(
            dirs[-1], "index" if len(dirs) == 1 else f"compare-{dirs[0].name}")
        page = html.build_report(dirs, out, extra=extra)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {page}")
    return 0


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("run", help="the main job: every study, one run directory, one report",
                       description="Run every study (or --parts) into a new run directory "
                       "reports/run-<UTC time>/ and build its HTML page.")
    p.add_argument("--parts", type=_csv_list, default=None,
                   help=f"comma-separated subset of {', '.join(PARTS)} (default: all; with "
                   "--resume: the resumed run's)")
    p.add_argument("--optimizers", type=_csv_list, default=None,
                   help="comma-separated reference optimizers (default: "
                   f"{','.join(DEFAULT_OPTIONS['optimizers'])})")
    p.add_argument("--size", choices=["quick", "default", "full"], default=None,
                   help="how much to run: quick (~1 min), default (~1.5 min on 2 cores), "
                   "full (much longer)")
    p.add_argument("--problems", type=_csv_list, default=None,
                   help="comma-separated test functions for the convergence part (default: "
                   "all; see `gradsuite list`)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of random starts and network weights (default 0)")
    p.add_argument("--tasks", type=_csv_list, default=None,
                   help="training tasks (default: all of suite.tasks.TASKS)")
    p.add_argument("--out", default="reports",
                   help="parent directory of run directories (default reports)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="complete an interrupted run, or add --parts to a finished one; "
                   "writes a new version of its page")
    p.add_argument("--jobs", type=int, default=2,
                   help="worker processes for sweeps (default 2)")
    p.add_argument("--dask", metavar="local|ADDRESS",
                   help="run sweeps on Dask: 'local' or a scheduler address (needs "
                   "pip install 'gradsuite[dask]')")
    p.add_argument("--csv", action="store_true",
                   help="write every frame as CSV too (Parquet always)")
    p.add_argument("--no-report", action="store_true", help="do not build the HTML page")
    p.set_defaults(func=cmd_run, argv=None)

    p = sub.add_parser("report", help="one HTML page from any set of run directories",
                       description="Build the HTML page of one run, or compare runs (the "
                       "last with the first). With no run directory: the newest run under "
                       "--reports-dir.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="run directories (default: the newest under --reports-dir)")
    p.add_argument("--out", help="the HTML file to write, never overwritten (default: "
                   "index.html, or the next free index-N.html, in the last run directory; "
                   "compare-<first run>.html when comparing)")
    p.add_argument("--reports-dir", default="reports",
                   help="where to look for the newest run (default reports)")
    p.add_argument("--benchmark-json", metavar="FILE",
                   help="a pytest-benchmark JSON file to include")
    p.add_argument("--asv-results", default=".asv/results", metavar="DIR",
                   help="asv results directory to include when present (default .asv/results)")
    p.set_defaults(func=cmd_report)
