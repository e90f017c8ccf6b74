"""check_activation's parts on hand-made inputs with answers computed by hand: the per-cell
bound (_cell), the diagnosis of a failing cell (_why), the verdict's text, the names, kinds and
parameters of what a user brings, and the errors a broken activation is reported with."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from suite.conformance import activations as CA
from suite.conformance import check_activation

TINY64 = np.finfo(np.float64).tiny
TINY32 = float(np.finfo(np.float32).tiny)
EPS64 = 2.0**-52
EPS32 = 2.0**-23


def _cell(dtype, hi, got, kappa, err, terr, x=None):
    hi = np.asarray(hi, np.float64)
    x = np.arange(1.0, len(hi) + 1) if x is None else np.asarray(x, np.float64)
    return CA._cell({"alpha": 0.5}, dtype, "R", "forward", x, np.asarray(got, dtype), hi,
                    np.zeros_like(hi), np.asarray(kappa, np.float64),
                    np.asarray(err, np.float64), np.asarray(terr, np.float64))


def test_cell_passes_exactly_at_the_bound():
    # float64: SLACK 16; torch's excess beyond kappa: max(1 - 0, 5 - 2, 0.5 - 0) = 3, so the
    # bound is 16 + kappa + 4 * 3 = [28, 30, 28]; the first point's error is exactly 28
    c = _cell("float64", hi=[1, 2, 3], got=[1, 2, 3], kappa=[0, 2, 0], err=[28, 10, 0],
              terr=[1, 5, 0.5])
    assert c == {"config": "alpha=0.5", "dtype": "float64", "region": "R",
                 "quantity": "forward", "points": 3, "max_ulp": 28.0, "worst_x": 1.0,
                 "expected": 1.0, "got": 1.0, "error_ulp": 28.0, "allowed_ulp": 28.0,
                 "kappa": 0.0, "torch_max_ulp": 5.0, "torch_excess": 3.0, "nonfinite": 0,
                 "false_zeros": 0, "passed": True}


def test_cell_fails_half_an_ulp_over_and_counts_false_zeros():
    # float32: SLACK 8; torch's excess 0.75 (every kappa 0): bound 8 + 3 = 11; 11.5 fails by
    # 0.5 ulp. got = 0 where the exact value is the smallest normal float32: a false zero
    c = _cell("float32", hi=[TINY32, 1, 2], got=[0, 0.5, 2], kappa=[0, 0, 0],
              err=[11.5, 0, 0], terr=[0.25, 0.5, 0.75])
    assert c["passed"] is False
    assert c["allowed_ulp"] == 11.0
    assert c["torch_excess"] == 0.75
    assert c["torch_max_ulp"] == 0.75
    assert c["max_ulp"] == 11.5
    assert (c["worst_x"], c["got"], c["expected"]) == (1.0, 0.0, TINY32)
    assert c["false_zeros"] == 1
    assert c["nonfinite"] == 0


def test_cell_inf_where_torch_is_not_finite_either_is_torchs():
    # torch non-finite everywhere: no excess (0, not an error), our inf at the same point is
    # not held against us, and the largest error counts only points where one side is finite
    c = _cell("float64", hi=[1, 2, 3], got=[np.inf, 2, 3], kappa=[0, 0, 0],
              err=[np.inf, 0.5, 0.25], terr=[np.inf, np.nan, np.nan])
    assert c["passed"] is True
    assert c["torch_excess"] == 0.0
    assert c["allowed_ulp"] == 16.0
    assert c["max_ulp"] == 0.5
    assert c["nonfinite"] == 0
    assert (c["worst_x"], c["error_ulp"]) == (1.0, math.inf)


def test_cell_inf_where_torch_is_finite_fails():
    c = _cell("float64", hi=[1, 2], got=[np.inf, 2], kappa=[0, 0], err=[np.inf, 0],
              terr=[0, 0])
    assert c["passed"] is False
    assert c["max_ulp"] == math.inf
    assert c["nonfinite"] == 1
    assert c["torch_max_ulp"] == 0.0


def test_verdict_text_shows_three_failures_per_configuration():
    frame = pd.DataFrame({"passed": [True, True, False, False, False]})
    fails = ([f"forward R{i} (float64, alpha=0.5): {10 - i} ulps at x=1 (expected 2)"
              for i in range(5)]
             + [f"derivative R (float32, defaults): {i} ulps (expected 1)" for i in range(3)]
             + [f"defaults float64: raised ValueError: boom {i}" for i in range(4)])
    r = CA.ActivationResult("elu", "my.elu", frame, fails, ["  note: a note"])
    assert str(r).split("\n") == [
        "my.elu vs reference 'elu': FAIL (2/5 cells within bounds)", "  note: a note",
        *[f"  - {f}" for f in fails[:3]], *[f"  - {f}" for f in fails[5:8]],
        *[f"  - {f}" for f in fails[8:11]],
        ("    (2 more failing cells for (float64, alpha=0.5); see result.failures and "
        "result.frame)"),
        "    (1 more failing cells for (); see result.failures and result.frame)"]
    ok = CA.ActivationResult("elu", "my.elu", pd.DataFrame({"passed": [True, True]}))
    assert str(ok) == "my.elu vs reference 'elu': PASS (2/2 cells within bounds)"
    empty = CA.ActivationResult("relu", "f", pd.DataFrame())
    assert not empty.passed
    assert str(empty) == "f vs reference 'relu': FAIL (0/0 cells within bounds)"


def _row(**kw):
    base = {"config": "defaults", "dtype": "float64", "region": "R", "quantity": "forward",
            "passed": False, "got": 1.0, "expected": 2.0, "error_ulp": 10.0,
            "torch_max_ulp": 1.0}
    return {**base, **kw}


def _why(row, *others):
    frame = pd.DataFrame([row, *others])
    return CA._why(frame, frame.iloc[0])


LOSES = "x torch's error in this region (cancellation or an inaccurate formula)"
WRONG_FORMULA = "wrong formula: a relative error of order one where torch is accurate"
F64 = "float64 results with about float32 accuracy (relative error {}){}: low-precision internals?"
F32 = "relative error {}: half-precision internals, or a coarse approximation?"


@pytest.mark.parametrize(("row", "others", "expected"), [
    (_row(got=math.inf), [], "overflow: inf or NaN where the exact value is finite"),
    (_row(got=0.0), [], ("false zero: the result underflows or cancels to 0 where the exact "
                        "value is not")),
    (_row(got=0.0, expected=1.0), [], ("false zero: the result underflows or cancels to 0 "
                                      "where the exact value is not")),
    (_row(got=0.0, expected=0.0), [], "loses digits: 10" + LOSES),
    (_row(got=1.0, expected=0.0), [], "loses digits: 10" + LOSES),
    # a moved parameter fails where the defaults pass (same dtype, region and quantity);
    # the defaults failing elsewhere do not count
    (_row(config="alpha=2"),
     [_row(passed=True), _row(dtype="float32"), _row(region="S"), _row(quantity="derivative")],
     "the defaults pass here: is a parameter of alpha=2 ignored or mis-scaled?"),
    (_row(config="alpha=2"), [_row(passed=False)], "loses digits: 10" + LOSES),
    (_row(config="alpha=2"), [_row(config="beta=1", passed=True)], "loses digits: 10" + LOSES),
    # the derivative is wrong where the value (same dtype, region, config) passes
    (_row(quantity="derivative", error_ulp=2e6, dtype="float32"),
     [_row(dtype="float32", passed=True), _row(), _row(dtype="float32", region="S")],
     "wrong derivative: the value agrees, its derivative does not"),
    (_row(quantity="derivative", error_ulp=1e6 + 0.5, dtype="float32"),
     [_row(dtype="float32", passed=True)],
     "wrong derivative: the value agrees, its derivative does not"),
    (_row(quantity="derivative", error_ulp=1e6, dtype="float32", torch_max_ulp=1e4),
     [_row(dtype="float32", passed=True)], "loses digits: 100" + LOSES),
    (_row(quantity="derivative", error_ulp=2e6, dtype="float32", torch_max_ulp=1e4),
     [_row(dtype="float32", passed=False)], "loses digits: 200" + LOSES),
    (_row(quantity="derivative", error_ulp=50.0, dtype="float32"),
     [_row(dtype="float32", passed=True)], "loses digits: 50" + LOSES),
    # float64 with float32-sized relative errors, (1e-9, 1e-5) exclusive
    (_row(error_ulp=1e-7 / EPS64),
     [_row(dtype="float32", passed=True), _row(dtype="float32", config="beta=1"),
      _row(region="S")], F64.format("1e-07", " (float32 passes)")),
    (_row(error_ulp=1e-7 / EPS64), [_row(dtype="float32")], F64.format("1e-07", "")),
    (_row(error_ulp=1e-9 / EPS64), [], "loses digits: 4.5e+06" + LOSES),
    (_row(error_ulp=1e-5 / EPS64), [], "loses digits: 4.5e+10" + LOSES),
    (_row(error_ulp=1e-3 / EPS64), [], "loses digits: 4.5e+12" + LOSES),
    # float32 with half-precision-sized relative errors, (1e-5, 1e-1) exclusive
    (_row(dtype="float32", error_ulp=1e-3 / EPS32), [], F32.format("0.001")),
    (_row(dtype="float32", error_ulp=1e-5 / EPS32), [], "loses digits: 83.9" + LOSES),
    (_row(dtype="float32", error_ulp=0.1 / EPS32), [], "loses digits: 8.39e+05" + LOSES),
    (_row(dtype="float64", error_ulp=1e-3 / EPS32), [], "loses digits: 8.39e+03" + LOSES),
    # a wrong formula: error > 1e6 ulps, relative > 1e-2, torch below 1e3 ulps (all strict)
    (_row(dtype="float32", error_ulp=1e6 + 0.5), [], WRONG_FORMULA),
    (_row(dtype="float32", error_ulp=1e6), [], "loses digits: 1e+06" + LOSES),
    (_row(dtype="float32", error_ulp=2e6), [], WRONG_FORMULA),
    (_row(dtype="float32", error_ulp=2e6, torch_max_ulp=1e3), [], "loses digits: 2e+03" + LOSES),
    (_row(dtype="float32", error_ulp=2e6, torch_max_ulp=999.5), [], WRONG_FORMULA),
    (_row(dtype="float64", error_ulp=1e-2 / EPS64), [], "loses digits: 4.5e+13" + LOSES),
    (_row(dtype="float64", error_ulp=2e6), [], "loses digits: 2e+06" + LOSES),
    (_row(dtype="float64", error_ulp=1e-1 / EPS64, torch_max_ulp=2e3), [],
     "loses digits: 2.25e+11" + LOSES),
    # the ratio to torch's error (at least 1 ulp)
    (_row(error_ulp=10.0, torch_max_ulp=1.5), [], "loses digits: 6.67" + LOSES),
    (_row(error_ulp=10.0, torch_max_ulp=0.25), [], "loses digits: 10" + LOSES),
])
def test_diagnosis_of_a_failing_cell(row, others, expected):
    assert _why(row, *others) == expected


def test_failures_are_listed_per_configuration_worst_first():
    frame = pd.DataFrame([
        _row(config="alpha=2", error_ulp=50.0, worst_x=1.0, allowed_ulp=16.0),
        _row(error_ulp=20.0, worst_x=2.0, allowed_ulp=16.0),
        _row(error_ulp=60.0, worst_x=3.0, allowed_ulp=16.0),
        _row(config="alpha=2", error_ulp=40.0, worst_x=4.0, allowed_ulp=16.0),
        _row(error_ulp=90.0, worst_x=5.0, allowed_ulp=16.0, passed=True),
    ]).assign(max_ulp=1.0)
    out = CA._diagnose(frame, "elu")
    assert [f.split(" ulps")[0].split(": ")[1] for f in out] == ["50", "40", "60", "20"]
    assert out[0].startswith("forward R (float64, alpha=2): 50 ulps at x=1.0 (expected 2.0, "
                             "got 1.0; allowed 16, torch's worst here 1)")


def test_names_of_what_users_bring():
    def act(x):
        return x

    assert CA._name(act) == f"{__name__}.test_names_of_what_users_bring.<locals>.act"
    assert CA._name(torch.nn.ELU) == "torch.nn.modules.activation.ELU"
    assert CA._name(torch.nn.ELU()) == "torch.nn.modules.activation.ELU"
    assert CA._name(np.tanh) == "numpy.ufunc"     # an instance is named by its type
    assert CA._name((torch.nn.ELU, act)) == (
        f"(torch.nn.modules.activation.ELU, {__name__}.test_names_of_what_users_bring"
        ".<locals>.act)")


def test_kinds_and_their_errors():
    with pytest.raises(TypeError, match=r"^a NumPy activation is a pair \(forward, backward\) "
                                        r"of callables$"):
        CA._kind((np.tanh, 3))
    with pytest.raises(TypeError, match=r"^a NumPy activation is a pair"):
        CA._kind((np.tanh,))
    with pytest.raises(TypeError, match=r"^fn must be a callable on tensors, an nn.Module, an "
                                        r"autograd.Function or a \(forward, backward\) pair, "
                                        r"got int$"):
        CA._kind(3)
    assert CA._kind(torch.nn.ELU()) == "module"
    assert CA._kind(torch.nn.ELU) == "module_class"
    assert CA._kind(F.elu) == "callable"


def test_parameters_each_kind_accepts():
    names = {"alpha": 1.0}

    def backward_only_alpha(x, dy, alpha=1.0):
        return dy

    def forward_no_alpha(x):
        return x

    assert CA._param_names((forward_no_alpha, backward_only_alpha), "numpy", names) == []

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, alpha):
            return x

    assert CA._param_names(Fn, "function", names) == ["alpha"]

    class FnNoAlpha(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

    assert CA._param_names(FnNoAlpha, "function", names) == []
    assert CA._param_names(torch.nn.ELU, "module_class", names) == ["alpha"]

    class TakesAlpha(torch.nn.Module):
        def forward(self, x, alpha=1.0):
            return F.elu(x, alpha)

    # an instance is used as it is: its forward's parameters are not the activation's
    assert CA._param_names(TakesAlpha(), "module", names) == []
    # builtins without a signature are asked
    assert CA._accepted(torch.tanh, {"approximate": "none"}, torch.zeros(1)) == []
    assert CA._accepted(F.gelu, {"approximate": "none"}, torch.zeros(1)) == ["approximate"]
    assert CA._param_names(F.gelu, "callable", {"approximate": "none"}) == ["approximate"]


def test_a_module_instance_is_checked_at_the_defaults_only_with_a_note():
    class TakesAlpha(torch.nn.Module):
        def forward(self, x, alpha=1.0):
            return F.elu(x, alpha)

    r = check_activation(TakesAlpha(), reference="elu", dtypes=("float64",), points=10)
    assert r.passed, str(r)
    assert set(r.frame["config"]) == {"defaults"}
    assert r.notes == [
        f"  note: {CA._name(TakesAlpha())} takes no alpha; not checked with alpha=0.5",
        f"  note: {CA._name(TakesAlpha())} takes no alpha; not checked with alpha=2.0"]
    assert "takes no beta, threshold" not in "".join(r.notes)


def test_note_names_every_missing_parameter():
    def softplus(x):
        return F.softplus(x)

    r = check_activation(softplus, reference="softplus", dtypes=("float64",), points=10,
                         configs=None)
    assert r.passed, str(r)
    assert r.notes == [f"  note: {CA._name(softplus)} takes no beta; not checked with beta=2.0",
                       (f"  note: {CA._name(softplus)} takes no threshold; not checked with "
                       "threshold=5.0")]
    assert CA._cfg_id({"beta": 2.0, "threshold": 5.0}) == "beta=2.0, threshold=5.0"
    assert CA._cfg_id({}) == "defaults"


def _raised(fn, **kw):
    r = check_activation(fn, reference="elu", dtypes=("float64",), configs=[{}], points=10,
                         **kw)
    assert not r.passed
    assert r.frame.to_dict("records") == [{
        "config": "defaults", "dtype": "float64", "region": "all", "quantity": "both",
        "passed": False, "error": r.failures[0]}]
    assert len(r.failures) == 1
    assert r.reference == "elu"
    assert r.activation == CA._name(fn)
    return r.failures[0]


def test_what_a_broken_activation_is_reported_with():
    assert _raised(lambda x: x.detach().numpy()) == (
        "defaults float64: raised TypeError: returned ndarray, not a tensor")
    assert _raised(lambda x: x.detach()) == (
        "defaults float64: raised TypeError: autograd gives no gradient for x (is the result "
        "detached, or computed outside torch?)")
    assert _raised(lambda x: torch.ones_like(x, requires_grad=True)) == (
        "defaults float64: raised TypeError: autograd gives no gradient for x (is the result "
        "detached?)")
    assert _raised((lambda x: x[:3], lambda x, dy: dy)).startswith(
        "defaults float64: raised ValueError: value has shape (3,) for an input of shape (")
    assert _raised((lambda x: x, lambda x, dy: dy[:2])).startswith(
        "defaults float64: raised ValueError: derivative has shape (2,) for an input of shape")
    assert _raised((lambda x: x.astype(np.float32), lambda x, dy: dy)) == (
        "defaults float64: raised TypeError: value has dtype float32 for float64 input")
    assert _raised((lambda x: x, lambda x, dy: dy.astype(np.float32))) == (
        "defaults float64: raised TypeError: derivative has dtype float32 for float64 input")


def test_the_device_is_used_for_the_users_function_and_torchs():
    # on the meta device nothing can be read back: the user's function is reported as
    # failing there, and the reference run on that device raises
    r = check_activation(F.elu, reference="elu", dtypes=("float64",), configs=[{}],
                         points=10, device="meta")
    assert not r.passed
    assert r.failures[0].startswith("defaults float64: raised ")
    with pytest.raises((NotImplementedError, RuntimeError)):
        CA._torch_reference("elu", {"alpha": 1.0}, np.ones(3), "meta")


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"^give either configs= or parameters as keywords, not "
                                        "both$"):
        check_activation(F.elu, reference="elu", configs=[{}], alpha=0.5)
    with pytest.raises(ValueError, match=r"expected one of sigmoid, tanh, "):
        check_activation(F.elu, reference="nope")
    with pytest.raises(ValueError, match=r"is not \(expected one of sigmoid, tanh, "):
        check_activation(F.softmax, reference="softmax")


def test_regions_split_the_grid_and_every_cell_has_its_columns():
    r = check_activation(F.elu, reference="elu", dtypes=("float64",), configs=[{}], points=30)
    fwd = r.frame[r.frame.quantity == "forward"]
    x = CA.accuracy._cached_truth("elu", (("alpha", 1.0),), "float64", 30, "forward")[0]
    assert fwd["points"].sum() == x.size
    assert list(fwd["region"]) == [name for name, *_ in CA.REGIONS]
    assert r.frame["error"].isna().all()
    assert {"max_ulp", "kappa", "torch_excess", "nonfinite", "false_zeros"} <= set(r.frame)


def test_a_function_that_raises_is_reported_for_every_dtype():
    def broken(x):
        raise RuntimeError("no kernel")

    r = check_activation(broken, reference="tanh", points=10)
    assert list(r.frame["dtype"]) == ["float64", "float32"]
    assert r.failures == ["defaults float64: raised RuntimeError: no kernel",
                          "defaults float32: raised RuntimeError: no kernel"]
