"""check_optimizer on optimizers as users bring them: reduced and **kwargs signatures, renamed
hyperparameters, other state conventions, catalogued deviations written independently of the
catalogue, low precision, and a real third-party library (pytorch-optimizer)."""

import numpy as np
import pytest
import torch

from suite.conformance import check_optimizer
from suite.conformance.optimizers import format_pair
from suite.optim import variants as catalogue
from tests import lean_optimizers as lean

FAST = {"dtypes": ("float64",), "probes": ("scaled", "model"), "steps": 40}


def test_reduced_signature_passes_with_inapplicable_configs_listed():
    r = check_optimizer(lean.LeanAdam, "adam", **FAST)
    assert r.passed, str(r)
    assert not (r.frame["error"].fillna("").str.contains("construction failed")).any()
    missing = {m for na in r.not_applicable for m in na.missing}
    assert missing == {"weight_decay", "amsgrad", "maximize"}
    assert len(r.not_applicable) == 4        # adam's configs with wd, amsgrad or maximize
    assert (~r.frame["applicable"]).sum() == 4 * 2  # x 2 probes x 1 dtype
    assert r.frame.loc[~r.frame["applicable"], "passed"].isna().all()
    text = str(r)
    assert "PASS (4/4 applicable cells agree; 4 configurations not applicable)" in text
    assert "does not accept 'amsgrad'" in text
    assert r.state == "compatible"


def test_kwargs_that_reject_unknown_names_do_not_fail_construction():
    r = check_optimizer(lean.StrictKwargsAdam, "adam", **FAST)
    assert r.passed, str(r)
    assert len(r.not_applicable) == 4
    # the same check with torch.optim's full set of names passed blindly would fail:
    with pytest.raises(TypeError, match="unexpected keyword"):
        lean.StrictKwargsAdam([torch.zeros(1)], maximize=False)


def test_nothing_applicable_is_not_a_pass():
    r = check_optimizer(lean.LeanAdam, "adam", configs=[{"amsgrad": True}], **FAST)
    assert not r.passed
    assert "nothing checked" in str(r)


def test_rename_maps_momentum_to_beta():
    no_rename = check_optimizer(lean.BetaSGD, "sgd", **FAST)
    # without the mapping, every momentum configuration is not applicable
    assert all("momentum" in na.missing for na in no_rename.not_applicable)
    r = check_optimizer(lean.BetaSGD, "sgd", rename={"momentum": "beta"}, **FAST)
    assert r.passed, str(r)
    ran = set(r.frame.loc[r.frame["applicable"], "config"])
    assert "sgd(lr=0.01, momentum=0.9)" in ran
    assert r.state == "compatible"
    with pytest.raises(ValueError, match="rename maps 'momentun'"):
        check_optimizer(lean.BetaSGD, "sgd", rename={"momentun": "beta"}, **FAST)


def test_import_path_and_subject_are_accepted():
    from suite.subjects import resolve

    r = check_optimizer("tests.lean_optimizers:BetaSGD", "sgd", rename={"momentum": "beta"},
                        **FAST)
    assert r.passed, str(r)
    sub = resolve(lean.BetaSGD, reference="sgd", rename={"momentum": "beta"})
    r2 = check_optimizer(sub, **FAST)            # the subject's reference and rename are used
    assert r2.passed
    assert r2.reference == "sgd"
    r3 = check_optimizer(torch.optim.SGD, "sgd", extra_kwargs={"foreach": False}, **FAST)
    assert r3.passed


def test_other_exp_avg_normalisation_passes_with_state_different():
    r = check_optimizer(lean.SumAdam, "adam", **FAST)
    assert r.passed, str(r)                       # the parameters are Adam's
    assert r.state == "different"
    text = str(r)
    assert len(r.state_differences) == 1           # exp_avg only; exp_avg_sq is torch's
    assert r.state_differences[0].startswith("exp_avg: ")
    assert "state: exp_avg: " in text
    # m' = m / (1 - beta1): 10x with beta1 = 0.9, 5x with beta1 = 0.8 (a hand computation)
    assert "10 x torch.optim's at every step (a constant factor)" in text
    assert "5 x torch.optim's" in text
    strict = check_optimizer(lean.SumAdam, "adam", strict_state=True, **FAST)
    assert not strict.passed
    assert "(strict)" in str(strict)


class _Wrapper:
    """A faithful Adam behind an object that exposes no ``state`` at all."""

    def __init__(self, params, **hyper):
        self._opt = lean.LeanAdam(params, **hyper)
        self.param_groups = self._opt.param_groups

    def step(self):
        self._opt.step()


def test_state_not_exposed():
    r = check_optimizer(_Wrapper, "adam", **FAST)
    assert r.passed, str(r)
    assert r.state == "not exposed"
    assert "exposes no state" in str(r)
    assert not check_optimizer(_Wrapper, "adam", strict_state=True, **FAST).passed


# ---- catalogued deviations, implemented here independently of the catalogue ---------------

LEAN_DEVIATIONS = [
    ("adam", lean.deviant("adam", "decoupled"), {}, "decoupled_weight_decay"),
    ("adagrad", lean.deviant("adagrad", "decoupled"), {}, "decoupled_weight_decay"),
    ("rmsprop", lean.deviant("rmsprop", "decoupled"), {}, "decoupled_weight_decay"),
    ("rmsprop", lean.deviant("rmsprop", "starts_at_one"), {}, "square_avg_starts_at_one"),
    ("adam", lean.deviant("adam", "scaled", scale=0.5), {}, "lr_scaled"),
    ("adam", lean.deviant("adam", "none", state_dtype=torch.float32), {}, "state_in_float32"),
    ("adam", lean.deviant("adam", "none", state_dtype=torch.bfloat16), {},
     "state_in_bfloat16"),
    ("sgd", lean.ema_sgd, {"momentum": "beta"}, "ema_momentum"),
    ("adam", lean.deviant("adam", "group_step"), {}, "step_counted_per_group"),
]


@pytest.mark.parametrize(("reference", "opt", "rename", "variant"), LEAN_DEVIATIONS,
                         ids=[f"{r}-{v}" for r, _, _, v in LEAN_DEVIATIONS])
def test_lean_deviation_is_caught_and_named(reference, opt, rename, variant):
    r = check_optimizer(opt, reference, rename=rename, **FAST)
    assert not r.passed
    explained = r.explained()
    assert variant in explained, str(r)
    assert len(explained[variant]) == len(r.failures), str(r)   # every failing cell
    assert f"consistent with: {variant}" in str(r) or f"; {variant}" in str(r)
    if variant == "lr_scaled":
        assert "constant factor 0.5" in str(r)
        assert np.allclose(r.frame["lr_factor"].dropna(), 0.5, rtol=1e-9)
    if variant.startswith("state_in"):
        assert "state: " in str(r)


def test_every_catalogued_variant_has_an_independent_implementation():
    from tests.test_conformance import ZOO_NAMES

    covered = set(ZOO_NAMES.values()) | {v for *_, v in LEAN_DEVIATIONS}
    assert covered == set(catalogue.VARIANTS), set(catalogue.VARIANTS) ^ covered


def test_issue_names_are_in_the_catalogue():
    names = ["decoupled_weight_decay", "coupled_weight_decay", "weight_decay_not_scaled_by_lr",
             "eps_inside_sqrt", "no_bias_correction", "bias_correction_off_by_one",
             "amsgrad_max_of_vhat", "amsgrad_ignored", "ema_momentum", "dampening_on_first_step",
             "nesterov_ignored", "maximize_ignored", "centered_ignored",
             "lr_decay_from_wrong_step", "initial_accumulator_ignored",
             "square_avg_starts_at_one", "state_in_float32", "state_in_bfloat16", "lr_scaled"]
    assert set(names) <= set(catalogue.VARIANTS)
    for v in catalogue.CATALOGUE:
        assert v.description
        assert "\n" not in v.description
        refs = v.references or ("sgd", "adagrad", "rmsprop", "adam", "adamw")
        for ref in refs:   # every entry applies to its references and can be run on them
            if v.applies_to(ref):
                catalogue.variant_rule(ref, v)


def test_variant_equal_to_reference_where_it_changes_nothing():
    """A variant run where it changes nothing is the reference, bit for bit (same kernels)."""
    from suite.optim import get
    from suite.probes import PROBES
    from suite.trajectory import run_rule

    hyper = {"lr": 0.01, "momentum": 0.9}
    ref = run_rule(get("sgd", **hyper), PROBES["scaled"], 20)
    for name in ("nesterov_ignored", "maximize_ignored", "dampening_on_first_step"):
        v = run_rule(catalogue.variant_rule("sgd", name, **hyper), PROBES["scaled"], 20)
        for q in ref.values:
            np.testing.assert_array_equal(v.values[q], ref.values[q])
    with pytest.raises(ValueError, match="does not apply to 'sgd'"):
        catalogue.variant_rule("sgd", "eps_inside_sqrt")


def test_fit_lr_factor_recovers_a_known_factor():
    rng = np.random.default_rng(0)
    ref = [np.cumsum(rng.standard_normal((5, 3)), axis=0)]
    test = [ref[0][0] + 0.3 * (ref[0] - ref[0][0])]
    assert catalogue.fit_lr_factor(test, ref) == pytest.approx(0.3, rel=1e-12)


# ---- numbers ---------------------------------------------------------------------------------


def test_values_are_printed_with_enough_digits_to_differ():
    assert format_pair(15.2166, 15.21660000003) == ("15.2166", "15.21660000003")
    assert format_pair(1.0, 2.0) == ("1", "2")
    a, b = format_pair(0.1 + 0.2, 0.3)
    assert a != b


def test_failure_line_shows_values_and_error_of_the_same_element():
    from suite.optim import get
    from suite.probes import PROBES
    from suite.trajectory import run_rule

    r = check_optimizer(lean.deviant("adam", "scaled", scale=1 + 1e-9), "adam", configs=[{}],
                        dtypes=("float64",), probes=("scaled",), steps=40)
    assert not r.passed
    f = r.failures[0]
    line = str(f)
    shown_ref, shown_got = format_pair(f.reference_value, f.got_value)
    assert shown_ref != shown_got
    assert f"reference {shown_ref}, got {shown_got}" in line
    assert f"|diff| {abs(f.got_value - f.reference_value):.3g}" in line
    # recompute that element's error at that step from the reference run, by hand:
    # |got - ref| / max_{s <= t} |ref_s|
    ref = run_rule(get("adam"), PROBES["scaled"], 40)
    series = ref.values[f.quantity][: f.step + 1][(slice(None), *f.index)]
    assert series[-1] == f.reference_value
    expected = abs(f.got_value - f.reference_value) / np.max(np.abs(series))
    assert f.error == pytest.approx(expected, rel=1e-12)
    assert f"error {f.error:.3g} > tol" in line


# ---- low precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_torch_optim_passes_in_low_precision(dtype):
    r = check_optimizer(torch.optim.Adam, "adam", dtypes=(dtype,), probes=("scaled", "model"),
                        steps=40)
    assert r.passed, str(r)
    app = r.frame[r.frame["applicable"]]
    assert len(app)
    assert (app["tol"] >= 10 * app["torch_error"]).all()


def test_low_precision_still_catches_a_gross_mistake():
    from tests.test_conformance import zoo_module

    zoo = zoo_module()
    r = check_optimizer(zoo.make("sgd", "maximize_ignored"), "sgd", dtypes=("bfloat16",),
                        probes=("scaled", "model"), steps=40)
    assert not r.passed, str(r)
    assert "maximize_ignored" in r.explained(), str(r)


# ---- pytorch-optimizer (kozistr) -------------------------------------------------------------

po = pytest.importorskip("pytorch_optimizer")


def test_pytorch_optimizer_sgdw_coupled_is_faithful_to_sgd():
    r = check_optimizer(po.SGDW, "sgd", extra_kwargs={"weight_decouple": False}, **FAST)
    assert r.passed, str(r)
    assert r.state == "compatible"


def test_pytorch_optimizer_sgdw_default_is_decoupled():
    r = check_optimizer(po.SGDW, "sgd", **FAST)
    assert not r.passed
    assert set(r.explained()) == {"decoupled_weight_decay"}, str(r)


def test_pytorch_optimizer_padam_half_is_adam_with_epsilon_hat_and_a_group_step():
    # PAdam with partial = 0.5 is Adam written TensorFlow's way (eps added to sqrt(v) before
    # the bias correction) with pytorch_optimizer's step count per param group
    r = check_optimizer(po.PAdam, "adam", extra_kwargs={"partial": 0.5}, **FAST)
    assert not r.passed
    assert "consistent with: eps_before_bias_correction + step_counted_per_group" in str(r)
    assert {m for na in r.not_applicable for m in na.missing} == {"amsgrad"}


def test_pytorch_optimizer_qhm_is_ema_momentum():
    # QHM with nu = 1 is momentum SGD with an EMA buffer; its ignored options are reported
    r = check_optimizer(po.QHM, "sgd", extra_kwargs={"nu": 1.0}, **FAST)
    assert not r.passed
    assert "ema_momentum" in r.explained(), str(r)
    assert "accepted through **kwargs but not kept in param_groups" in str(r)
    assert {m for na in r.not_applicable for m in na.missing} == {"dampening", "nesterov"}


# ---- the CLI ---------------------------------------------------------------------------------

BAD_CLI = [
    (["--dtypes", "float8"], "--dtypes float8: expected some of float64"),
    (["--steps", "-5"], "--steps -5: expected a positive number"),
    (["--steps", "0"], "--steps 0: expected a positive number"),
    (["--configs", "[]"], "--configs is an empty list"),
    (["--configs", '[{"lrr": 0.1}]'], "unknown hyperparameter(s) lrr"),
    (["--configs", "{}"], "--configs must be a JSON list of objects"),
    (["--configs", "not json"], "--configs must be a JSON list of objects"),
    (["--rename", "momentum"], "--rename expects reference=theirs pairs"),
    (["--rename", "foo=bar"], "--rename foo: not a hyperparameter of sgd"),
    (["--probes", "nope"], "--probes nope: expected some of"),
    (["--reference", "lion"], "unknown optimizer 'lion'"),
]


@pytest.mark.parametrize(("args", "says"), BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_cli_bad_input_is_exit_2_with_one_line(args, says, capsys):
    from suite.cli import main

    assert main(["check", "torch.optim:SGD", "--reference", "sgd", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert says in lines[0]


def test_cli_every_option_has_help():
    from suite.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["check"]
    for action in sub._actions:
        assert action.help, action.dest


def _user_project(tmp_path):
    import shutil
    from pathlib import Path

    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    shutil.copy(Path(lean.__file__), tmp_path / "mypkg" / "optim.py")
    return ["check", "mypkg.optim:BetaSGD", "--reference", "sgd", "--rename", "momentum=beta",
            "--steps", "20", "--dtypes", "float64", "--probes", "scaled"]


def test_cli_imports_from_the_current_directory(tmp_path, monkeypatch, capsys):
    import sys

    from suite.cli import main

    args = _user_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mypkg", raising=False)
    monkeypatch.delitem(sys.modules, "mypkg.optim", raising=False)
    assert main(args) == 0
    out = capsys.readouterr()
    assert f"the current directory {tmp_path} was put on the import path" in out.err
    assert "PASS" in out.out
    assert "not applicable" in out.out


@pytest.mark.slow
def test_cli_console_script_imports_from_the_current_directory(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    args = _user_project(tmp_path)
    exe = Path(sys.executable).parent / "gradsuite"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([str(exe), *args], cwd=tmp_path, capture_output=True, text=True,
                         env=env, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "was put on the import path" in res.stderr
    assert "PASS" in res.stdout


def test_cli_strict_state_follows_both_verdicts(capsys):
    from suite.cli import main

    args = ["check", "tests.lean_optimizers:SumAdam", "--reference", "adam", "--steps", "20",
            "--dtypes", "float64", "--probes", "scaled"]
    assert main(args) == 0
    assert "state: different" in capsys.readouterr().out
    assert main([*args, "--strict-state"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_pytest_fixture_takes_rename(optimizer_conformance):
    r = optimizer_conformance(lean.BetaSGD, "sgd", rename={"momentum": "beta"}, steps=20,
                              dtypes=("float64",), probes=("scaled",))
    assert r.state == "compatible"
    with pytest.raises(pytest.fail.Exception, match="consistent with: ema_momentum"):
        optimizer_conformance(lean.ema_sgd, "sgd", rename={"momentum": "beta"}, steps=20,
                              dtypes=("float64",), probes=("scaled",))


def test_pytorch_optimizer_stable_adamw_is_another_algorithm():
    # StableAdamW divides lr by an RMS of g / sqrt(v) (update clipping) and debiases the betas
    # themselves: not AdamW, and nothing in the catalogue reproduces it
    r = check_optimizer(po.StableAdamW, "adamw", extra_kwargs={"kahan_sum": False},
                        configs=[{}, {"lr": 0.01, "weight_decay": 0.5}], **FAST)
    assert not r.passed
    assert not r.explained(), str(r)
    assert "no catalogued variant reproduces it" in str(r)


@pytest.mark.parametrize(("reference", "hyper"), [
    ("sgd", {"lr": 0.01, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05}),
    ("sgd", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.1, "nesterov": True}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1,
                 "initial_accumulator_value": 0.1, "maximize": True}),
    ("rmsprop", {"alpha": 0.95, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    ("adam", {"amsgrad": True, "weight_decay": 0.05, "maximize": True}),
    ("adamw", {"amsgrad": True, "weight_decay": 0.5}),
])
def test_catalogue_kernels_without_their_change_are_the_reference(reference, hyper):
    """The catalogue's modified kernels, with no switch set, are the reference bit for bit:
    each variant differs from torch.optim by its own change only."""
    from suite.optim import get
    from suite.probes import PROBES
    from suite.trajectory import run_rule

    plain = catalogue.Variant("plain", "no change", kernels=catalogue._BASE)
    ref = run_rule(get(reference, **hyper), PROBES["model"], 30)
    got = run_rule(catalogue.variant_rule(reference, plain, **hyper), PROBES["model"], 30)
    for q in ref.values:
        np.testing.assert_array_equal(got.values[q], ref.values[q], err_msg=q)
