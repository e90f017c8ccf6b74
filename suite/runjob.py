"""``gradsuite run``: the main job. Every part of the suite, written to its own run directory.

A run directory ``reports/run-<UTC time>/`` holds one Parquet (and CSV) file per frame,
``provenance.json`` (versions, commit, CPU, threads, command line, seeds, start and end time) and
``index.html``. Nothing in an earlier run directory is ever touched; every file is written
atomically; a part whose frames are on disk is skipped when the run is resumed with
``--resume DIR``, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
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
    probes = ("scaled", "model")
    dtypes = ("float64", "float32")
    frame = crossval.run_table(configs, probes=probes, dtypes=dtypes, steps=200,
                               jobs=args.jobs, dask=args.dask, progress=True)
    return {"crossval": frame, "crossval_summary": crossval.summary(frame)}


PARTS: dict[str, PartFn] = {"crossval": _part_crossval}


def register(name: str, fn: PartFn) -> None:
    PARTS[name] = fn


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
    except Exception:
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


def cmd_run(args: argparse.Namespace) -> int:
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        print(f"unknown part(s) {', '.join(unknown)}; expected some of {', '.join(PARTS)}",
              file=sys.stderr)
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
    prov = provenance(argv)
    prov["seeds"] = {"default": 0}
    prov["started"] = dt.datetime.now(dt.UTC).isoformat()
    prov["parts"] = {}
    print(f"run directory: {run_dir}")
    for name in args.parts:
        if (run_dir / f"{name}.done").exists():
            print(f"[{name}] done in an earlier attempt; kept")
            continue
        t0 = time.perf_counter()
        frames = PARTS[name](args)
        for fname, frame in frames.items():
            write_frame(frame, run_dir / f"{fname}.parquet")
            write_frame(frame, run_dir / f"{fname}.csv")
        write_json({"frames": sorted(frames)}, run_dir / f"{name}.done")
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

        page = html.build_report([run_dir], run_dir / "index.html")
        print(f"report: {page}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("run", help="the main job: every study, one run directory, one report")
    p.add_argument("--parts", type=lambda s: [x for x in s.split(",") if x],
                   default=list(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    p.add_argument("--optimizers", type=lambda s: s.split(","),
                   default=["sgd", "adagrad", "rmsprop", "adam", "adamw"])
    p.add_argument("--size", choices=["quick", "default", "full"], default="default")
    p.add_argument("--out", default="reports", help="parent directory of run directories")
    p.add_argument("--resume", help="an interrupted run directory to complete")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--dask", help="run sweeps on Dask: 'local' or a scheduler address")
    p.add_argument("--no-report", action="store_true")
    p.set_defaults(func=cmd_run, argv=None)
