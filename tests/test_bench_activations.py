"""bench.activation_speed: the rows it times, gelu's tanh form among them."""

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
