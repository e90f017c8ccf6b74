"""Mutation testing of gradsuite's core modules with mutmut, one module at a time.

    .venv/bin/python tests/mutation.py [MODULE ...] [--budget SECONDS] [--jobs N] [--out DIR]
                                       [--resume] [--tests FILE ...] [--mutants GLOB ...]

For each module (default: all of :data:`MODULES`), a copy of the project is made in
``DIR/<module>`` (default ``mutation/``, git-ignored) whose pyproject.toml tells mutmut to mutate
that module only and to run the module's own test files; ``mutmut run`` then gets at most
``--budget`` seconds (default 900). Mutants not tried within the budget are counted as
"not checked", never as killed. ``--resume`` keeps a module's copy from an earlier run and
lets mutmut go on where it stopped (mutmut keeps each verdict in ``mutants/**/*.meta`` and
skips decided mutants): each call stays within its budget and the checked part grows from
call to call. ``--mutants`` hands mutmut name globs (one function's mutants); ``--tests`` runs
one module's mutants against other test files, in a copy of its own (``DIR/<module>~<files>``)
so the whole selection's copy and verdicts stay: a function whose surviving mutants each cost
a slow selection is first run against its fast unit tests, and only the survivors are then run
against the whole selection (a test file added cannot revive a killed mutant). The copy is the code of the first run: start afresh (no ``--resume``) after
changing the module or its tests. Prints, and writes to ``DIR/scores.json``, per module: mutants
generated, killed (including by timeout), survived, not checked, and the score
killed / (killed + survived). Surviving mutants: ``cd DIR/<module> && mutmut show NAME``.

mutmut forks one process per mutant from a parent that has already imported torch, Numba and
the tests, and runs only the tests that call the mutated function, which is what makes this
usable on 2 cores. Modules compiled by Numba (``@njit`` kernels) are not listed: mutmut's
trampolines cannot run inside compiled code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: module -> the test files that exercise it (what mutmut runs against its mutants)
MODULES: dict[str, list[str]] = {
    "suite/losses.py": ["tests/test_activations_losses.py", "tests/test_metrics_truth.py"],
    "suite/optim/numpy_ref.py": ["tests/test_optim_numpy_ref_units.py",
                                 "tests/test_optim_state.py", "tests/test_optim_crossval.py"],
    "suite/optim/spec.py": ["tests/test_optim_spec.py", "tests/test_metrics_truth.py"],
    "suite/studies/gradstats.py": ["tests/test_gradstats.py", "tests/test_metrics_truth.py",
                                   "tests/test_gradstats_inputs.py"],
    "suite/studies/convergence.py": ["tests/test_convergence.py",
                                     "tests/test_convergence_outputs.py",
                                     "tests/test_convergence_subjects.py",
                                     "tests/test_convergence_metrics.py",
                                     "tests/test_convergence_user_runs.py"],
    "suite/activations/__init__.py": ["tests/test_activations_losses.py",
                                      "tests/test_metrics_truth.py",
                                      "tests/test_activations_units.py"],
    "suite/conformance/optimizers.py": ["tests/test_conformance_units.py",
                                        "tests/test_conformance.py", "tests/test_pinned.py",
                                        "tests/test_conformance_users.py",
                                        "tests/test_optim_conformance_more_rules.py",
                                        "tests/test_optim_pytorch_optimizer_more_rules.py"],
    "suite/optim/crossval.py": ["tests/test_optim_crossval.py", "tests/test_pinned.py",
                                "tests/test_optim_crossval_units.py"],
    # (test_report_cli.py reads README.md, which the mutants' copy of the project lacks)
    "suite/report/sections.py": ["tests/test_report_sections.py", "tests/test_report_figures.py",
                                 "tests/test_report_values.py", "tests/test_report_summary.py"],
    "suite/report/tables.py": ["tests/test_report_values.py", "tests/test_report_summary.py"],
    "suite/report/summary.py": ["tests/test_report_summary.py"],
    "suite/activations/accuracy.py": ["tests/test_activation_accuracy_units.py",
                                      "tests/test_activation_accuracy.py"],
    "suite/conformance/activations.py": ["tests/test_conformance_activations.py",
                                         "tests/test_conformance_activations_units.py"],
}


def _config(module: str, tests: list[str]) -> str:
    quoted = ", ".join(f'"{t}"' for t in tests)
    return (f'\n[tool.mutmut]\nsource_paths = ["suite"]\nonly_mutate = ["{module}"]\n'
            f"pytest_add_cli_args_test_selection = [{quoted}]\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly"]\n'
            "timeout_multiplier = 5.0\n")


def _prepare(module: str, tests: list[str], work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "suite", work / "suite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (work / "pyproject.toml").write_text(text + _config(module, tests), encoding="utf-8")


# mutmut's exit codes per mutant (mutmut/stats.py); "no tests" (no test reaches the mutated
# function) counts as a survivor: it is a gap in the tests like any other
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests",
           # -15: SIGTERM, e.g. OpenMP ending a forked child: neither killed nor survived
           34: "skipped", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
           255: "timeout", None: "not_checked"}


def _meta(meta: Path) -> dict:
    """One of mutmut's metadata files; a clear error where it is not whole (mutmut writes them
    in place, so a run stopped while writing one leaves it cut short)."""
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"mutmut's metadata file {meta} cannot be read ({e}): a run stopped "
                         "while writing it? Run this module again without --resume") from e
    if not isinstance(data, dict):
        raise TypeError(f"mutmut's metadata file {meta} holds {type(data).__name__}, "
                        "expected a JSON object; run this module again without --resume")
    return data


def _counts(work: Path) -> dict[str, int]:
    """Outcome per mutant from mutmut's own metadata (mutants/**/*.meta)."""
    out = dict.fromkeys(("mutants", "killed", "timeout", "survived", "no_tests", "skipped",
                         "not_checked", "suspicious"), 0)
    for meta in (work / "mutants").rglob("*.meta"):
        data = _meta(meta)
        for code in data.get("exit_code_by_key", {}).values():
            out["mutants"] += 1
            out[_STATUS.get(code, "suspicious")] += 1
    return out


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``proc``, then SIGKILL to what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _resumable(module: str, tests: list[str], work: Path) -> bool:
    """Whether ``work`` is a copy made for this module and these tests, with mutmut's
    verdicts in it."""
    try:
        text = (work / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    if not (text.endswith(_config(module, tests)) and (work / "mutants").is_dir()):
        return False
    for meta in (work / "mutants").rglob("*.meta"):
        _meta(meta)  # a cut-short file is an error, not a fresh start that loses the rest
    return True


def _workdir(module: str, tests: list[str] | None, out: Path) -> Path:
    """``out/<module>`` for the module's own tests; other tests get a copy of their own
    (``out/<module>~<test file stems>``), so that a run on a few fast test files never
    replaces the copy, and the verdicts, of the module's whole selection."""
    name = module.removeprefix("suite/").removesuffix(".py").replace("/", ".")
    if tests is None or tests == MODULES[module]:
        return out / name
    return out / (name + "~" + "+".join(Path(t).stem for t in tests))


def run_module(module: str, budget: float, jobs: int, out: Path,
               resume: bool = False, tests: list[str] | None = None,
               mutants: list[str] | None = None) -> dict[str, object]:
    """One mutmut run on ``module``: against ``tests`` (default: its entry in
    :data:`MODULES`), on the mutants whose names match the globs ``mutants`` (default: all;
    e.g. ``suite.conformance.optimizers.x_check_optimizer__mutmut_*``)."""
    selection = MODULES[module] if tests is None else list(tests)
    missing = [t for t in selection if not (ROOT / t).is_file()]
    if missing:
        raise FileNotFoundError(f"test file(s) {', '.join(missing)} not found under {ROOT}")
    work = _workdir(module, selection, out)
    resumed = resume and _resumable(module, selection, work)
    if resume and not resumed:
        print(f"{module}: no earlier run in {work} to resume (or made for other tests); "
              "starting afresh", flush=True)
    if not resumed:
        _prepare(module, selection, work)
    # mutmut forks a child per mutant from a parent that has run Numba's parallel kernels:
    # the default OpenMP threading layer then ends the child with SIGTERM ("fork() called
    # from a process already using GNU OpenMP"), whatever the tests say; workqueue survives
    # fork
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "NUMBA_THREADING_LAYER": "workqueue"}
    mutmut = str(Path(sys.executable).parent / "mutmut")
    t0 = time.monotonic()
    with (work / "mutmut.log").open("a" if resumed else "w", encoding="utf-8") as log:
        # its own process group: at the budget, mutmut and the children it forked stop
        # together (a child left running would still be testing when a resumed run starts)
        proc = subprocess.Popen([mutmut, "run", "--max-children", str(jobs), *(mutants or [])],
                                cwd=work,
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=budget)
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
            _stop_group(proc)
    c = _counts(work)
    killed = c["killed"] + c["timeout"]
    checked = killed + c["survived"] + c["no_tests"]
    return {"module": module, "tests": selection, "mutants_selected": mutants or ["*"], **c,
            "finished": finished, "resumed": resumed,
            "seconds": round(time.monotonic() - t0),
            "score": round(killed / checked, 4) if checked else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help=f"default: {' '.join(MODULES)}")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds per module")
    ap.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    ap.add_argument("--out", type=Path, default=ROOT / "mutation")
    ap.add_argument("--resume", action="store_true",
                    help="go on from an earlier run's verdicts (same module and tests)")
    ap.add_argument("--tests", nargs="+", metavar="FILE",
                    help="run the mutants against these test files instead of the module's "
                         "own (one module only; a copy of its own, out/<module>~<files>)")
    ap.add_argument("--mutants", nargs="+", metavar="GLOB",
                    help="only the mutants whose names match (mutmut's names, e.g. "
                         "'suite.losses.x__bce__mutmut_*')")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {', '.join(unknown)}; expected some of {', '.join(MODULES)}")
    if (args.tests or args.mutants) and len(args.modules) != 1:
        ap.error("--tests and --mutants need exactly one module")
    rows = []
    for module in args.modules or list(MODULES):
        row = run_module(module, args.budget, args.jobs, args.out, args.resume, args.tests,
                         args.mutants)
        rows.append(row)
        print(f"{module}: score {row['score']} ({row['killed']} killed, {row['timeout']} "
              f"timeout, {row['survived']} survived, {row['no_tests']} without tests, "
              f"{row['not_checked']} not checked of "
              f"{row['mutants']}; {row['seconds']} s{'' if row['finished'] else ', budget hit'}"
              f"{', resumed' if row['resumed'] else ''})",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    scores = args.out / "scores.json"
    old = json.loads(scores.read_text(encoding="utf-8")) if scores.exists() else {}
    # a run on other tests than the module's own is kept under its own key
    old.update({r["module"] if r["tests"] == MODULES[r["module"]]
                else f"{r['module']} [{', '.join(r['tests'])}]": r for r in rows})
    tmp = scores.with_suffix(".tmp")
    tmp.write_text(json.dumps(old, indent=1), encoding="utf-8")
    tmp.replace(scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
