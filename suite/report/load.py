"""The only module that reads and writes result files.

Writes are atomic (a temporary file in the same directory, then ``os.replace``) and never
replace an existing file: a run directory's frames are written once. Reads name the file that
is corrupt or from an unknown schema and carry on with the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1


class ResultFileError(ValueError):
    """A results file that cannot be read; the message names the file and the reason."""


def _atomic_write(path: Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists already; results are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; not overwritten")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` to ``path`` (.parquet or .csv) atomically; never overwrite."""
    p = Path(path)
    if p.suffix == ".parquet":
        return _atomic_write(p, lambda t: frame.to_parquet(t, index=False))
    if p.suffix == ".csv":
        return _atomic_write(p, lambda t: frame.to_csv(t, index=False))
    raise ValueError(f"unsupported results format {p.suffix!r} for {p}; use .parquet or .csv")


def write_json(obj: Any, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return _atomic_write(Path(path), lambda t: t.write_text(text), overwrite=overwrite)


def read_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame written by :func:`write_frame`; ResultFileError names a bad file."""
    p = Path(path)
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p)
        if p.suffix == ".csv":
            return pd.read_csv(p)
    except Exception as exc:
        raise ResultFileError(f"{p}: cannot be read ({type(exc).__name__}: {exc})") from exc
    raise ResultFileError(f"{p}: unsupported format {p.suffix!r}")


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{p}: cannot be read ({type(exc).__name__}: {exc})") from exc


def read_benchmark_json(path: Path) -> pd.DataFrame:
    """A pytest-benchmark JSON file as a tidy frame (one row per benchmark, stats as columns)."""
    doc = read_json(path)
    try:
        rows = []
        for b in doc["benchmarks"]:
            stats = {k: v for k, v in b["stats"].items() if k != "data"}
            rows.append({"group": b.get("group"), "name": b["name"], **stats,
                         **{f"extra_{k}": v for k, v in (b.get("extra_info") or {}).items()}})
        frame = pd.DataFrame(rows)
        frame["datetime"] = doc.get("datetime")
        return frame
    except (KeyError, TypeError) as exc:
        raise ResultFileError(f"{path}: not a pytest-benchmark file ({exc!r})") from exc


def read_asv_results(results_dir: Path) -> pd.DataFrame:
    """asv's results (``results_dir/<machine>/<commit>-<env>.json``) as a tidy frame: one row
    per machine x commit x benchmark x parameter combination. Unreadable files are skipped
    with their names in the ``problems`` attribute of the frame."""
    import itertools

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for f in sorted(Path(results_dir).glob("*/*.json")):
        if f.name in ("machine.json", "benchmarks.json"):
            continue
        try:
            doc = json.loads(f.read_text())
            cols = doc["result_columns"]
            for name, entry in doc["results"].items():
                rec = dict(zip(cols, entry, strict=False))
                values = rec.get("result")
                params = rec.get("params") or []
                combos = list(itertools.product(*params)) if params else [()]
                if not isinstance(values, list):
                    values = [values]
                for combo, value in zip(combos, values, strict=False):
                    rows.append({"machine": f.parent.name, "commit": doc["commit_hash"][:8],
                                 "date": pd.to_datetime(doc["date"], unit="ms"),
                                 "benchmark": name, "params": ", ".join(combo),
                                 "value": value})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{f}: cannot be read ({type(exc).__name__}: {exc})")
    frame = pd.DataFrame(rows)
    frame.attrs["problems"] = problems
    return frame
