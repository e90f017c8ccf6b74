"""gradsuite run with users' optimizers: --optimizer, --config study.toml, and the report."""

import re
import sys
from pathlib import Path

import pytest

from suite import problems
from suite.cli import main
from suite.report.load import read_frame
from suite.runjob import PARTS
from suite.studyfile import StudyFileError, load

HERE = Path(__file__).parent

STUDY = """
parts = ["convergence", "speed"]
problems = ["himmelblau", "booth"]
size = "quick"

[tuning]
lrs = [0.01, 0.1]
seeds = 1
fresh_seeds = 1
steps = 150
starts = 2

[[optimizer]]
reference = "adam"

[[optimizer]]
path = "user_optim:ClipMomentum"
name = "clipmom"
elementwise = true   # a lie for the batched path's speed here; the per-start path is tested
reference = "sgd"
hyper = { max_norm = 5.0 }
"""


def _load(tmp_path, text):
    f = tmp_path / "study.toml"
    f.write_text(text)
    return load(f, list(PARTS), list(problems.NAMES))


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def test_study_file_is_read_with_its_hyperparameters_and_grids(tmp_path, on_path):
    st = _load(tmp_path, STUDY + 'lrs = [0.001, 0.01]\n')
    assert [s.name for s in st.subjects] == ["adam", "clipmom"]
    user = st.subjects[1]
    assert user.hyper == {"max_norm": 5.0}
    assert user.reference == "sgd"
    assert user.elementwise
    assert user.import_path == "user_optim:ClipMomentum"
    assert st.lr_grids == {"clipmom": (0.001, 0.01)}
    assert st.tuning == {"lrs": (0.01, 0.1), "seeds": 1, "fresh_seeds": 1, "steps": 150,
                         "starts": 2}
    assert st.parts == ["convergence", "speed"]


@pytest.mark.parametrize(("text", "message"), [
    ("colour = 1\n", r"unknown key\(s\) colour; allowed:"),
    ("parts = ['convergence', 'dance']\n", r"parts: unknown dance"),
    ("size = 'huge'\n", r"size = 'huge': expected quick \| default \| full"),
    ("[tuning]\nlrs = [0.1, -1]\n", r"tuning.lrs = \[0.1, -1\]: expected a non-empty list"),
    ("[tuning]\nsteps = 0\n", r"tuning.steps = 0: expected a positive integer"),
    ("[tuning]\nlrs = [0.1]\nlr_min = 0.01\n", r"either lrs or lr_min"),
    ("[[optimizer]]\nname = 'x'\n", r"needs path = 'module:Class' or reference"),
    ("[[optimizer]]\npath = 'no_such_module_xyz:Opt'\n", (r"cannot import module "
                                                         r"'no_such_module_xyz'")),
    ("[[optimizer]]\nreference = 'adamx'\n", r"#1: .*adamx"),
    ("[[optimizer]]\nreference = 'adam'\nspeed = 1\n", r"#1: unknown key\(s\) speed"),
    ("[[optimizer]]\nreference = 'adam'\n[[optimizer]]\nreference = 'adam'\n",
     r"several named adam"),
    ("parts = [\n", r"is not valid TOML"),
])
def test_study_file_mistakes_get_specific_errors(tmp_path, text, message):
    with pytest.raises(StudyFileError, match=message):
        _load(tmp_path, text)


def test_unimportable_optimizer_on_the_command_line_is_a_usage_error(tmp_path, capsys):
    code = main(["run", "--optimizer", "no_such_module_xyz:Opt", "--out", str(tmp_path),
                 "--no-report"])
    assert code == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    assert not list(tmp_path.glob("run-*"))


def test_run_with_a_study_file_puts_the_users_optimizer_everywhere(tmp_path, on_path,
                                                                   monkeypatch):
    cfg = tmp_path / "study.toml"
    cfg.write_text(STUDY)
    monkeypatch.setattr(sys, "argv", ["gradsuite"])
    assert main(["run", "--config", str(cfg), "--jobs", "1", "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.glob("run-*")
    choice = read_frame(run / "tuning_choice.parquet")
    assert set(choice["optimizer"]) == {"adam", "clipmom"}
    assert set(choice["lr_grid"]) == {"0.01 0.1"}
    for frame in ("convergence", "basins", "convergence_trajectories", "lr_sensitivity",
                  "ecdf", "roofline"):
        assert "clipmom" in set(read_frame(run / f"{frame}.parquet")["optimizer"]), frame
    roof = read_frame(run / "roofline.parquet")
    assert set(roof["optimizer"]) == {"adam", "clipmom"}  # the study file's references only
    conf = read_frame(run / "user_conformance.parquet")
    assert conf["verdict"].iloc[0] == "FAIL"  # clipping makes it differ from plain SGD
    page = (run / "index.html").read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles[0] == "At a glance: every optimizer"
    glance = page.split("<h2>", 2)[1]
    assert "clipmom" in glance
    assert "adam" in glance
    assert 'class="warn"' not in page
