"""tests/mutation.py's bookkeeping, with a stand-in for mutmut (a script that writes mutmut's
metadata files the way mutmut does): counts per outcome, --resume keeping the verdicts of an
earlier run, the budget stopping mutmut's children too, and cut-short metadata files."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from tests import mutation

MODULE = "suite/report/summary.py"

# The stand-in: decides the next undecided mutant per call of `run` (as mutmut skips decided
# ones), keeps a log of the names it decided, and with SLOW set forks a child that sleeps and
# then writes a file, and sleeps itself (a run that hits the budget).
FAKE = r'''#!{python}
import json, os, sys, time
from pathlib import Path
meta = Path("mutants/suite/report/summary.py.meta")
if not meta.exists():
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({{"exit_code_by_key": {{f"m{{i}}": None for i in range(4)}}}}))
with open("argv.log", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
data = json.loads(meta.read_text())
codes = data["exit_code_by_key"]
todo = [k for k, v in codes.items() if v is None]
if todo:
    codes[todo[0]] = {{"m0": 1, "m1": 0, "m2": 33, "m3": 1}}[todo[0]]
    meta.write_text(json.dumps(data))
    with open("decided.log", "a") as f:
        f.write(todo[0] + "\n")
if os.environ.get("SLOW"):
    if os.fork() == 0:
        time.sleep(3)
        Path("child_finished").write_text("yes")
        os._exit(0)
    time.sleep(60)
'''


@pytest.fixture
def fake_mutmut(tmp_path, monkeypatch):
    """Point run_module at the stand-in (it looks for mutmut beside sys.executable)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "mutmut"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(mutation.sys, "executable", str(bindir / "python"))
    monkeypatch.setattr(mutation, "ROOT", Path(__file__).resolve().parent.parent)
    return tmp_path / "out"


def _decided(out: Path) -> list[str]:
    return (out / "report.summary" / "decided.log").read_text().split()


def test_counts_and_score_from_the_metadata(fake_mutmut):
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut)
    assert row["finished"]
    assert not row["resumed"]
    # one call decides m0 (killed); the other three stay undecided
    assert (row["mutants"], row["killed"], row["not_checked"]) == (4, 1, 3)
    assert row["score"] == 1.0


def test_resume_goes_on_from_the_earlier_verdicts(fake_mutmut):
    mutation.run_module(MODULE, 30, 1, fake_mutmut)
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut, resume=True)
    assert row["resumed"]
    assert _decided(fake_mutmut) == ["m0", "m1"]  # m0 kept, not decided again
    assert (row["killed"], row["survived"], row["not_checked"]) == (1, 1, 2)
    assert row["score"] == 0.5
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut, resume=True)
    assert (row["no_tests"], row["not_checked"]) == (1, 1)  # "no tests" is a survivor
    assert row["score"] == 0.3333  # rounded to 4 places
    # without --resume the copy is made afresh and the verdicts are gone
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut)
    assert not row["resumed"]
    assert _decided(fake_mutmut) == ["m0"]
    assert (row["killed"], row["not_checked"]) == (1, 3)


def test_resume_needs_a_copy_made_for_the_same_tests(fake_mutmut, monkeypatch, capsys):
    mutation.run_module(MODULE, 30, 1, fake_mutmut)
    monkeypatch.setitem(mutation.MODULES, MODULE, ["tests/test_report_values.py"])
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut, resume=True)
    assert not row["resumed"]
    assert "starting afresh" in capsys.readouterr().out
    assert _decided(fake_mutmut) == ["m0"]
    # nothing to resume at all
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut / "elsewhere", resume=True)
    assert not row["resumed"]


def test_cut_short_metadata_is_an_error_that_keeps_the_files(fake_mutmut):
    mutation.run_module(MODULE, 30, 1, fake_mutmut)
    meta = fake_mutmut / "report.summary" / "mutants" / "suite" / "report" / "summary.py.meta"
    whole = meta.read_text()
    meta.write_text(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"summary\.py\.meta cannot be read .*without --resume"):
        mutation.run_module(MODULE, 30, 1, fake_mutmut, resume=True)
    assert meta.read_text() == whole[: len(whole) // 2]  # not replaced by a fresh copy
    meta.write_text("[1, 2]")
    with pytest.raises(TypeError, match="holds list, expected a JSON object"):
        mutation.run_module(MODULE, 30, 1, fake_mutmut, resume=True)


def test_budget_stops_mutmut_and_its_children(fake_mutmut, monkeypatch):
    monkeypatch.setenv("SLOW", "1")
    t0 = time.monotonic()
    row = mutation.run_module(MODULE, 1.0, 1, fake_mutmut)
    assert not row["finished"]
    assert time.monotonic() - t0 < 30  # the parent's 60 s sleep did not run out
    time.sleep(4)  # the child would have written its file after 3 s
    assert not (fake_mutmut / "report.summary" / "child_finished").exists()
    assert row["killed"] == 1  # the verdict written before the budget counts


def test_main_writes_scores_atomically_and_keeps_other_modules(fake_mutmut, capsys):
    scores = fake_mutmut / "scores.json"
    fake_mutmut.mkdir(parents=True)
    scores.write_text(json.dumps({"suite/losses.py": {"score": 0.9}}))
    assert mutation.main([MODULE, "--budget", "30", "--jobs", "1", "--out",
                          str(fake_mutmut)]) == 0
    data = json.loads(scores.read_text())
    assert data["suite/losses.py"] == {"score": 0.9}
    assert data[MODULE]["killed"] == 1
    assert not list(fake_mutmut.glob("*.tmp"))
    assert f"{MODULE}: score 1.0 (1 killed" in capsys.readouterr().out
    assert os.path.exists(fake_mutmut / "report.summary" / "pyproject.toml")


def test_other_tests_get_a_copy_of_their_own_and_keep_the_whole_selections(fake_mutmut, capsys):
    """--tests: a run against a fast test file must not replace the copy (and verdicts) of the
    module's own selection, and its score is kept under its own key; --mutants reaches mutmut
    as name globs."""
    mutation.run_module(MODULE, 30, 1, fake_mutmut)
    own = fake_mutmut / "report.summary"
    assert (own / "pyproject.toml").read_text().endswith(
        mutation._config(MODULE, mutation.MODULES[MODULE]))
    glob = "suite.report.summary.x_f__mutmut_*"
    assert mutation.main([MODULE, "--budget", "30", "--jobs", "1", "--out", str(fake_mutmut),
                          "--tests", "tests/test_report_values.py", "--mutants", glob]) == 0
    other = fake_mutmut / "report.summary~test_report_values"
    assert (other / "pyproject.toml").read_text().endswith(
        mutation._config(MODULE, ["tests/test_report_values.py"]))
    assert (other / "argv.log").read_text().split() == ["run", "--max-children", "1", glob]
    assert (own / "argv.log").read_text().split() == ["run", "--max-children", "1"]
    assert _decided(fake_mutmut) == ["m0"]  # the own copy untouched
    data = json.loads((fake_mutmut / "scores.json").read_text())
    row = data[f"{MODULE} [tests/test_report_values.py]"]
    assert (row["tests"], row["mutants_selected"]) == (["tests/test_report_values.py"], [glob])
    assert MODULE not in data  # the own selection's row is not replaced by this one
    # a resume of the own copy still finds its verdicts
    row = mutation.run_module(MODULE, 30, 1, fake_mutmut, resume=True)
    assert row["resumed"]
    assert _decided(fake_mutmut) == ["m0", "m1"]
    # the module's own test files named explicitly are the module's own copy
    assert mutation._workdir(MODULE, list(mutation.MODULES[MODULE]), fake_mutmut) == own


def test_options_that_need_one_module_and_missing_test_files(fake_mutmut, capsys):
    with pytest.raises(SystemExit):
        mutation.main(["--tests", "tests/test_report_values.py"])
    assert "--tests and --mutants need exactly one module" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"test file\(s\) tests/test_nope\.py not found"):
        mutation.run_module(MODULE, 30, 1, fake_mutmut, tests=["tests/test_nope.py"])
    assert not fake_mutmut.exists()  # nothing made, nothing removed
