"""The pieces of suite.conformance.optimizers on hand-made inputs: tolerances and floors in
closed form, the failure and result texts, which hyperparameters an optimizer accepts, the
relation of a differing state entry to torch's, and the argument checks. Fast: nothing here
runs a conformance grid."""

import inspect
import re

import numpy as np
import pandas as pd
import pytest
import torch

from suite.conformance import check_optimizer
from suite.conformance import optimizers as O
from suite.probes import PROBES
from suite.subjects import resolve
from suite.trajectory import QuantityResult, Trajectory
from tests import lean_optimizers

# ---- tolerances, floors, configurations -----------------------------------------------------


def test_subnormal_floor_is_tiny_over_u():
    assert O.subnormal_floor("float64") == 2.0**-1022 / 2.0**-53 == 2.0**-969
    assert O.subnormal_floor("float32") == 2.0**-126 / 2.0**-24 == 2.0**-102
    assert O.subnormal_floor("float16") == 2.0**-14 / 2.0**-11 == 2.0**-3
    assert O.subnormal_floor("bfloat16") == 2.0**-126 / 2.0**-8 == 2.0**-118


def test_tolerance_closed_forms():
    assert O.tolerance("float64", 200) == 50 * 2.0**-53 * 200
    assert O.tolerance("float32", 7) == 50 * 2.0**-24 * 7
    assert O.tolerance("float32", 0) == 50 * 2.0**-24   # at least one step
    assert O.tolerance("float16", 200) == 8 * 2.0**-11   # not growing with the steps
    assert O.tolerance("bfloat16", 1) == 8 * 2.0**-8
    with pytest.raises(ValueError, match="unsupported dtype 'int8'; expected one of float64, "
                                         "float32, float16, bfloat16"):
        O.tolerance("int8", 10)


def test_generic_configs_are_defaults_switches_and_weight_decay():
    # sgd: nesterov alone is invalid (it needs momentum), maximize is valid; wd 0.1
    assert O.generic_configs("sgd") == [{}, {"maximize": True}, {"weight_decay": 0.1}]
    assert O.generic_configs("rmsprop") == [{}, {"centered": True}, {"maximize": True},
                                            {"weight_decay": 0.1}]
    assert O.generic_configs("adam") == [{}, {"amsgrad": True}, {"maximize": True},
                                         {"weight_decay": 0.1}]
    # rprop has no weight decay
    assert O.generic_configs("rprop") == [{}, {"maximize": True}]


def test_configs_resolve_against_their_reference():
    for ref, cfgs in O.CONFIGS.items():
        spec = O.optim.get_spec(ref)
        for c in cfgs:
            spec.resolve(**c)
    # adamw repeats adam's configurations, plus a strong decoupled decay
    assert O.CONFIGS["adamw"][:-1] == O.CONFIGS["adam"]
    assert O.CONFIGS["adamw"][-1] == {"lr": 0.01, "weight_decay": 0.5}


# ---- texts ----------------------------------------------------------------------------------


def test_format_pair_digits():
    assert O.format_pair(1.0, 1.5) == ("1", "1.5")
    assert O.format_pair(1.0, 1.0 + 1e-7) == ("1", "1.0000001")
    # six digits when six tell them apart (seven would show more than needed)
    assert O.format_pair(1.2345678, 1.2355678) == ("1.23457", "1.23557")
    # 17 digits still tell every distinct double apart; equal values fall back to repr
    assert O.format_pair(0.1, 0.1) == ("0.1", "0.1")


def _failure(**kw):
    base = {"config": "sgd(lr=0.1)", "hyper": {"lr": 0.1}, "probe": "scaled",
            "dtype": "float64", "step": 3, "quantity": "param[0]", "error": 0.5, "tol": 1e-12}
    return O.Failure(**{**base, **kw})


def test_failure_text():
    f = _failure(reference_value=1.0, got_value=1.5, index=(1, 2))
    assert str(f) == ("sgd(lr=0.1) [scaled, float64]: param[0][1, 2] first differs at step 3: "
                      "reference 1, got 1.5 (|diff| 0.5, error 0.5 > tol 1e-12)")
    # no values: no "reference ... got" part; no index: no brackets
    assert str(_failure()) == ("sgd(lr=0.1) [scaled, float64]: param[0] first differs at step "
                               "3 (error 0.5 > tol 1e-12)")
    # one value only is not shown either
    assert "reference" not in str(_failure(reference_value=1.0))
    # an error message (a raise) is shown as such
    msg = _failure(step=None, quantity="", error=np.inf, message="raised: boom")
    assert str(msg) == "sgd(lr=0.1) [scaled, float64]: raised: boom"
    # a message with values is a value failure (the values win)
    both = _failure(reference_value=2.0, got_value=3.0, message="note")
    assert "reference 2, got 3 (|diff| 1," in str(both)
    na = O.NotApplicable("adam(amsgrad=True)", {}, ("amsgrad",), "needs amsgrad=True")
    assert str(na) == "adam(amsgrad=True): needs amsgrad=True"


def test_cfg_id_and_helpers():
    assert O._cfg_id("adam", {"lr": 0.01, "betas": (0.8, 0.9)}) == \
        "adam(lr=0.01, betas=(0.8, 0.9))"
    assert O._cfg_id("adam", {}) == "adam()"
    assert O._entry("exp_avg[3]") == "exp_avg"
    assert O._entry("step") == "step"
    assert O._same((0.9, 0.999), [0.9, 0.999])
    assert O._same([0.9, 0.999], (0.9, 0.999))
    assert not O._same((0.9, 0.999), (0.9, 0.99))
    assert O._same(0.5, 0.5)
    assert not O._same(0.5, 0.25)
    assert O._same(np.float64(0.5), 0.5) is True
    assert O._np_dtype("bfloat16") == "float16"
    assert O._np_dtype("float32") == "float32"
    assert O._fmt(1 / 3) == "0.333333"
    assert O._fmt(1234567.0) == "1.23457e+06"


def test_common_explanations():
    fa = _failure(explained_by=("eps_inside (eps in the root)", "lr_scaled (x 2)"))
    fb = _failure(explained_by=("lr_scaled (x 2.5)", "eps_inside (eps in the root)"))
    # common to both, in the first failure's order and with its labels
    assert O._common_explanations([fa, fb]) == ["eps_inside (eps in the root)",
                                                "lr_scaled (x 2)"]
    # one failure unexplained: nothing is common
    assert O._common_explanations([fa, _failure()]) == []
    assert O._common_explanations([]) == []
    # a pair a + b is dropped where a alone explains every failure, kept otherwise
    pair = _failure(explained_by=("a (x)", "a + b (x; y)", "c + d (z; w)"))
    assert O._common_explanations([pair, pair]) == ["a (x)", "c + d (z; w)"]


def _result(passed, failures=(), strict=False, state="compatible", na=(), notes=(),
            diffs=()):
    frame = pd.DataFrame({"config": [f"c{i}" for i in range(len(passed))],
                          "applicable": [p is not None for p in passed],
                          "passed": list(passed)})
    return O.ConformanceResult("sgd", "MySGD", frame, list(failures), list(notes), list(na),
                               state, list(diffs), strict)


def test_result_verdicts():
    ok = _result([True, True, None])
    assert len(ok.applicable) == 2
    assert ok.params_agree
    assert ok.passed
    assert bool(ok)
    bad = _result([True, False])
    assert not bad.params_agree
    assert not bad.passed
    assert not bool(bad)
    # nothing applicable is not a pass
    none = _result([None, None])
    assert not none.params_agree
    assert not none.passed
    empty = O.ConformanceResult("sgd", "MySGD", pd.DataFrame())
    assert len(empty.applicable) == 0
    assert not empty.passed
    # strict: the state must be compatible too
    assert _result([True], state="compatible", strict=True).passed
    assert not _result([True], state="different", strict=True).passed
    assert _result([True], state="different", strict=False).passed


def test_result_text():
    na = O.NotApplicable("sgd(nesterov=True)", {}, ("nesterov",), "needs nesterov=True")
    f1 = _failure(config="sgd(lr=0.1)", step=5, reference_value=1.0, got_value=1.5,
                  explained_by=("lr_scaled (x 1.5)",))
    f2 = _failure(config="sgd(lr=0.1)", probe="model", step=2, reference_value=1.0,
                  got_value=2.0, explained_by=("lr_scaled (x 2)",))
    f3 = _failure(config="sgd(lr=0.2)", step=None, quantity="", error=np.inf,
                  message="raised: boom")
    r = _result([True, False, False, None], failures=[f1, f2, f3], state="different",
                strict=True, na=[na], notes=["  note: one"], diffs=["exp_avg: differs"])
    lines = str(r).split("\n")
    assert lines[0] == ("MySGD vs reference 'sgd': FAIL (1/3 applicable cells agree; 1 "
                        "configuration not applicable); state: different (strict)")
    assert lines[1] == "  note: one"
    assert lines[2] == "  not applicable: sgd(nesterov=True): needs nesterov=True"
    assert lines[3] == "  state: exp_avg: differs"
    # per configuration: the earliest failing step first, the count of the others
    assert lines[4] == f"  - {f2}"
    assert lines[5] == "    (1 more failing probe/dtype cells for sgd(lr=0.1))"
    assert lines[6] == "    consistent with: lr_scaled (x 1.5)"
    # a raise without values: no "no catalogued variant" line
    assert lines[7] == f"  - {f3}"
    assert len(lines) == 8
    assert r.explained() == {"lr_scaled": ["sgd(lr=0.1) [scaled, float64]",
                                           "sgd(lr=0.1) [model, float64]"]}


def test_result_text_partial_and_missing_explanations():
    f1 = _failure(step=4, reference_value=1.0, got_value=1.5, explained_by=("a (x)", "b (y)"))
    f2 = _failure(step=None, reference_value=1.0, got_value=1.5)
    f3 = _failure(probe="model", step=1, reference_value=1.0, got_value=1.5,
                  explained_by=("b (y)",))
    r = _result([False, False, False], failures=[f2, f1, f3], state="not exposed")
    lines = str(r).split("\n")
    assert lines[0] == ("MySGD vs reference 'sgd': FAIL (0/3 applicable cells agree); "
                        "state: not exposed")
    # a step of None sorts after every numbered step
    assert lines[1] == f"  - {f3}"
    assert lines[2] == "    (2 more failing probe/dtype cells for sgd(lr=0.1))"
    assert lines[3] == "    consistent in some cells with: a, b"
    r = _result([False], failures=[_failure(reference_value=1.0, got_value=1.5)])
    assert str(r).split("\n")[-1] == "    no catalogued variant reproduces it"
    two = O.NotApplicable("x", {}, (), "r")
    r = _result([None], na=[two, two])
    assert str(r).split("\n")[0] == ("MySGD vs reference 'sgd': FAIL (nothing checked: no "
                                     "configuration is applicable); state: compatible")
    r = _result([True, None], na=[two, two])
    assert "(1/1 applicable cells agree; 2 configurations not applicable)" in str(r)
    assert "PASS" in str(r)


# ---- what an optimizer accepts ----------------------------------------------------------------


class _Opt:
    """An optimizer-like object that keeps the names in ``keep`` in its param_groups."""

    def __init__(self, params, keep, **kw):
        self.param_groups = [{"params": list(params), **{k: kw[k] for k in kw if k in keep}}]
        self.defaults = {}


def test_accepted_hyperparameters_from_the_signature():
    def f(params, lr=0.1, *args, momentum=0.0):
        return _Opt(params, ())

    subject = resolve(f, reference="sgd")
    names = {"lr": 0.001, "momentum": 0.0, "nesterov": False, "args": 1}
    assert O.accepted_hyperparameters(subject, names) == {
        "lr": "accepted", "momentum": "accepted", "nesterov": "not accepted",
        "args": "not accepted"}   # *args takes no keyword

    def g(params, beta=0.0, /, lr=0.1):
        return _Opt(params, ())

    # positional-only names are not keywords; rename maps the reference's name
    subject = resolve(g, reference="sgd", rename={"momentum": "beta"})
    assert O.accepted_hyperparameters(subject, {"momentum": 0.0, "lr": 1.0}) == {
        "momentum": "not accepted", "lr": "accepted"}
    # a fixed hyperparameter of the subject counts as accepted
    subject = resolve(f, reference="sgd", nesterov=False)
    assert O.accepted_hyperparameters(subject, {"nesterov": False})["nesterov"] == "accepted"


def test_accepted_hyperparameters_behind_kwargs():
    calls = []

    def h(params, **kw):
        calls.append(kw)
        if "bad" in kw:
            raise TypeError("unexpected keyword 'bad'")
        if "boom" in kw:
            raise RuntimeError("understood, but no")
        if "plain" in kw:
            return object()   # no param_groups: taken at its word
        return _Opt(params, ("lr",), **kw)

    subject = resolve(h, reference="sgd")
    out = O.accepted_hyperparameters(subject, {"lr": 0.5, "momentum": 0.9, "bad": 1,
                                               "boom": 2, "plain": 3})
    assert out == {"lr": "accepted", "momentum": "ignored", "bad": "not accepted",
                   "boom": "accepted", "plain": "accepted"}
    # each name is tried alone with the given default value
    assert calls == [{"lr": 0.5}, {"momentum": 0.9}, {"bad": 1}, {"boom": 2}, {"plain": 3}]


def test_try_construction_details():
    seen = {}

    class Keeps:
        def __init__(self, params, **kw):
            seen["params"] = params
            seen["kw"] = kw
            self.param_groups = [{"params": params}]
            self.defaults = dict(kw)   # kept in defaults, not in the group

    subject = resolve(Keeps, reference="sgd", foreach=False)
    assert O._try_construction(subject, "momentum", 0.9) == "accepted"
    assert seen["kw"] == {"foreach": False, "momentum": 0.9}
    (p,) = seen["params"]
    assert isinstance(p, torch.nn.Parameter)
    assert p.dtype == torch.float64
    assert p.shape == (2,)

    class NoDefaults:
        def __init__(self, params, **kw):
            self.param_groups = [{"params": params}]
            self.defaults = None

    assert O._try_construction(resolve(NoDefaults, reference="sgd"), "lr", 1.0) == "ignored"

    class OddGroups:
        def __init__(self, params, **kw):
            self.param_groups = []

    assert O._try_construction(resolve(OddGroups, reference="sgd"), "lr", 1.0) == "accepted"

    class ListGroups:
        def __init__(self, params, **kw):
            self.param_groups = [["not a dict"]]

    assert O._try_construction(resolve(ListGroups, reference="sgd"), "lr", 1.0) == "accepted"

    class TupleGroups:
        def __init__(self, params, **kw):
            self.param_groups = ({"params": params},)

    assert O._try_construction(resolve(TupleGroups, reference="sgd"), "lr", 1.0) == "accepted"


def test_signature_without_introspection_counts_as_kwargs():
    class Opaque:
        __signature__ = "not a signature"

        def __init__(self, params, **kw):
            self.param_groups = [{"params": params, **kw}]

    with pytest.raises(TypeError):
        inspect.signature(Opaque)
    assert O.signature_supports(Opaque, ["anything"])
    subject = resolve(Opaque, reference="sgd")
    assert O.accepted_hyperparameters(subject, {"lr": 0.1}) == {"lr": "accepted"}


def test_signature_supports():
    def f(params, lr, momentum=0.0):
        pass

    def g(params, **kw):
        pass

    assert O.signature_supports(f, ["lr", "momentum"])
    assert not O.signature_supports(f, ["lr", "nesterov"])
    assert O.signature_supports(g, ["anything"])
    assert O.signature_supports(f, [])


# ---- state relations ------------------------------------------------------------------------


def _traj(q, values, dtype=None):
    values = np.asarray(values, dtype=float)
    present = np.ones(len(values), bool)
    t = Trajectory(values={q: values}, present={q: present}, steps=len(values) - 1)
    if dtype:
        t.dtypes[q] = dtype
    return t


def _relation(a, b, hyper=None, q="exp_avg[0]", note="", params_agree=True, dtype="float64",
              stored=None, tol=1e-12):
    r = QuantityResult(q, 1.0, 1, 1, note)
    return O._state_relation(_traj(q, a, stored), _traj(q, b), r, tol, 0.0, dtype,
                             hyper or {}, params_agree)


T = np.arange(6.0)
B = np.stack([1.0 + T, 2.0 - 0.5 * T, 0.3 * T**2 + 1]).T   # (steps + 1, 3), no row a multiple
B[0] = [1.0, 1.0, 1.0]


def _a0(a):
    a = np.array(a, float)
    a[0] = [7.0, -3.0, 5.0]   # the initial row is not compared: it fits no relation
    return a


def test_state_relation_constant_factor():
    kind, desc = _relation(_a0(2.5 * B), B)
    assert (kind, desc) == ("factor", "2.5 x torch.optim's at every step (a constant factor)")


def test_state_relation_bias_corrections():
    t = np.maximum(T, 1.0)[:, None]   # row 0 is replaced by _a0
    kind, desc = _relation(_a0(B / (1 - 0.8**t)), B, {"betas": (0.8, 0.95)})
    assert (kind, desc) == ("factor per step",
                            "torch.optim's divided by 1 - beta1^t (bias-corrected)")
    kind, desc = _relation(_a0(B * (1 - 0.95**t)), B, {"betas": (0.8, 0.95)})
    assert (kind, desc) == ("factor per step", "torch.optim's times 1 - beta2^t")
    kind, desc = _relation(_a0(B / (1 - 0.9**t)), B, {"momentum": 0.9})
    assert desc == "torch.optim's divided by 1 - momentum^t (bias-corrected)"
    kind, desc = _relation(_a0(B * (1 - 0.99**t)), B, {"alpha": 0.99, "momentum": 0.0})
    assert desc == "torch.optim's times 1 - alpha^t"
    # the same factor without a matching hyperparameter: a factor per step, with its values
    kind, desc = _relation(_a0(B / (1 - 0.8**t)), B, {})
    assert kind == "factor per step"
    assert desc == (f"a factor per step times torch.optim's ({1 / (1 - 0.8):.6g} at step 1, "
                    f"{1 / (1 - 0.8**5):.6g} at step 5)")


def test_state_relation_transforms_and_others():
    assert _relation(_a0(np.sqrt(np.abs(B))), B) == ("transform", "the square root of torch.optim's")
    assert _relation(_a0(B**2), B) == ("transform", "the square of torch.optim's")
    rng = np.random.default_rng(0)
    kind, desc = _relation(_a0(rng.standard_normal(B.shape)), B)
    assert (kind, desc) == ("other", "differs from torch.optim's exp_avg (first at step 1)")


def test_state_relation_kinds_before_the_values():
    assert _relation(B, B, q="step[0]") == ("counter",
                                            "the step counter differs from torch.optim's")
    assert _relation(B, B, note="state not exposed") == ("presence", "state not exposed")
    # a narrower stored dtype is named; bfloat16 counts as 2 bytes
    assert _relation(B, B, stored="float16", dtype="float32") == \
        ("dtype", "kept in float16 (parameters in float32)")
    assert _relation(B, B, stored="bfloat16", dtype="float32")[0] == "dtype"
    assert _relation(_a0(2 * B), B, stored="float64", dtype="float32")[0] == "factor"
    # bfloat16 and float16 are both two bytes: neither is narrower than the other
    assert _relation(_a0(2 * B), B, stored="bfloat16", dtype="float16")[0] == "factor"
    assert _relation(_a0(2 * B), B, stored="float32", dtype="float32")[0] == "factor"
    assert _relation(_a0(2 * B), B, params_agree=False) == \
        ("with parameters", "differs along with the parameters")


def test_state_relation_without_common_steps():
    q = "exp_avg[0]"
    got, ref = _traj(q, 2 * B), _traj(q, B)
    got.present[q][:] = False
    got.present[q][0] = True
    r = QuantityResult(q, 1.0, 1, 1)
    assert O._state_relation(got, ref, r, 1e-12, 0.0, "float64", {}, True) == \
        ("other", "differs")


def test_state_relation_zero_rows_are_skipped_by_the_fit():
    b = B.copy()
    b[2] = 0.0          # torch's entry is 0 at one step: no factor there, the others fit
    a = _a0(3.0 * b)
    assert _relation(a, b) == ("factor", "3 x torch.optim's at every step (a constant factor)")


def test_betas():
    assert O._betas({"betas": (0.8, 0.95), "alpha": 0.99, "momentum": 0.0}) == [
        ("beta1", 0.8), ("beta2", 0.95), ("alpha", 0.99)]
    assert O._betas({"momentum": 0.5, "alpha": 1.0}) == [("momentum", 0.5)]
    assert O._betas({"lr": 0.1}) == []


def test_summarise_state():
    rows = [("exp_avg", "c1", "with parameters", "differs along with the parameters"),
            ("exp_avg_sq", "c1", "with parameters", "differs along with the parameters")]
    assert O._summarise_state(rows) == ["exp_avg, exp_avg_sq differ along with the parameters"]
    assert O._summarise_state(rows[:1]) == ["exp_avg differs along with the parameters"]
    rows = [("exp_avg", "c1", "factor", "2 x"), ("exp_avg", "c2", "with parameters", "w"),
            ("exp_avg", "c3", "factor", "2 x")]
    assert O._summarise_state(rows) == ["exp_avg: 2 x"]
    rows = [("m", "c1", "factor", "d1"), ("m", "c2", "factor", "d2"), ("m", "c1", "factor", "d1"),
            ("m", "c3", "factor", "d3"), ("m", "c4", "factor", "d4")]
    assert O._summarise_state(rows) == ["m: d1 in c1; d2 in c2 (and 2 other relations)"]
    rows = [("m", "c1", "factor", "d1"), ("m", "c2", "factor", "d2")]
    assert O._summarise_state(rows) == ["m: d1 in c1; d2 in c2"]
    assert O._summarise_state([]) == []


def test_worst_element():
    q = "param[0]"
    ref = np.ones((4, 2, 3))
    ref[:, 1, 2] = [1.0, 4.0, 2.0, 2.0]   # the running scale of that element is 4 from step 1
    test = ref.copy()
    test[2, 0, 0] += 0.5     # error 0.5 / 1
    test[2, 1, 2] += 3.0     # error 3 / 4 = 0.75: the worst at step 2
    rv, gv, idx, err = O._worst_element(_traj(q, test), _traj(q, ref), q, 2, 0.0)
    assert (rv, gv, idx, err) == (2.0, 5.0, (1, 2), 0.75)
    # a floor above the scale measures against the floor
    assert O._worst_element(_traj(q, test), _traj(q, ref), q, 2, 10.0)[3] == 0.3
    # a scalar quantity
    rv, gv, idx, err = O._worst_element(_traj(q, [1.0, 2.0, 3.0]), _traj(q, [1.0, 2.0, 2.0]),
                                        q, 2, 0.0)
    assert (rv, gv, idx, err) == (2.0, 3.0, (), 0.5)
    assert O._worst_element(_traj("x", test), _traj(q, ref), q, 2, 0.0) == \
        (None, None, (), np.inf)
    assert O._worst_element(_traj(q, test), _traj("x", ref), q, 2, 0.0) == \
        (None, None, (), np.inf)


# ---- argument checks and a tiny run -----------------------------------------------------------


def test_check_optimizer_rejects_bad_arguments():
    sgd = torch.optim.SGD
    with pytest.raises(ValueError, match=r"reference= is required: the gradsuite rule to "
                                         r"compare with \(one of sgd, adagrad"):
        check_optimizer(lambda p, **k: sgd(p, **k))
    for steps in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match=f"steps must be a positive integer, got "
                                             f"{steps!r}"):
            check_optimizer(sgd, "sgd", steps=steps)
    with pytest.raises(ValueError, match=r"^dtypes is empty: nothing to check$"):
        check_optimizer(sgd, "sgd", dtypes=())
    with pytest.raises(ValueError, match=r"^probes is empty: nothing to check$"):
        check_optimizer(sgd, "sgd", probes=())
    every = re.escape(", ".join(PROBES))
    with pytest.raises(ValueError, match=f"^unknown probe 'scale'; expected some of {every}$"):
        check_optimizer(sgd, "sgd", probes="scale")
    with pytest.raises(ValueError, match="unsupported dtype 'float8'"):
        check_optimizer(sgd, "sgd", dtypes="float8")
    with pytest.raises(ValueError, match=r"^configs is empty: nothing to check$"):
        check_optimizer(sgd, "sgd", configs=[])
    with pytest.raises(ValueError, match=r"configs\[1\] = \{'lrr': 1\}: "):
        check_optimizer(sgd, "sgd", configs=[{"lr": 0.1}, {"lrr": 1}])
    with pytest.raises(ValueError, match="rename maps 'beta', 'mom', which sgd does not have; "
                                         "its hyperparameters: lr, momentum"):
        check_optimizer(sgd, "sgd", rename={"mom": "x", "beta": "y"})


def test_check_optimizer_defaults_and_the_shortest_run():
    """200 steps by default (as the README documents), and one step is a valid run."""
    r = check_optimizer(torch.optim.SGD, "sgd", configs=[{"lr": 0.1}], dtypes="float64",
                        probes="scaled")
    assert r.frame["steps"].tolist() == [200]
    r = check_optimizer(torch.optim.SGD, "sgd", configs=[{"lr": 0.1}], dtypes="float64",
                        probes="scaled", steps=1)
    assert r.passed
    assert r.frame["steps"].tolist() == [1]
    assert r.frame["compared_steps"].tolist() == [1]


def test_check_optimizer_notes_hyperparameters_swallowed_by_kwargs():
    """An optimizer that takes every name through **kwargs but keeps only lr in its
    param_groups: the note names exactly the ones it drops (each then treated as
    unsupported); a faithful class gets no such note."""
    class PlainSGD(torch.optim.Optimizer):
        def __init__(self, params, **kw):
            super().__init__(params, {"lr": kw.get("lr", 1e-3)})

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-group["lr"])

    swallow = PlainSGD

    r = check_optimizer(swallow, "sgd", configs=[{"lr": 0.1}], dtypes="float64",
                        probes="scaled", steps=3, explain=False)
    (note,) = [n for n in r.notes if "**kwargs" in n]
    dropped = note.split("note: ")[1].split(" accepted through")[0].split(", ")
    assert dropped == [k for k in O.optim.get_spec("sgd").defaults if k != "lr"]
    assert r.passed   # the configuration uses only lr
    r = check_optimizer(torch.optim.SGD, "sgd", configs=[{"lr": 0.1}], dtypes="float64",
                        probes="scaled", steps=3, explain=False)
    assert not [n for n in r.notes if "**kwargs" in n]


def test_configurations_an_optimizer_cannot_take_are_reported_not_run():
    """A factory taking only lr: the configuration that needs momentum and nesterov is not
    run; every probe x dtype row says why, with the names as the optimizer would spell them
    (rename), and the result lists it once with the full hyperparameters."""
    def only_lr(params, lr=1e-3):
        return torch.optim.SGD(params, lr=lr)

    need = {"lr": 0.1, "momentum": 0.9, "nesterov": True}
    r = check_optimizer(only_lr, "sgd", configs=[{"lr": 0.1}, need],
                        dtypes=("float64", "float32"), probes=("scaled", "sparse"), steps=3,
                        rename={"momentum": "beta"}, explain=False)
    assert r.optimizer == "only_lr"
    reason = "needs momentum=0.9, nesterov=True; only_lr does not accept 'beta', 'nesterov'"
    cid = "sgd(lr=0.1, momentum=0.9, nesterov=True)"
    skipped = r.frame[~r.frame["applicable"].astype(bool)]
    assert skipped[["config", "probe", "dtype", "steps", "reason"]].to_dict("records") == [
        {"config": cid, "probe": p, "dtype": d, "steps": 3, "reason": reason}
        for p in ("scaled", "sparse") for d in ("float64", "float32")]
    assert skipped["passed"].isna().all()
    assert (skipped["hp_momentum"] == "0.9").all()
    (na,) = r.not_applicable
    assert (na.config, na.missing, na.reason) == (cid, ("momentum", "nesterov"), reason)
    assert na.hyper == O.optim.get_spec("sgd").resolve(**need)
    assert r.passed   # the configuration it takes agrees


def test_tiny_run_of_torch_sgd():
    r = check_optimizer(torch.optim.SGD, "sgd", configs=[{"lr": 0.1, "momentum": 0.9}],
                        dtypes="float64", probes="scaled", steps=np.int64(5))
    assert r.passed
    assert r.state == "compatible"
    assert len(r.frame) == 1
    row = r.frame.iloc[0]
    assert (row["config"], row["probe"], row["dtype"], row["steps"]) == \
        ("sgd(lr=0.1, momentum=0.9)", "scaled", "float64", 5)
    assert row["applicable"]
    assert row["passed"]
    assert row["state_agrees"]
    assert row["tol"] >= O.tolerance("float64", 5)
    assert row["hp_momentum"] == "0.9"
    assert row["hp_nesterov"] == "False"
    assert row["compared_steps"] == 5
    assert row["first_bad_step"] is None
    assert row["quantity"] == ""
    assert row["max_error_param"] <= row["tol"]


def test_param_error_is_the_largest_parameter_error():
    ref = Trajectory(values={"param[0]": np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 4.0]]),
                             "param[1]": np.array([1.0, 1.0, 2.0]),
                             "exp_avg[0]": np.array([0.0, 1.0, 1.0])},
                     present={q: np.ones(3, bool) for q in ("param[0]", "param[1]",
                                                            "exp_avg[0]")}, steps=2)
    test = Trajectory(values={"param[0]": np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 5.0]]),
                              "param[1]": np.array([1.0, 1.0, 2.5]),
                              "exp_avg[0]": np.array([0.0, 9.0, 9.0])},
                      present=dict(ref.present), steps=2)
    # param[0]: |5 - 4| / 4 = 0.25; param[1]: |2.8 - 2| / 2 = 0.4; the state's 8 is left out
    test.values["param[1]"][2] = 2.8
    assert O._param_error(test, ref, 0.0) == pytest.approx(0.4, rel=1e-15)
    # a floor of 10 raises both scales: param[0] 1 / 10, param[1] 0.8 / 10
    assert O._param_error(test, ref, 10.0) == pytest.approx(0.1, rel=1e-15)
    # state the test run does not expose is not an error of the parameters
    lean = Trajectory(values={q: v for q, v in test.values.items() if q.startswith("param")},
                      present=dict(test.present), steps=2)
    assert O._param_error(lean, ref, 0.0) == pytest.approx(0.4, rel=1e-15)
    # nothing to compare: 0
    assert O._param_error(Trajectory(steps=2), Trajectory(steps=2), 0.0) == 0.0


def test_state_relation_edges_of_the_tolerance():
    # a fit within the tolerance counts, the tolerance included: one compared step, c = 2.25,
    # the elements off by 0.25 / 2.25 each
    a = np.array([[7.0, -3.0], [2.0, 2.5]])
    b = np.array([[1.0, 1.0], [1.0, 1.0]])
    tol = 0.25 / 2.25
    assert _relation(a, b, tol=tol) == ("factor", ("2.25 x torch.optim's at every step (a "
                                        "constant factor)"))
    assert _relation(a, b, tol=np.nextafter(tol, 0))[0] == "other"
    # the factors per step 1 and 1.3125 differ by exactly 10 tol |c_1| (tol = 2**-5): constant
    b = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    a = np.array([[7.0, -3.0], [1.0, 2.0], [1.3125, 2.625]])
    assert _relation(a, b, tol=2.0**-5) == ("factor", ("1 x torch.optim's at every step (a "
                                            "constant factor)"))   # the first step's factor
    assert _relation(a, b, tol=np.nextafter(2.0**-5, 0))[0] == "factor per step"
    # factors 1, 1.17, 1.34: the spread 0.34 is measured from the first factor and against
    # 10 tol |first| = 0.3, so not constant
    a = np.array([[7.0, -3.0], [1.0, 2.0], [1.17, 2.34], [1.34, 2.68]])
    b = np.array([[1.0, 2.0]] * 4)
    assert _relation(a, b, tol=0.03) == (
        "factor per step", "a factor per step times torch.optim's (1 at step 1, 1.34 at step 3)")


def test_state_relation_fit_is_measured_above_the_floor():
    """Tiny entries (1e-6) fitted to 1e-9: beyond the tolerance relative to themselves, within
    it relative to a floor of 1."""
    rng = np.random.default_rng(1)
    b = 1e-6 * (1.0 + rng.random((5, 4)))
    a = 2.0 * b + 1e-9 * rng.standard_normal(b.shape)
    q = "exp_avg[0]"
    r = QuantityResult(q, 1.0, 1, 1)
    kind, _ = O._state_relation(_traj(q, _a0_4(a)), _traj(q, b), r, 1e-6, 1.0, "float64", {},
                                True)
    assert kind == "factor per step"
    kind, _ = O._state_relation(_traj(q, _a0_4(a)), _traj(q, b), r, 1e-6, 0.0, "float64", {},
                                True)
    assert kind == "other"


def _a0_4(a):
    a = np.array(a, float)
    a[0] = [7.0, -3.0, 5.0, 1.0]
    return a


def test_state_relation_bias_correction_within_ten_tolerances():
    """The factor per step matches 1 - alpha^t within 10 tol relative: exactly at that edge it
    is named, beyond it (10.5 tol) not. alpha = 0.5 and tol = 2**-10 keep every number exact."""
    tol = 2.0**-10
    t = np.array([1.0, 2.0, 3.0])
    b = np.array([[1.0, 2.0]] * 4)
    for k, named in ((10.0, True), (10.5, False)):
        c = (1 - 0.5**t) * (1 + k * tol)
        a = np.vstack([[7.0, -3.0], c[:, None] * b[1:]])
        kind, desc = _relation(a, b, {"alpha": 0.5}, tol=tol)
        assert kind == "factor per step"
        assert (desc == "torch.optim's times 1 - alpha^t") is named, (k, desc)
    # 1e-12 relative off the bias correction: within 10 tol = 1e-11 (and tol = 1e-12 as a
    # fraction of the factor, not divided by it)
    t = np.arange(1.0, 6.0)
    c = (1 / (1 - 0.8**t)) * (1 + 1e-12)
    b = np.vstack([np.ones(3), (1.0 + np.arange(15.0)).reshape(5, 3)])
    a = np.vstack([[7.0, -3.0, 5.0], c[:, None] * b[1:]])
    assert _relation(a, b, {"betas": (0.8, 0.9)}, tol=1e-12)[1] == \
        "torch.optim's divided by 1 - beta1^t (bias-corrected)"


def test_state_relation_transform_edges():
    # the square root within the tolerance, the tolerance included: one element 0.25 / 2 off
    b = np.array([[1.0, 1.0], [1.0, 4.0], [1.0, 4.0]])
    a = np.array([[7.0, -3.0], [1.0, 2.0], [1.0, 2.5]])
    assert _relation(a, b, tol=0.25) == ("transform", "the square root of torch.optim's")
    assert _relation(a, b, tol=np.nextafter(0.25, 0)) == \
        ("other", "differs from torch.optim's exp_avg (first at step 1)")
    # tiny entries: the square root to 1e-7 is within 1e-6 of a floor of 1, not of the 1e-2
    # the values themselves have
    rng = np.random.default_rng(2)
    b = 1e-4 * (1.0 + 9.0 * rng.random((5, 4)))
    a = np.sqrt(b) + 1e-7 * rng.standard_normal(b.shape)
    q = "exp_avg[0]"
    r = QuantityResult(q, 1.0, 1, 1)
    assert O._state_relation(_traj(q, _a0_4(a)), _traj(q, b), r, 1e-6, 1.0, "float64", {},
                             True)[0] == "transform"
    assert O._state_relation(_traj(q, _a0_4(a)), _traj(q, b), r, 1e-6, 0.0, "float64", {},
                             True)[0] == "other"


def test_explanation_columns_of_a_failing_cell():
    """A failing cell that no lr factor explains: lr_factor is NaN (a float), explained_by
    names what does explain it."""
    r = check_optimizer(lean_optimizers.NoBiasAdam, "adam", configs=[{"lr": 0.01}],
                        dtypes="float64", probes="scaled", steps=10)
    assert not r.passed
    (row,) = r.frame.to_dict("records")
    assert not row["passed"]
    assert isinstance(row["lr_factor"], float)
    assert np.isnan(row["lr_factor"])
    assert "no_bias_correction" in row["explained_by"]


class _SGDm(torch.optim.Optimizer):
    """SGD with momentum written out: ``scale`` on the step, the momentum buffer kept in
    ``state_dtype`` under ``buf_name``, and optionally the first step's buffer damped
    (``damp_first``: buf = (1 - dampening) g instead of g, a second deviation)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, scale=1.0,
                 state_dtype=None, buf_name="momentum_buffer", damp_first=False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening})
        self.scale, self.state_dtype, self.buf_name = scale, state_dtype, buf_name
        self.damp_first = damp_first

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mu, damp = group["momentum"], group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                # buf_name None: the buffer is kept outside the optimizer's state
                st = self.state[p] if self.buf_name else self.__dict__.setdefault("_bufs", {})
                dt = self.state_dtype or p.dtype
                key = self.buf_name or p
                if key not in st:
                    first = g * (1 - damp) if self.damp_first else g
                    st[key] = first.to(dt).clone()
                else:
                    b = st[key].to(p.dtype).mul(mu).add(g, alpha=1 - damp)
                    st[key] = b.to(dt)
                p.add_(st[key].to(p.dtype), alpha=-group["lr"] * self.scale)


def _check_sgdm(dtype="float64", **kw):
    return check_optimizer(lambda p, **h: _SGDm(p, **h, **kw), "sgd",
                           configs=[{"lr": 0.01, "momentum": 0.9, "dampening": 0.5}],
                           dtypes=dtype, probes="scaled", steps=20)


def test_a_doubled_step_is_explained_with_its_factor():
    """Twice the step: lr_scaled explains it with the factor 2, in float64 and in float32
    (where the state-in-float32 variant is skipped, not the end of the search)."""
    for dtype in ("float64", "float32"):
        r = _check_sgdm(dtype, scale=2.0)
        assert not r.passed
        (row,) = r.frame.to_dict("records")
        assert row["explained_by"] == "lr_scaled", dtype
        assert row["lr_factor"] == pytest.approx(2.0, rel=1e-6)
        assert "lr_scaled (step scaled by a constant factor 2)" in str(r)
    # a faithful one fails nothing and is explained by nothing
    r = _check_sgdm(scale=1.0)
    assert r.passed
    assert (r.frame["explained_by"] == "").all()


def test_narrow_state_variants():
    # a bfloat16 buffer under another name, or outside the optimizer's state (not seen at
    # all): the variant comes closer than the rule, so it explains the failure
    for buf_name in ("buf", None):
        r = _check_sgdm(state_dtype=torch.bfloat16, buf_name=buf_name)
        assert not r.passed
        (row,) = r.frame.to_dict("records")
        assert "state_in_bfloat16" in row["explained_by"].split(", "), buf_name
        assert r.state == "not exposed"
    # a bfloat16 buffer under torch's name, with a second deviation (the first step damped):
    # the state-in-bfloat16 variant alone does not reproduce it
    r = _check_sgdm(state_dtype=torch.bfloat16, damp_first=True)
    (row,) = r.frame.to_dict("records")
    assert not row["passed"]
    assert "state_in_bfloat16" not in str(row["explained_by"]).split(", ")
    # the same buffer without the second deviation: explained, and its dtype is named
    r = _check_sgdm(state_dtype=torch.bfloat16)
    (row,) = r.frame.to_dict("records")
    assert "state_in_bfloat16" in row["explained_by"].split(", ")
    assert any("kept in bfloat16" in d for d in r.state_differences)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_narrow_state_variant_tolerance_is_pinned(monkeypatch, noise):
    """A state exposed in bfloat16 is compared with the bfloat16-state variant within the
    largest of the run's tolerance, the bfloat16 base tolerance 8·u (= 2^-5) and ten times
    torch.optim's own error with its state in bfloat16 (here stood in for by ``noise``, so
    that each term is the largest in turn), measured on the run's device."""
    real_variant, real_compare, real_noise = O._variant, O.compare, O._torch_noise
    made, tols, noise_calls = set(), [], []

    def variant(*args):
        t = real_variant(*args)
        if args[4] == "state_in_bfloat16":
            made.add(id(t))
        return t

    def compare(got, ref, tol, **kw):
        if id(ref) in made:
            tols.append(tol)
        return real_compare(got, ref, tol, **kw)

    def torch_noise(name, items, probe, steps, dtype, device):
        if dtype == "bfloat16":
            noise_calls.append(device)
            return noise
        return real_noise(name, items, probe, steps, dtype, device)

    monkeypatch.setattr(O, "_variant", variant)
    monkeypatch.setattr(O, "compare", compare)
    monkeypatch.setattr(O, "_torch_noise", torch_noise)
    r = _check_sgdm(state_dtype=torch.bfloat16)
    (row,) = r.frame.to_dict("records")
    assert row["tol"] < 2.0**-5
    assert noise_calls == ["cpu"]
    assert tols == [max(2.0**-5, 10.0 * noise)]


# ---- _explain on hand-made trajectories -----------------------------------------------------
# The variants' trajectories are stood in for (``_variant`` returns what a test gives it, the
# rule itself otherwise), so that which variants are tried, against which tolerance and floor,
# and what each must show to explain a run, are checked with errors known by hand.

_STEPS = 10


def _params(*columns):
    """A trajectory of one parameter whose elements follow ``columns`` (one array of
    ``_STEPS + 1`` values each)."""
    return _traj("param[0]", np.stack(columns, axis=1))


_T = np.arange(_STEPS + 1, dtype=float)
_REF = _params(1.0 - 0.001 * _T, 0.5 - 0.002 * _T)


def _moved(ref, *deltas):
    """``ref`` with element i moved by ``deltas[i]`` at every step after the first."""
    cols = [ref.values["param[0]"][:, i] + np.where(_T > 0, d, 0.0) for i, d in enumerate(deltas)]
    return _params(*cols)


def _explain(monkeypatch, got, variants, *, name="sgd", hyper=None, dtype="float64", tol=1e-9,
             floor=0.0, noise=0.0, ref=_REF):
    """``O._explain`` with ``variants`` standing in for the catalogue's trajectories: the labels'
    names, the fitted factor, and every variant whose trajectory was asked for (in order)."""
    tried = []

    def variant(name_, items, probe, steps, vname, factor):
        tried.append(vname)
        v = variants.get(vname, ref)
        return v(factor) if callable(v) else v

    monkeypatch.setattr(O, "_variant", variant)
    monkeypatch.setattr(O, "_torch_noise", lambda *a: noise)
    hyper = {"lr": 0.01, "momentum": 0.9, "dampening": 0.5} if hyper is None else hyper
    out, factor = O._explain(name, tuple(sorted(hyper.items())), "scaled", _STEPS, dtype, "cpu",
                             got, ref, tol, floor)
    return [e.split(" (")[0] for e in out], factor, tried


def test_explain_skips_state_variants_no_narrower_than_the_run(monkeypatch):
    """A float32 run is not 'explained' by keeping the state in float32 (its own width) even
    where that variant's trajectory is the run; bfloat16 state, narrower, is tried."""
    got = _moved(_REF, 0.01, 0.0)
    names, _, tried = _explain(monkeypatch, got, {"state_in_float32": got}, dtype="float32")
    assert "state_in_float32" not in tried
    assert names == []
    names, _, tried = _explain(monkeypatch, got, {"state_in_bfloat16": got}, dtype="float32")
    assert names == ["state_in_bfloat16"]
    # in a float64 run both are narrower
    names, _, _ = _explain(monkeypatch, got, {"state_in_float32": got})
    assert names == ["state_in_float32"]


@pytest.mark.parametrize(("dev", "tol", "noise", "explained"), [
    (0.15, 0.2, 0.0, True),     # the run's own tolerance is the largest
    (0.25, 0.2, 0.0, False),
    (0.03, 0.001, 0.0, True),   # bfloat16's 8u = 2^-5 = 0.03125
    (0.032, 0.001, 0.0, False),
    (0.09, 0.001, 0.01, True),  # ten times torch's own bfloat16 error
    (0.11, 0.001, 0.01, False),
])
def test_explain_exposed_narrow_state_within_the_largest_tolerance(monkeypatch, dev, tol, noise,
                                                                   explained):
    """A state exposed in bfloat16: the bfloat16-state variant explains the run if the run's
    parameters are within max(tol, 2^-5, 10 noise) of it, each term the largest in turn."""
    vt = _params(1.0 + 0.0 * _T, 0.5 - 0.002 * _T)
    got = _moved(vt, dev, 0.0)  # element 0 has magnitude 1: dev is its relative error
    got.values["momentum_buffer[0]"] = got.values["param[0]"].copy()
    got.present["momentum_buffer[0]"] = got.present["param[0]"]
    got.dtypes["momentum_buffer[0]"] = "bfloat16"
    names, _, _ = _explain(monkeypatch, got, {"state_in_bfloat16": vt}, tol=tol, noise=noise)
    assert ("state_in_bfloat16" in names) is explained
    # a state exposed in another dtype rules the variant out
    got.dtypes["momentum_buffer[0]"] = "float16"
    names, _, tried = _explain(monkeypatch, got, {"state_in_bfloat16": vt}, tol=tol, noise=noise)
    assert "state_in_bfloat16" not in names
    assert "state_in_bfloat16" not in tried


def test_explain_unexposed_narrow_state_must_come_closer_than_the_rule(monkeypatch):
    """State not exposed: the narrow-state variant explains only if the run is strictly closer
    to it than to the rule, both measured with the run's floor."""
    big = 1.0 - 0.001 * _T                # magnitude ~1
    small = 1e-3 + 0.0 * _T               # magnitude 1e-3, below the floor 1.0
    ref = _params(big, small)

    def case(vt_dev, ref_dev, floor):
        got = _moved(ref, *ref_dev)
        vt = _moved(got, *vt_dev)
        names, _, _ = _explain(monkeypatch, got, {"state_in_bfloat16": vt}, floor=floor,
                               ref=ref, tol=1e-9)
        return "state_in_bfloat16" in names

    # the variant is 0.01 off on the big element, 1e-4 (0.1 relative) on the small one; the rule
    # 0.02 off on the big one: with the floor 1.0 the variant is closer (0.01 < 0.02)
    assert case((0.01, 1e-4), (0.02, 0.0), floor=1.0)
    # without a floor the small element's error (0.1) exceeds even 2^-5: not explained
    assert not case((0.01, 1e-4), (0.02, 0.0), floor=0.0)
    # the rule is 1e-4 off on the small element only (1e-4 with the floor, 0.1 without): the
    # variant, 0.01 off, is not closer
    assert not case((0.01, 0.0), (0.0, 1e-4), floor=1.0)
    # a variant exactly as far as the rule (the rule itself) is no explanation
    names, _, _ = _explain(monkeypatch, _moved(_REF, 0.01, 0.0), {"state_in_bfloat16": _REF})
    assert "state_in_bfloat16" not in names
    # ... but a formula change within the tolerance explains without being closer
    got = _moved(_REF, 1e-12, 0.0)
    names, _, _ = _explain(monkeypatch, got, {"ema_momentum": _REF}, tol=1e-9)
    assert "ema_momentum" in names


def test_explain_compares_a_variant_with_the_runs_floor(monkeypatch):
    """Elements below the floor are compared against the floor: a variant 1e-4 off on an
    element of magnitude 1e-3 explains a run with the floor 1.0 (error 1e-4 <= tol 1e-3), not
    without one (error 0.1)."""
    ref = _params(1.0 - 0.001 * _T, 1e-3 + 0.0 * _T)
    got = _moved(ref, 0.5, 0.0)
    vt = _moved(got, 0.0, 1e-4)
    for floor, explained in ((1.0, True), (0.0, False)):
        names, _, _ = _explain(monkeypatch, got, {"dampening_on_first_step": vt}, floor=floor,
                               ref=ref, tol=1e-3)
        assert ("dampening_on_first_step" in names) is explained


def test_explain_fitted_factor(monkeypatch):
    """A fitted lr factor within tol of 1 explains nothing (the variant is not even run); a
    factor 2 is reported, and is still tried after a narrow-state variant that fails to come
    closer than the rule."""
    tol = 2.0**-10   # 1 + tol is exact
    monkeypatch.setattr(O.catalogue, "fit_lr_factor", lambda a, b: 1.0 + tol)
    got = _moved(_REF, 0.01, 0.0)
    names, factor, tried = _explain(monkeypatch, got, {"lr_scaled": got}, tol=tol)
    assert "lr_scaled" not in tried
    assert names == []
    assert np.isnan(factor)
    names, factor, tried = _explain(monkeypatch, got, {"lr_scaled": got}, tol=tol * 0.999)
    assert names == ["lr_scaled"]
    assert factor == 1.0 + tol
    monkeypatch.undo()
    # a doubled step: the narrow-state variants, the rule itself, are within 2^-5 but no
    # closer; the search goes on to lr_scaled
    doubled = _params(1.0 - 0.002 * _T, 0.5 - 0.004 * _T)
    names, factor, tried = _explain(monkeypatch, doubled,
                                    {"lr_scaled": lambda c: doubled if c == 2.0 else _REF})
    assert tried[-3:] == ["state_in_float32", "state_in_bfloat16", "lr_scaled"]
    assert names == ["lr_scaled"]
    assert factor == pytest.approx(2.0, rel=1e-12)


_ADAM = {"lr": 0.001}
_COUNTER = "step_counted_per_group"


def _formula_changes(name, hyper):
    """The variants a counter convention is paired with: formula changes (one per parameter
    counter, not fitted, not a state dtype) that change something with ``hyper``."""
    return [v.name for v in O.catalogue.variants_for(name)
            if v.counter == "param" and not v.fitted and v.state_dtype is None
            and v.changes(name, hyper)]


def test_explain_pairs_the_counter_convention_with_formula_changes(monkeypatch):
    """Nothing explains alone: the counter convention is tried with every formula change
    (not with itself, fitted factors or state dtypes) and a pair that reproduces the run is
    named; one formula change explains alone: only it is paired."""
    got = _moved(_REF, 0.01, 0.0)
    changes = _formula_changes("adam", _ADAM)
    assert {"eps_inside_sqrt", "no_bias_correction"} <= set(changes)
    pair = f"no_bias_correction+{_COUNTER}"
    names, _, tried = _explain(monkeypatch, got, {pair: got}, name="adam", hyper=_ADAM)
    pairs = [t for t in tried if "+" in t]
    assert pairs == [f"{c}+{_COUNTER}" for c in changes]
    assert names == [f"no_bias_correction + {_COUNTER}"]
    # eps_inside_sqrt explains alone: the no_bias_correction pair, which would fit, is not tried
    names, _, tried = _explain(monkeypatch, got, {pair: got, "eps_inside_sqrt": got},
                               name="adam", hyper=_ADAM)
    assert [t for t in tried if "+" in t] == [f"eps_inside_sqrt+{_COUNTER}"]
    assert names == ["eps_inside_sqrt"]
    # a pair within tol only through the floor
    ref = _params(1.0 - 0.001 * _T, 1e-3 + 0.0 * _T)
    got = _moved(ref, 0.5, 0.0)
    for floor, explained in ((1.0, True), (0.0, False)):
        names, _, _ = _explain(monkeypatch, got, {pair: _moved(got, 0.0, 1e-4)}, name="adam",
                               hyper=_ADAM, ref=ref, tol=1e-3, floor=floor)
        assert (f"no_bias_correction + {_COUNTER}" in names) is explained


def test_explain_counter_conventions_are_not_paired_with_each_other(monkeypatch):
    """With a second counter convention in the catalogue, counters are paired only with
    formula changes, and a counter that changes nothing under the hyperparameters is left out."""
    real = O.catalogue.variants_for
    other = O.catalogue.Variant("step_counted_from_zero", "a second counter convention",
                                counter="group")
    inert = O.catalogue.Variant("step_counted_inert", "a counter convention that changes "
                                "nothing with amsgrad off", counter="group",
                                overrides={"amsgrad": False})
    monkeypatch.setattr(O.catalogue, "variants_for", lambda n: [*real(n), other, inert])
    got = _moved(_REF, 0.01, 0.0)
    _, _, tried = _explain(monkeypatch, got, {}, name="adam", hyper={**_ADAM, "amsgrad": False})
    pairs = [t for t in tried if "+" in t]
    changes = _formula_changes("adam", _ADAM)
    assert pairs == [f"{c}+{k}" for k in (_COUNTER, other.name) for c in changes]


def _torch_noise_as(monkeypatch, noise):
    """torch.optim's own error per dtype set by hand (its real values need a diverging or
    ill-conditioned run); returns the devices the calls saw."""
    seen = []

    def fake(name, items, probe, steps, dtype, device):
        seen.append(device)
        return noise[dtype]

    monkeypatch.setattr(O, "_torch_noise", fake)
    return seen


def test_cells_where_torchs_own_run_is_no_yardstick_are_not_applicable(monkeypatch):
    """A dtype whose torch.optim run is not finite, and one where 10x torch's own error
    reaches 1 (exactly 1 included), are not run: each row says why, with torch's error (and
    the tolerance it would have needed); the dtypes after them still run; just below the
    line the tolerance is 10x torch's error."""
    def run(noise, dtypes):
        """torch's error per dtype set to ``noise``; SGD checked in the order ``dtypes``."""
        seen = _torch_noise_as(monkeypatch, noise)
        r = check_optimizer(torch.optim.SGD, "sgd", configs=[{"lr": 0.1}], dtypes=dtypes,
                            probes="scaled", steps=3, explain=False)
        rows = r.frame.set_index("dtype")
        return r, rows.loc["float32"], rows.loc["float64"], seen

    _r, f32, f64, seen = run({"float32": np.inf, "float64": 1e-30}, ("float32", "float64"))
    assert not f32["applicable"]
    assert f32["reason"] == ("torch.optim's own float32 run does not stay finite where the "
                             "float64 reference does")
    assert f32["torch_error"] == np.inf
    assert f32["passed"] is None
    assert np.isnan(f32["tol"])
    assert f64["applicable"]
    assert f64["reason"] == ""
    assert f64["passed"]
    assert f64["tol"] == O.tolerance("float64", 3)
    assert seen == ["cpu", "cpu"]

    r, f32, f64, _seen = run({"float64": 0.1, "float32": 0.095}, ("float64", "float32"))
    assert not f64["applicable"]
    assert f64["reason"] == ("torch.optim's own float64 error here is 0.1; a tolerance of 10 "
                             "times that checks nothing")
    assert f64["tol"] == 1.0
    assert f64["torch_error"] == 0.1
    assert f64["passed"] is None
    assert f32["applicable"]
    assert f32["tol"] == 10.0 * 0.095
    assert f32["torch_error"] == 0.095
    assert f32["passed"]
    assert r.passed


def test_an_optimizer_that_raises_fails_its_cell(monkeypatch):
    """Raising in a step is a failure at that step, with the configuration, its full
    hyperparameters, probe and dtype; raising in the constructor says so without a step."""
    class Breaks(torch.optim.SGD):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            self.calls = 0

        def step(self, closure=None):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("boom")
            return super().step(closure)

    devices = []
    real = O.run_torch

    def spy(factory, hyper, probe, steps, dtype, device="not passed"):
        # a run left to run_torch's default device would go to the CPU whatever was asked
        devices.append(device)
        return real(factory, hyper, probe, steps, dtype, device)

    monkeypatch.setattr(O, "run_torch", spy)
    r = check_optimizer(Breaks, "sgd", configs=[{"lr": 0.1}], dtypes=("float64", "float32"),
                        probes="scaled", steps=3, explain=False)
    assert not r.passed
    f, f32 = r.failures  # the dtype after a raising one still runs
    assert (f.config, f.probe, f.dtype, f.step) == ("sgd(lr=0.1)", "scaled", "float64", 2)
    assert f32.dtype == "float32"
    assert f.hyper == {**O.optim.get_spec("sgd").defaults, "lr": 0.1}
    assert f.message == "raised at step 2: RuntimeError: boom"
    assert (f.quantity, f.error) == ("", np.inf)
    rows = r.frame.set_index("dtype")
    assert f.tol == rows.loc["float64", "tol"] == O.tolerance("float64", 3)
    assert rows["error"].tolist() == ["raised at step 2: RuntimeError: boom"] * 2
    assert rows["passed"].tolist() == [False, False]
    assert rows["state_agrees"].isna().all()
    assert rows["explained_by"].tolist() == ["", ""]
    assert devices
    assert set(devices) == {"cpu"}

    def refuses(params, lr=1e-3, **kw):
        raise ValueError("no")

    r = check_optimizer(refuses, "sgd", configs=[{"lr": 0.1}], dtypes="float64",
                        probes="scaled", steps=3, explain=False)
    (f,) = r.failures
    assert f.step == 0
    assert f.message == "construction failed: ValueError: no"


def test_check_optimizer_compares_from_the_first_step_above_the_subnormal_floor(monkeypatch):
    """Each cell's comparison: the dtype's subnormal floor, the state before the first step
    left out (torch creates most state lazily), state not required."""
    seen = []
    real = O.compare

    def spy(test, ref, tol, **kw):
        seen.append(kw)
        return real(test, ref, tol, **kw)

    monkeypatch.setattr(O, "compare", spy)
    _torch_noise_as(monkeypatch, {"float64": 0.0, "float32": 0.0})  # its own compare calls
    check_optimizer(torch.optim.Adam, "adam", configs=[{"lr": 0.01}],
                    dtypes=("float64", "float32"), probes="scaled", steps=3, explain=False)
    assert [kw["floor"] for kw in seen] == [O.subnormal_floor("float64"),
                                            O.subnormal_floor("float32")]
    assert all(kw["skip_initial_state"] is True for kw in seen)
    assert not any(kw["require_state"] for kw in seen)


def test_cell_columns_with_and_without_state_and_a_first_bad_step():
    """SGD without momentum has no state to compare: state_agrees and max_error_state are
    missing (NaN, a float column). LeanAdam without bias correction compares its moments and
    goes wrong at the first step."""
    from tests.lean_optimizers import NoBiasAdam

    res = check_optimizer(torch.optim.SGD, "sgd", configs=[{"lr": 0.1}], dtypes="float64",
                          probes="scaled", steps=3, explain=False)
    assert res.state == "not exposed"
    assert "  note: the optimizer exposes no state under torch.optim's names; only parameters " \
        "were compared" in res.notes
    sgd = res.frame
    assert sgd["state_agrees"].tolist() == [None]
    assert sgd["max_error_state"].dtype == np.float64
    assert np.isnan(sgd["max_error_state"].iloc[0])
    assert 0.0 <= sgd["max_error_param"].iloc[0] < 1e-12  # torch.optim.SGD: round-off only
    assert sgd["first_bad_step"].tolist() == [None]
    assert sgd[["error", "explained_by", "quantity", "state_differs"]].iloc[0].tolist() == \
        ["", "", "", ""]
    assert np.isnan(sgd["lr_factor"].iloc[0])

    adam = check_optimizer(NoBiasAdam, "adam", configs=[{"lr": 0.01}], dtypes="float64",
                           probes="scaled", steps=3, explain=False).frame
    row = adam.iloc[0]
    assert not row["passed"]
    assert row["first_bad_step"] == 1
    assert row["quantity"].startswith("param[")
    assert row["max_error_param"] > 1.0   # (1 - 0.9)^-1 times too large a first step
    # exp_avg and exp_avg_sq of each of the probe's parameters
    assert row["state_compared"] == 2 * len(PROBES["scaled"].initial_params()) == 6
    assert 0.0 <= row["max_error_state"] < 1e-12  # its moments are Adam's own: round-off


class _ScaledStateAdam(torch.optim.Adam):
    """Adam's updates exactly, with its moments stored as 2 m and 4 v between steps: the
    parameters agree and both state entries differ."""

    @torch.no_grad()
    def step(self, closure=None):
        for st in self.state.values():
            st["exp_avg"].div_(2)
            st["exp_avg_sq"].div_(4)
        out = super().step(closure)
        for st in self.state.values():
            st["exp_avg"].mul_(2)
            st["exp_avg_sq"].mul_(4)
        return out


def test_a_cell_names_every_state_entry_that_differs():
    r = check_optimizer(_ScaledStateAdam, "adam", configs=[{"lr": 0.01}], dtypes="float64",
                        probes="scaled", steps=3, explain=False)
    row = r.frame.iloc[0]
    assert row["passed"]
    assert not row["state_agrees"]
    assert row["state_differs"] == "exp_avg, exp_avg_sq"
    assert r.state == "different"


def _spy(monkeypatch, name):
    """Wrap O.<name>, recording each call's positional arguments."""
    calls = []
    real = getattr(O, name)

    def spy(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(O, name, spy)
    return calls


def test_a_failing_cell_hands_its_dtype_floor_and_hyperparameters_on(monkeypatch):
    """float32 cells: the worst element, the explanations and the state relations get the
    cell's dtype, its subnormal floor and the full hyperparameters; the failure names the
    configuration; several explanations are joined by ", " (labels without their details)."""
    from tests.lean_optimizers import NoBiasAdam

    worst = _spy(monkeypatch, "_worst_element")
    explain = _spy(monkeypatch, "_explain")
    relation = _spy(monkeypatch, "_state_relation")
    floor = O.subnormal_floor("float32")
    r = check_optimizer(NoBiasAdam, "adam", configs=[{"lr": 0.01}], dtypes="float32",
                        probes="scaled", steps=3)
    full = {**O.optim.get_spec("adam").defaults, "lr": 0.01}
    (f,) = r.failures
    assert (f.config, f.hyper, f.dtype) == ("adam(lr=0.01)", full, "float32")
    assert [c[-1] for c in worst] == [floor]
    (e,) = explain
    assert (e[4], e[-1]) == ("float32", floor)
    assert relation == []  # its moments are Adam's own
    check_optimizer(_ScaledStateAdam, "adam", configs=[{"lr": 0.01}], dtypes="float32",
                    probes="scaled", steps=3)
    assert len(relation) == 6  # two entries of each of the three parameters
    assert all(c[4:7] == (floor, "float32", full) for c in relation)
    labels = [x.split(" (")[0] for x in f.explained_by]
    assert labels[0] == "no_bias_correction"
    assert r.frame["explained_by"].iloc[0] == ", ".join(labels)

    monkeypatch.setattr(O, "_explain", lambda *a: (("a b (one)", "c (two)"), 2.0))
    r = check_optimizer(NoBiasAdam, "adam", configs=[{"lr": 0.01}], dtypes="float64",
                        probes="scaled", steps=3)
    assert r.frame["explained_by"].iloc[0] == "a b, c"
    assert r.frame["lr_factor"].iloc[0] == 2.0
    r = check_optimizer(NoBiasAdam, "adam", configs=[{"lr": 0.01}], dtypes="float64",
                        probes="scaled", steps=3, explain=False)
    assert r.failures[0].explained_by == ()


def test_nothing_applicable_is_said():
    def only_lr(params, lr=1e-3):
        return torch.optim.SGD(params, lr=lr)

    r = check_optimizer(only_lr, "sgd", configs=[{"lr": 0.1, "momentum": 0.9}],
                        dtypes="float64", probes="scaled", steps=3, explain=False)
    assert any("nothing was checked: no configuration is applicable to only_lr" in n
               for n in r.notes)
    ok = check_optimizer(only_lr, "sgd", configs=[{"lr": 0.1}, {"lr": 0.1, "momentum": 0.9}],
                         dtypes="float64", probes="scaled", steps=3, explain=False)
    assert not any("nothing was checked" in n for n in ok.notes)



class _Float32StateAdam(lean_optimizers.LeanAdam):
    """LeanAdam whose moments are always float32: exact Adam for float32 parameters; for
    float64 parameters its state is narrower and its steps carry float32 rounding."""

    state_dtype = torch.float32


def test_a_narrow_state_counts_against_the_verdict_even_where_its_cells_fail():
    """float32 cells pass with Adam's own state; float64 cells fail (float32 rounding) with
    their moments kept in float32. That the state is narrower is a property of the state, not
    a consequence of the wrong parameters: the verdict is "different", and says why."""
    r = check_optimizer(_Float32StateAdam, "adam", configs=[{"lr": 0.01}],
                        dtypes=("float32", "float64"), probes="scaled", steps=3, explain=False)
    rows = r.frame.set_index("dtype")
    assert rows.loc["float32", "passed"]
    assert rows.loc["float32", "state_agrees"]
    assert not rows.loc["float64", "passed"]
    assert r.state == "different"
    assert any("kept in float32 (parameters in float64)" in d for d in r.state_differences)


def test_summarise_state_by_hand():
    """An entry that only differs along with the parameters is named once; one relation is
    given as it is; several name the first two configurations and count the rest."""
    rows = [("a", "c1", "with parameters", "differs along with the parameters"),
            ("b", "c1", "factor", "2 x torch.optim's"),
            ("c", "c1", "factor", "d1"), ("c", "c2", "factor", "d2"), ("c", "c3", "factor", "d3"),
            ("c", "c4", "factor", "d1")]
    assert O._summarise_state(rows) == [
        "a differs along with the parameters",
        "b: 2 x torch.optim's",
        "c: d1 in c1; d2 in c2 (and 1 other relations)"]
    assert O._summarise_state(rows[2:4]) == ["c: d1 in c1; d2 in c2"]


def test_result_text_on_hand_made_failures():
    """The failure listed per configuration is the earliest (a constructor's, step 0, before
    a step's); explanations shared by every cell are joined by "; ", those of some cells are
    listed by label (a label may hold spaces); with none, and no message, the text says no
    variant reproduces it."""
    def fail(cfg, step, explained=(), message="", rv=None):
        return O.Failure(cfg, {}, "scaled", "float64", step, "param[0]" if rv else "",
                         1.0, 1e-12, rv, 2.0 if rv else None, (), message, explained)

    frame = pd.DataFrame({"applicable": [True] * 4, "passed": [False] * 4})
    r = O.ConformanceResult("sgd", "mine", frame, [
        fail("c1", 1, message="late", rv=1.0), fail("c1", 0, message="construction failed: no"),
        fail("c2", 3, ("a x (1)", "b (2)"), rv=1.0), fail("c2", 4, ("a x (3)", "b (4)"), rv=1.0),
        fail("c3", 2, ("p q (5)",), rv=1.0), fail("c3", 2, (), rv=1.0),
        fail("c4", 5)])
    lines = str(r).splitlines()
    c1 = [ln for ln in lines if ln.startswith("  - c1")]
    assert c1 == ["  - c1 [scaled, float64]: construction failed: no"]
    assert "    consistent with: a x (1); b (2)" in lines
    assert "    consistent in some cells with: p q" in lines
    i = lines.index(next(ln for ln in lines if ln.startswith("  - c4")))
    assert lines[i + 1] == "    no catalogued variant reproduces it"
