"""The report and the CLI as a new user meets them: comparison of runs, resume, interruption,
defaults, help, files."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite.cli import build_parser, main
from suite.report import html, sections
from suite.report.load import read_frame, write_frame

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["run", "--size", "quick", "--parts", "speed", "--optimizers", "sgd", "--jobs", "1"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A quick run of the speed part for one optimizer (a few seconds), plus a synthetic
    frame of gradient statistics (deterministic numbers, as the real part's are)."""
    out = tmp_path_factory.mktemp("reports")
    assert main([*SMALL, "--out", str(out)]) == 0
    (d,) = out.glob("run-*")
    write_frame(pd.DataFrame({"activation": ["tanh", "relu", "tanh", "relu"],
                              "init": "he_normal", "depth": [10, 10, 30, 30], "width": 64,
                              "batch": 64, "seed": 0, "R_z": [0.1, -0.2, 0.3, -0.6],
                              "verdict": "stable"}), d / "gradstats_summary.parquet")
    return d


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for page in dst.glob("*.html"):
        page.unlink()
    return dst


def _rewrite(run: Path, name: str, frame: pd.DataFrame) -> None:
    (run / f"{name}.parquet").unlink()
    write_frame(frame, run / f"{name}.parquet")


def _changes(*runs: Path) -> str:
    frames, _, problems = html.load_runs(runs)
    assert problems == []
    return sections.comparison_section(frames).html


# ---------------------------------------------------------------------------------------------
# comparing runs

def test_identical_runs_flag_nothing(small_run, tmp_path):
    other = _copy_run(small_run, tmp_path / "run-copy")
    page = html.build_report([small_run, other], tmp_path / "cmp.html").read_text()
    assert "no change beyond the measured spread" in page
    assert "<b>0 changed</b>" in page
    changes = _changes(small_run, other)  # the comparison section alone: other sections may
    # explain "faster" in their text
    assert "slower" not in changes
    assert "faster" not in changes


def test_a_change_is_flagged_only_beyond_the_measured_spread(small_run, tmp_path):
    roof = read_frame(small_run / "roofline.parquet")
    assert "spread" in roof.columns  # best time over rounds and median / best - 1
    assert (roof["spread"] >= 0).all()
    # controlled timings: every step's best 1 ms, its median 5 % above
    quiet = roof.assign(seconds=1e-3, spread=0.05)
    base = _copy_run(small_run, tmp_path / "run-base")
    _rewrite(base, "roofline", quiet)

    def variant(name, **changes):
        run = _copy_run(base, tmp_path / name)
        r = quiet.copy()
        for col, value in changes.items():
            r.loc[r.index[0], col] = value
        _rewrite(run, "roofline", r)
        return _changes(base, run)

    slow = variant("run-slow", seconds=3e-3)
    assert "<b>1 changed</b>" in slow
    assert slow.count(">slower<") == 1
    fast = variant("run-fast", seconds=0.5e-3)
    assert fast.count(">faster<") == 1
    # beyond ±25 % but the ranges best..median overlap: within the measured spread
    near = variant("run-near", seconds=0.78e-3, spread=0.4)
    assert "<b>0 changed</b>" in near
    assert "faster" not in near
    # 3x slower, but its median was twice its best: too noisy to judge, and said so
    noisy = variant("run-noisy", seconds=3e-3, spread=1.0)
    assert "<b>0 changed</b>" in noisy
    assert noisy.count(">too noisy<") == 1
    assert "1 of " in noisy


def test_runs_of_different_sizes_compare_what_is_comparable(small_run, tmp_path):
    """A second run at other settings: no crash, equal settings compared, the rest named."""
    big = _copy_run(small_run, tmp_path / "run-big")
    roof = read_frame(small_run / "roofline.parquet")
    _rewrite(big, "roofline", roof.assign(size=roof["size"] * 4))
    gs = read_frame(small_run / "gradstats_summary.parquet")
    _rewrite(big, "gradstats_summary",  # the same networks, plus wider ones
             pd.concat([gs, gs.assign(width=gs["width"] * 2)], ignore_index=True))
    # basins on two different grids (the 'cannot reshape' crash of square-grid figures)
    rng = np.random.default_rng(0)

    def grid(n):
        g = np.linspace(-5, 5, n)
        xx, yy = np.meshgrid(g, g)
        return pd.DataFrame({"problem": "himmelblau", "optimizer": "sgd", "lr": 1e-3,
                             "start_0": xx.ravel(), "start_1": yy.ravel(),
                             "minimizer_index": rng.integers(0, 4, n * n),
                             "steps_to_target_1e-04": 10.0, "diverged": False})

    small = _copy_run(small_run, tmp_path / "run-small")
    write_frame(grid(9), small / "basins.parquet")
    write_frame(grid(12), big / "basins.parquet")
    changes = _changes(small, big)
    assert "Speed</h3><p>not comparable: no measurement at equal settings (size" in changes
    n = len(gs)
    assert f"{n} compared at equal settings, <b>0 changed</b>" in changes
    assert f"{n} rows had no counterpart in the other run (width" in changes
    assert "Basins: minimum reached per grid start" in changes
    frames, _, _ = html.load_runs([small, big])
    from suite.report import figures as F

    for run in (small.name, big.name):  # either grid draws
        F.basin_maps(frames["basins"][frames["basins"]["run"] == run])


def test_comparison_reports_a_real_change_in_a_deterministic_frame(small_run, tmp_path):
    other = _copy_run(small_run, tmp_path / "run-other")
    gs = read_frame(small_run / "gradstats_summary.parquet")
    gs.loc[0, "R_z"] += 0.5
    _rewrite(other, "gradstats_summary", gs)
    changes = _changes(small_run, other)
    assert "Gradient statistics: R_z</h3><p>" in changes
    assert "<b>1 changed</b>" in changes


# ---------------------------------------------------------------------------------------------
# page structure

def test_first_screen_says_what_ran_and_the_verdicts(small_run):
    page = html.latest_page(small_run).read_text()
    first = page[: page.index("<section")]
    assert "What was run" in first
    assert "<td>quick</td><td>speed (" in first
    assert "Verdicts and contents" in first
    for key in ("speed", "provenance"):
        assert f"href='#{key}'" in first
        assert f"<section id='{key}'>" in page
    assert re.search(r"href='#speed'>Speed</a></td><td class='info'>fastest of ours vs "
                     r"torch.optim's fastest: sgd [\d.]+×", first)
    assert "<details" in page  # long tables fold away (here: the provenance)


def test_a_registered_section_slots_in(small_run, tmp_path, monkeypatch):
    monkeypatch.setattr(sections, "SECTIONS", list(sections.SECTIONS))

    def mine(frames):
        return sections.Content("<p>body of mine</p>", summary="mine: all good", verdict="pass")

    sections.register("mine", "My part", mine)
    sections.SECTIONS.append(("A tuple section", lambda frames: "<p>tuple body</p>"))
    page = html.build_report([small_run], tmp_path / "p.html").read_text()
    assert "<a href='#mine'>My part</a></td><td class='pass'>mine: all good</td>" in page
    assert "<section id='mine'><h2>My part</h2>" in page
    assert "<section id='a-tuple-section'>" in page
    keys = [s.key for s in sections.registered()]
    assert keys.index("mine") < keys.index("changes")


def test_basin_share_table_is_labelled_like_the_figure():
    shares = pd.DataFrame({"optimizer": ["sgd"] * 4, "lr": 1e-3,
                           "minimizer_index": [0, 1, 2, 3], "share": [0.4, 0.3, 0.2, 0.1]})
    t = sections.basin_share_table(shares)
    assert list(t.columns) == ["optimizer", "lr", "A", "B", "C", "D"]
    assert t.loc[0, ["A", "B", "C", "D"]].tolist() == [0.4, 0.3, 0.2, 0.1]
    div = pd.concat([shares.assign(share=shares["share"] * 0.5),
                     pd.DataFrame({"optimizer": ["sgd"], "lr": [1e-3], "minimizer_index": [-1],
                                   "share": [0.5]})])
    t = sections.basin_share_table(div)
    assert list(t.columns) == ["optimizer", "lr", "A", "B", "C", "D", "diverged"]
    assert t.loc[0, "diverged"] == 0.5


# ---------------------------------------------------------------------------------------------
# resume, defaults, errors

def test_resume_a_finished_run_adds_parts_and_a_new_page(small_run, tmp_path, capsys,
                                                        monkeypatch):
    from suite import runjob

    monkeypatch.setattr(runjob, "PARTS", dict(runjob.PARTS))
    seen = {}

    def tiny(args):
        seen["size"] = args.size
        return {"tiny": pd.DataFrame({"x": [1, 2]})}

    runjob.register("tiny", tiny)
    run = _copy_run(small_run, tmp_path / small_run.name)
    html.build_report([run], run / "index.html")
    old_page = (run / "index.html").read_bytes()
    # options come from the resumed run: --size quick need not be repeated
    assert main(["run", "--resume", str(run), "--parts", "speed,tiny"]) == 0
    out = capsys.readouterr().out
    assert "[speed] done in an earlier attempt; kept" in out
    assert "report: " + str(run / "index-2.html") in out
    assert seen == {"size": "quick"}
    assert (run / "index.html").read_bytes() == old_page
    assert read_frame(run / "tiny.parquet")["x"].tolist() == [1, 2]
    assert "<section id='speed'>" in (run / "index-2.html").read_text()
    # nothing new to do: no new page, the newest named
    assert main(["run", "--resume", str(run), "--parts", "tiny"]) == 0
    assert f"nothing new to run; report: {run / 'index-2.html'}" in capsys.readouterr().out
    assert not (run / "index-3.html").exists()
    # a contradicting option is refused before anything runs
    assert main(["run", "--resume", str(run), "--size", "full", "--parts", "tiny"]) == 2
    assert "--size full contradicts the resumed run's --size quick" in capsys.readouterr().err


def test_report_without_arguments_rebuilds_the_newest_page(small_run, tmp_path, monkeypatch,
                                                            capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    old = _copy_run(small_run, reports / "run-20200101T000000Z")
    new = _copy_run(small_run, reports / "run-20300101T000000Z")
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 0
    assert (new / "index.html").exists()
    assert not (old / "index.html").exists()
    assert main(["report"]) == 0
    assert (new / "index-2.html").exists()
    assert main(["report", str(old), str(new)]) == 0
    assert (new / f"compare-{old.name}.html").exists()
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "reports")
    assert main(["report"]) == 2
    assert "no run directory under reports/" in capsys.readouterr().err


def test_missing_optional_extra_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails
    assert main(["run", "--dask", "local", "--parts", "gradstats", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'gradsuite[dask]'" in err
    assert not list(tmp_path.glob("run-*"))  # refused before a run directory is made


def _all_parsers(parser):
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in _all_parsers(parser)
               for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []
    assert "``" not in parser.format_help()


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    names = [n for n, _ in _all_parsers(build_parser())][1:]
    assert len(names) >= 6
    for name in names:
        assert re.search(rf"gradsuite {re.escape(name)}\b", readme), name
    assert "--asv-results" in readme
    assert "python -m suite.report.screenshot" in readme


# ---------------------------------------------------------------------------------------------
# interruption: workers end with their parent

_SWEEP = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from suite import sweep
    from suite.cli import main

    OUT = Path(sys.argv[1])

    def cell(x):
        (OUT / f"worker-{os.getpid()}").write_text("")
        time.sleep(120)
        return [{"x": x}]

    if __name__ == "__main__":
        import suite.runjob as R
        R.register("sleepy", lambda args: {"sleepy": __import__("pandas").DataFrame(
            sweep.run_cells(cell, list(range(6)), jobs=2))})
        sys.exit(main(["run", "--parts", "sleepy", "--out", str(OUT / "reports"),
                       "--no-report", "--jobs", "2"]))
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM,
                                 pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_workers_end_with_the_parent(tmp_path, sig):
    script = tmp_path / "sweep_script.py"
    script.write_text(_SWEEP)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    # output to files, not pipes: after SIGKILL nothing may be left to close a pipe's far end
    out_file, err_file = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_file.open("w") as out, err_file.open("w") as errf:
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                                stdout=out, stderr=errf, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2:
            assert proc.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert all(_alive(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        err = err_file.read_text()
        expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}[sig]
        assert proc.returncode == expected, err
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in pids if _alive(p)] == []
        if sig != signal.SIGKILL:
            # the run's own last word; with forkserver workers Python's resource tracker may
            # add a warning about the pool's semaphores after it (a known limitation)
            own = [ln for ln in err.strip().splitlines() if "resource_tracker" not in ln]
            assert own[-1] in ("terminated", "interrupted")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in tmp_path.glob("worker-*"):
            pid = int(p.name.split("-")[1])
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# files where users expect them

def test_csv_only_when_asked(tmp_path):
    assert main(["run", "--size", "quick", "--parts", "speed", "--optimizers", "sgd", "--csv",
                 "--no-report", "--out", str(tmp_path)]) == 0
    (d,) = tmp_path.glob("run-*")
    pd.testing.assert_frame_equal(pd.read_csv(d / "roofline.csv"),
                                  read_frame(d / "roofline.parquet"), check_dtype=False)


def _pytest_in_a_project(tmp_path, *args):
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_mine.py").write_text(
        "def test_one():\n    assert 1\n\n"
        "def test_bench(benchmark):\n    benchmark(sum, [1, 2])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "test_mine.py", *args], cwd=tmp_path, env=env, check=True,
                   capture_output=True)


def test_pytest_plugin_leaves_no_benchmark_storage_unless_asked(tmp_path):
    _pytest_in_a_project(tmp_path)
    assert not (tmp_path / ".benchmarks").exists()


@pytest.mark.slow
def test_benchmark_storage_is_kept_when_asked(tmp_path):
    _pytest_in_a_project(tmp_path, "--benchmark-autosave")
    assert list((tmp_path / ".benchmarks").rglob("*.json"))


# ---------------------------------------------------------------------------------------------
# the page in a browser

def test_screenshot_script(small_run, tmp_path):
    from suite.report import screenshot

    if screenshot.find_browser() is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    assert screenshot.main([str(small_run), "--out", str(tmp_path), "--name", "page",
                            "--height", "8000"]) == 0
    import matplotlib.image as mpimg

    full = mpimg.imread(tmp_path / "page-full.png")
    assert 1500 < full.shape[0] < 8000  # the blank space under the page is cut
    assert full.std() > 0.05
    assert (tmp_path / "page-01.png").exists()


# ---------------------------------------------------------------------------------------------
# asv's dashboard offline

def test_asv_pages_point_at_vendored_copies(tmp_path):
    """The rewriting of asv's pages, on asv's own index.html, with npm tarballs faked in the
    cache (no network)."""
    import io
    import tarfile

    import asv

    from suite.report import asv_offline as mod
    html_dir = tmp_path / "html"
    shutil.copytree(Path(asv.__file__).parent / "www", html_dir)
    cache = tmp_path / "cache"
    cache.mkdir()
    members = {}
    for pkg, member, _ in mod.VENDOR.values():
        members.setdefault(pkg, []).append(member)
    for pkg, files in mod.EXTRA.items():
        members.setdefault(pkg, []).extend(m for m, _ in files)
    for pkg, files in members.items():
        name, version = pkg.rsplit("@", 1)
        with tarfile.open(cache / f"{name}-{version}.tgz", "w:gz") as tar:
            for m in files:
                data = f"/* {pkg} {m} */".encode()
                info = tarfile.TarInfo(f"package/{m}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert mod.main([str(html_dir), "--cache", str(cache)]) == 0
    page = (html_dir / "index.html").read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", page)
    assert "integrity=" not in page
    for src in re.findall(r"(?:src|href)=\"(vendor/[^\"]+)\"", page):
        assert (html_dir / src).read_text().startswith("/* ")
    assert (html_dir / "vendor/bootstrap/fonts/glyphicons-halflings-regular.woff").exists()
    assert len(re.findall(r"src=\"vendor/", page)) == 9
