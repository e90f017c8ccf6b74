"""Study files: ``gradsuite run --config study.toml`` (read with the standard library's tomllib).

A study file names the optimizers (references and users' own, with import paths and fixed
hyperparameters), the problems, the parts, the seeds and the tuning protocol's grid::

    parts = ["convergence", "speed"]          # default: every part
    problems = ["himmelblau", "rosenbrock"]   # 2-D test functions; default: the usual nine
    seed = 0                                  # first tuning seed
    size = "quick"                            # quick | default | full

    [tuning]                                  # the grid every optimizer gets (all optional)
    lrs = [1e-4, 1e-3, 1e-2, 1e-1]            # or: lr_min, lr_max, per_decade
    seeds = 2                                 # tuning seeds (seed, seed+1, ...)
    fresh_seeds = 2                           # re-runs of the choice on other seeds
    steps = 1500
    starts = 5                                # random starts per seed
    target = 1e-4

    [[optimizer]]
    reference = "adam"                        # a gradsuite reference rule

    [[optimizer]]
    path = "pytorch_optimizer:Lion"           # module:Class or module:factory
    name = "lion"                             # display name (default: the class name)
    reference = "adam"                        # closest reference (conformance, speed)
    elementwise = true                        # promise: coordinates are independent
    hyper = { betas = [0.9, 0.99] }           # fixed hyperparameters (the optimizer's names)
    rename = { lr = "learning_rate" }         # if it does not call it lr
    lrs = [1e-5, 1e-4, 1e-3]                  # its own grid (recorded; not the fair default)

Every mistake is a :class:`StudyFileError` naming the key, the value and what was expected.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOP_KEYS = {"parts", "problems", "seed", "size", "tuning", "optimizer"}
TUNING_KEYS = {"lrs", "lr_min", "lr_max", "per_decade", "seeds", "fresh_seeds", "steps",
               "starts", "target"}
OPTIMIZER_KEYS = {"reference", "path", "name", "elementwise", "hyper", "rename", "lrs",
                  "backend"}
SIZES = ("quick", "default", "full")


class StudyFileError(ValueError):
    """A study file that cannot be used, with the reason."""


@dataclass
class Study:
    """What a study file asks for (None: keep the command line's / the default)."""

    subjects: list[Any] = field(default_factory=list)
    lr_grids: dict[str, tuple[float, ...]] = field(default_factory=dict)
    parts: list[str] | None = None
    problems: list[str] | None = None
    seed: int | None = None
    size: str | None = None
    tuning: dict[str, Any] = field(default_factory=dict)


def _need(cond: bool, where: str, value: Any, expected: str) -> None:
    if not cond:
        raise StudyFileError(f"{where} = {value!r}: expected {expected}")


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise StudyFileError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: "
                             f"{', '.join(sorted(allowed))}")


def _lrs(value: Any, where: str) -> tuple[float, ...]:
    _need(isinstance(value, list) and len(value) > 0 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value),
        where, value, "a non-empty list of positive numbers")
    return tuple(float(v) for v in value)


def _names(value: Any, where: str, valid: list[str]) -> list[str]:
    _need(isinstance(value, list) and all(isinstance(v, str) for v in value), where, value,
          "a list of strings")
    bad = [v for v in value if v not in valid]
    if bad:
        raise StudyFileError(f"{where}: unknown {', '.join(bad)}; expected some of "
                             f"{', '.join(valid)}")
    return list(value)


def parse(data: dict[str, Any], parts: list[str], problems: list[str]) -> Study:
    """A :class:`Study` from a parsed TOML table; ``parts``/``problems``: the valid names."""
    from suite.optim import get_spec
    from suite.studies.tuning import lr_grid
    from suite.subjects import add_cwd_to_path, resolve

    _unknown(data, TOP_KEYS, "study file")
    st = Study()
    if "parts" in data:
        st.parts = _names(data["parts"], "parts", parts)
    if "problems" in data:
        st.problems = _names(data["problems"], "problems", problems)
    if "seed" in data:
        _need(isinstance(data["seed"], int) and not isinstance(data["seed"], bool)
              and data["seed"] >= 0, "seed", data["seed"], "a non-negative integer")
        st.seed = data["seed"]
    if "size" in data:
        _need(data["size"] in SIZES, "size", data["size"], " | ".join(SIZES))
        st.size = data["size"]
    tun = data.get("tuning", {})
    _need(isinstance(tun, dict), "tuning", tun, "a table [tuning]")
    _unknown(tun, TUNING_KEYS, "[tuning]")
    for key in ("seeds", "fresh_seeds", "steps", "starts", "per_decade"):
        if key in tun:
            _need(isinstance(tun[key], int) and not isinstance(tun[key], bool) and tun[key] >= 1,
                  f"tuning.{key}", tun[key], "a positive integer")
            st.tuning[key] = tun[key]
    if "target" in tun:
        _need(isinstance(tun["target"], int | float) and tun["target"] > 0, "tuning.target",
              tun["target"], "a positive number")
        st.tuning["target"] = float(tun["target"])
    if "lrs" in tun:
        if {"lr_min", "lr_max", "per_decade"} & set(tun):
            raise StudyFileError("[tuning]: give either lrs or lr_min/lr_max/per_decade")
        st.tuning["lrs"] = _lrs(tun["lrs"], "tuning.lrs")
    elif {"lr_min", "lr_max"} & set(tun):
        try:
            st.tuning["lrs"] = lr_grid(float(tun.get("lr_min", 1e-4)),
                                       float(tun.get("lr_max", 1.0)),
                                       int(tun.get("per_decade", 2)))
        except (ValueError, TypeError) as exc:
            raise StudyFileError(f"[tuning]: {exc}") from None
    opts = data.get("optimizer", [])
    _need(isinstance(opts, list) and all(isinstance(o, dict) for o in opts), "optimizer",
          opts, "[[optimizer]] tables")
    added = False
    for k, o in enumerate(opts):
        where = f"[[optimizer]] #{k + 1}"
        _unknown(o, OPTIMIZER_KEYS, where)
        if "path" not in o and "reference" not in o:
            raise StudyFileError(f"{where}: needs path = 'module:Class' or reference = 'adam'")
        for key in ("hyper", "rename"):
            _need(isinstance(o.get(key, {}), dict), f"{where}.{key}", o.get(key), "a table")
        hyper = {k2: tuple(v) if isinstance(v, list) else v
                 for k2, v in o.get("hyper", {}).items()}
        if "elementwise" in o:
            _need(isinstance(o["elementwise"], bool), f"{where}.elementwise", o["elementwise"],
                  "true or false")
        try:
            if "reference" in o:
                get_spec(o["reference"])
            if "path" in o:
                _need(isinstance(o["path"], str), f"{where}.path", o["path"],
                      "a string 'module:Class'")
                if not added:
                    add_cwd_to_path()
                    added = True
                sub = resolve(o["path"], name=o.get("name"), reference=o.get("reference"),
                              elementwise=o.get("elementwise"), rename=o.get("rename"),
                              **hyper)
            else:
                sub = resolve(o["reference"], backend=o.get("backend", "numba"),
                              name=o.get("name"), **hyper)
        except (ImportError, ValueError, TypeError) as exc:
            raise StudyFileError(f"{where}: {exc}") from None
        if "lrs" in o:
            st.lr_grids[sub.name] = _lrs(o["lrs"], f"{where}.lrs")
        st.subjects.append(sub)
    names = [s.name for s in st.subjects]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise StudyFileError(f"[[optimizer]]: several named {', '.join(dup)}; give each a "
                             "name")
    return st


def load(path: Path | str, parts: list[str], problems: list[str]) -> Study:
    """Read and validate a study file (see the module docstring)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudyFileError(f"cannot read study file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{p} is not valid TOML: {exc}") from None
    try:
        return parse(data, parts, problems)
    except StudyFileError as exc:
        raise StudyFileError(f"{p}: {exc}") from None


def apply_to_args(args: Any, parts: list[str], problems: list[str]) -> str | None:
    """Fill ``args.subjects``, ``args.lr_grids`` and ``args.tuning`` for ``gradsuite run``
    from ``--optimizers`` (reference names), ``--optimizer module:Class`` (repeatable) and
    ``--config study.toml`` (which also sets parts, problems, seed and size). Returns an
    error message, or None."""
    from suite.subjects import add_cwd_to_path, resolve

    study = Study()
    if getattr(args, "config", None):
        try:
            study = load(args.config, parts, problems)
        except StudyFileError as exc:
            return str(exc)
        for key in ("parts", "problems", "seed", "size"):
            if getattr(study, key) is not None:
                setattr(args, key, getattr(study, key))
    subjects = []
    refs_in_file = {s.reference for s in study.subjects if s.kind == "reference"}
    if not refs_in_file:  # a study file that names no reference keeps --optimizers'
        subjects += [resolve(n, backend="numba") for n in args.optimizers]
    subjects += study.subjects
    paths = list(getattr(args, "optimizer", None) or [])
    if paths:
        add_cwd_to_path()
    for path in paths:
        try:
            subjects.append(resolve(path))
        except (ImportError, ValueError, TypeError) as exc:
            return f"--optimizer {path}: {exc}"
    names = [s.name for s in subjects]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return f"several optimizers are named {', '.join(dup)}; name them in a study file"
    args.subjects = subjects
    args.optimizers = [s.reference for s in subjects if s.kind == "reference"]
    args.lr_grids = study.lr_grids
    args.tuning = study.tuning
    return None
