"""bench.activation_speed: the rows it times, gelu's tanh form among them."""

import re

import numpy as np
import pytest
import torch

from suite import bench


def test_gelu_tanh_row_times_the_tanh_form_on_both_sides(monkeypatch):
    seen = {}

    def fake_paired_times(fns, repeats, reference, clock):
        seen.update(fns)
        best = dict.fromkeys(fns, 1.0) | {f"{k}/torch": 0.5 for k in fns}
        return best, {f"{k}/torch": 0.0 for k in fns}

    monkeypatch.setattr(bench, "paired_times", fake_paired_times)
    frame = bench.activation_speed(["gelu(approximate=tanh)"], size=4096, repeats=1)
    assert frame.activation.tolist() == ["gelu(approximate=tanh)"] * 3
    assert frame.implementation.tolist() == ["numba", "numba-fused", "numpy"]
    assert (frame.speedup == 2.0).all()
    # both sides compute the tanh form, not the exact GELU
    x = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    want = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    y, _dx = seen["numba-fused"]()
    tx, _tdy, f_t = seen["torch"].__defaults__
    for got in (y, f_t(tx).detach().numpy(), seen["numpy"]()[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert np.abs(got - exact).max() > 1e-4


def test_default_rows_include_the_tanh_form_and_unknown_names_are_named():
    with pytest.raises(ValueError, match=r"'gelu\(approximate=none\)'.*gelu\(approximate=tanh\)"):
        bench.activation_speed(["relu", "gelu(approximate=none)"], size=16, repeats=1)
    assert "gelu(approximate=tanh)" in bench.ACTIVATION_VARIANTS


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "--optimizers", "adam,foo"],
     r"unknown optimizer\(s\) 'foo'; expected names from sgd, .*adamw"),
    (["bench", "--size", "0"], "size must be a positive integer, got 0"),
    (["bench", "--repeats", "-1"], "repeats must be a positive integer, got -1"),
    (["bench", "--threads", "1", "0"], r"threads must be positive integers, got \[1, 0\]"),
    (["bench", "--threads", "99"], "threads=99 asked for, but Numba was started with NUMBA_"),
    (["bench-activations", "--activations", "relu,gelu_tanh"],
     r"unknown activation\(s\) 'gelu_tanh'; expected names from sigmoid, .*log_softmax"),
    (["bench-activations", "--size", "1500"],
     r"size must be a multiple of 1000 for softmax, log_softmax \(rows of 1000\), got 1500"),
    (["bench-activations", "--size", "-5", "--activations", "relu"],
     "size must be a positive integer, got -5"),
    (["bench-activations", "--repeats", "0"], "repeats must be a positive integer, got 0"),
    (["bench-activations", "--threads", "0"], "threads must be a positive integer, got 0"),
    (["bench-activations", "--threads", "1", "99"], "threads=99 asked for, but Numba"),
])
def test_bench_commands_name_bad_arguments_before_measuring(argv, message, monkeypatch, capsys):
    from suite import cli

    def measured(*a, **k):
        raise AssertionError("measured despite bad arguments")

    for fn in ("roofline", "activation_speed", "paired_times"):
        monkeypatch.setattr(bench, fn, measured)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert re.search(message, err), err


def test_bench_activations_rows_of_softmax_need_whole_rows_only_when_timed():
    # a size that is no multiple of 1000 is fine without the row-wise activations
    assert bench.check_activation_args(["relu", "gelu"], 1500, 1, 3) == ["relu", "gelu"]
    with pytest.raises(ValueError, match="got 1500"):
        bench.check_activation_args(["relu", "log_softmax"], 1500, 1, 3)
    assert bench.check_activation_args(["softmax"], 3000, 1, 1) == ["softmax"]
