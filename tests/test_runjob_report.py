"""The main job and the report: files that last, bad input, an HTML page that holds up."""

import base64
import re
import stat

import pandas as pd
import pytest

from suite.cli import main
from suite.report import html
from suite.report.load import ResultFileError, read_frame, write_frame

QUICK = ["run", "--size", "quick", "--optimizers", "sgd,adam", "--problems",
         "himmelblau,booth", "--jobs", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    assert main([*QUICK, "--out", str(out)]) == 0
    (d,) = out.glob("run-*")
    return d


def test_run_writes_every_part_with_provenance(run_dir):
    for name in ("crossval", "convergence", "basins", "lr_sensitivity", "gradstats",
                 "gradstats_summary", "roofline"):
        df = read_frame(run_dir / f"{name}.parquet")
        assert len(df) > 0
    assert not list(run_dir.glob("*.csv"))  # Parquet only unless --csv
    assert not (run_dir / ".cells").exists()  # checkpoints go once the parts are written
    prov = pd.read_json(run_dir / "provenance.json", typ="series")
    for key in ("gradsuite", "git_commit", "python", "numpy", "numba", "torch", "cpu",
                "threads", "command", "seeds", "started", "finished"):
        assert key in prov
    mode = (run_dir / "crossval.parquet").stat().st_mode
    assert mode & stat.S_IRGRP or mode & stat.S_IRUSR


def test_html_is_self_contained_and_complete(run_dir):
    page = (run_dir / "index.html").read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles[:4] == ["Cross-validation against torch.optim",
                          "Convergence on test functions",
                          "Gradient statistics at initialisation", "Speed"]
    assert "Provenance" in titles
    imgs = re.findall(r'<img alt="([^"]+)" src="([^"]+)"', page)
    assert len(imgs) >= 9
    for alt, src in imgs:
        assert alt
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page  # opens from disk, no server
    assert "https://" not in page
    assert 'class="warn"' not in page


def test_never_overwrites_and_reports_bad_files(run_dir, tmp_path):
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_frame(pd.DataFrame({"a": [1]}), run_dir / "crossval.parquet")
    with pytest.raises(ValueError, match=r"unsupported results format '\.xlsx'"):
        write_frame(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx")
    # a corrupted frame and an old schema: named in the report, the rest still shown
    broken = tmp_path / "run-broken"
    broken.mkdir()
    for f in run_dir.glob("gradstats*.parquet"):
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "roofline.parquet").write_bytes(b"PAR1 not really parquet")
    (broken / "provenance.json").write_text('{"schema_version": 0}')
    with pytest.raises(ResultFileError, match=r"roofline\.parquet: cannot be read"):
        read_frame(broken / "roofline.parquet")
    out = html.build_report([broken], tmp_path / "r.html")
    page = out.read_text()
    assert "roofline.parquet: cannot be read" in page
    assert "schema version 0 is not supported" in page
    assert "Gradient statistics at initialisation" in page
    with pytest.raises(FileExistsError):
        html.build_report([broken], tmp_path / "r.html")


def test_report_command_compares_runs(run_dir, tmp_path, capsys):
    import shutil

    second = tmp_path / "run-second"
    shutil.copytree(run_dir, second)
    out = tmp_path / "cmp.html"
    assert main(["report", str(run_dir), str(second), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Changes between runs" in page
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_bad_input_to_run(tmp_path, capsys):
    assert main(["run", "--parts", "crossval,plots", "--out", str(tmp_path)]) == 2
    assert "unknown part(s) plots" in capsys.readouterr().err
    assert main(["run", "--optimizers", "lion", "--out", str(tmp_path)]) == 2
    assert "unknown optimizer(s) lion; expected some of sgd" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = main(["run", "--parts", "gradstats", "--out", str(ro / "sub")])
    finally:
        ro.chmod(0o700)
    import os

    if os.geteuid() != 0:  # root may write anywhere
        assert rc == 2
        assert "not writable" in capsys.readouterr().err


def test_resume_keeps_finished_parts(tmp_path, capsys):
    assert main(["run", "--size", "quick", "--parts", "gradstats", "--out", str(tmp_path),
                 "--no-report", "--jobs", "1"]) == 0
    (d,) = tmp_path.glob("run-*")
    before = (d / "gradstats.parquet").read_bytes()
    assert main(["run", "--size", "quick", "--parts", "gradstats,speed", "--resume", str(d),
                 "--optimizers", "sgd", "--no-report", "--jobs", "1"]) == 0
    assert "done in an earlier attempt; kept" in capsys.readouterr().out
    assert (d / "gradstats.parquet").read_bytes() == before
    assert (d / "roofline.parquet").exists()
    assert len(list(d.glob("provenance*.json"))) == 2


def test_dask_gives_the_same_frame_as_the_process_pool():
    pytest.importorskip("dask.distributed")
    from suite.studies import gradstats as G

    args = (["tanh", "relu"], ["he_normal"], [4], [0, 1])
    local = G.sweep(*args, width=16, batch=8, jobs=2)
    dask = G.sweep(*args, width=16, batch=8, dask="local")
    pd.testing.assert_frame_equal(local, dask)


def test_interrupted_sweep_resumes_from_its_cells(tmp_path, monkeypatch):
    from suite import sweep

    calls = []
    stop = {"at": 3}

    def cell(x):
        calls.append(x)
        if x == stop["at"]:
            raise KeyboardInterrupt  # the run is stopped while this cell runs
        return [{"x": x, "y": x * x}]

    with pytest.raises(KeyboardInterrupt):
        sweep.run_cells(cell, [0, 1, 2, 3, 4], checkpoint=tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").glob("cell-*.pkl")) == [
        "cell-0.pkl", "cell-1.pkl", "cell-2.pkl"]
    calls.clear()
    stop["at"] = None
    rows = sweep.run_cells(cell, [0, 1, 2, 3, 4], checkpoint=tmp_path / "c")
    assert calls == [3, 4]  # finished cells were not run again
    assert [r["y"] for r in rows] == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="cells of a different sweep"):
        sweep.run_cells(cell, [5, 6], checkpoint=tmp_path / "c")


def test_asv_results_in_the_report(run_dir, tmp_path):
    import json

    from suite.report.load import read_asv_results

    mdir = tmp_path / "asv" / "mymachine"
    mdir.mkdir(parents=True)
    for i, (sha, val) in enumerate((("a" * 40, 1e-3), ("b" * 40, 2e-3))):
        doc = {"commit_hash": sha, "date": 1_700_000_000_000 + i * 86_400_000,
               "result_columns": ["result", "params"],
               "results": {"bench_optim.OptimizerStep.time_step": [[val, val / 2],
                                                                   [["'adam'"], ["1", "2"]]]}}
        (mdir / f"{sha[:8]}-env.json").write_text(json.dumps(doc))
    (mdir / "broken-env.json").write_text("{not json")
    frame = read_asv_results(tmp_path / "asv")
    assert len(frame) == 4
    assert set(frame["params"]) == {"'adam', 1", "'adam', 2"}
    assert any("broken-env.json" in p for p in frame.attrs["problems"])
    out = tmp_path / "with-asv.html"
    assert main(["report", str(run_dir), "--out", str(out), "--asv-results",
                 str(tmp_path / "asv")]) == 0
    page = out.read_text()
    assert "asv results, commit bbbbbbbb (2 commit(s) in the history)" in page
    assert 'alt="asv history"' in page


def test_page_renders_in_headless_chromium(run_dir, tmp_path):
    """Where Chromium is installed: the page renders, and the screenshot is not blank."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,3000",
                    f"--screenshot={shot}", (run_dir / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 3000
    assert img.std() > 0.05  # text, tables and figures, not an empty page


def test_registered_parts_run_before_speed():
    """speed must run last (its allocator setting stays for the process), whatever registers."""
    from suite import runjob

    assert list(runjob.PARTS)[-1] == "speed"
    saved = dict(runjob.PARTS)
    try:
        runjob.register("extra", lambda args: {})
        assert list(runjob.PARTS)[-2:] == ["extra", "speed"]
    finally:
        runjob.PARTS.clear()
        runjob.PARTS.update(saved)
