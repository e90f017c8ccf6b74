"""Documented tolerances and thresholds, pinned by behaviour.

Each tolerance is exercised with a deviation just above it (must be caught) and one at the
round-off scale (must pass): loosening a tolerance 100x, or computing it from the wrong unit
round-off, fails here, not silently in the field.
"""

import pytest
import torch

from suite import optim
from suite.conformance import check_optimizer
from suite.conformance import optimizers as conf
from suite.optim import crossval
from suite.optim.configs import CONFIGS


class _Perturbed:
    """A gradsuite rule whose parameters are multiplied by (1 + eps) after every step."""

    def __init__(self, rule, eps):
        self._rule, self._eps = rule, eps
        self.backend, self.name, self.hyper = rule.backend, rule.name, rule.hyper

    def init(self, params):
        return self._rule.init(params)

    def step(self, params, grads, state, **kw):
        self._rule.step(params, grads, state, **kw)
        for p in params:
            p *= 1 + self._eps


def _crossval(monkeypatch, eps, dtype, steps=50):
    real = crossval.get
    monkeypatch.setattr(crossval, "get",
                        lambda *a, **kw: _Perturbed(real(*a, **kw), eps))
    config = next(c for c in CONFIGS if c.optimizer == "adam" and not c.tensor_lr)
    rows = crossval.crossval_cell(config, "scaled", dtype, steps, backends=("numpy",),
                                  impls=("forloop",))
    assert len(rows) == 1
    return rows[0]


def test_crossval_tolerances_are_the_documented_ones():
    assert crossval.TOLERANCE == {"float64": 1e-12, "float32": 2e-4}


@pytest.mark.parametrize(("dtype", "eps", "passes"), [
    ("float64", 0.0, True), ("float64", 1e-15, True),     # a few ulps per step
    ("float64", 3e-12, False),                           # 3x the tolerance, per step
    ("float32", 0.0, True), ("float32", 6e-4, False),
])
def test_crossval_catches_a_deviation_just_above_its_tolerance(monkeypatch, dtype, eps,
                                                                passes):
    """Free-running and then step-by-step (lockstep) comparison: a relative error of 3e-12
    per step fails the float64 cell (it would pass at 1e-8), 1e-15 passes."""
    row = _crossval(monkeypatch, eps, dtype)
    assert row["tol"] == crossval.TOLERANCE[dtype]
    assert row["passed"] is passes, row
    if not passes:
        assert row["mode"] == "lockstep"  # it failed even one step at a time
        assert row["max_error_param"] > row["tol"]


# ---- conformance: 50·u·T, calibrated by torch.optim's own error --------------------------

def test_conformance_tolerance_is_50_u_T():
    assert conf.tolerance("float64", 200) == 50 * 2.0**-53 * 200
    assert conf.tolerance("float32", 200) == 50 * 2.0**-24 * 200
    assert conf.tolerance("float64", 200) == pytest.approx(1.1e-12, rel=0.01)  # README
    assert conf.tolerance("float32", 200) == pytest.approx(6.0e-4, rel=0.01)
    with pytest.raises(ValueError, match="unsupported dtype 'float8'"):
        conf.tolerance("float8", 10)


def _sgd_with_a_nudge(at_step, eps):
    """torch.optim.SGD, except that after step ``at_step`` the parameters are scaled by
    (1 + eps) once: a single deviation of relative size eps that SGD then carries along."""
    def make(params, **hyper):
        opt = torch.optim.SGD(params, **hyper)
        real = opt.step
        count = [0]

        def step(closure=None):
            out = real(closure)
            count[0] += 1
            if count[0] == at_step:
                with torch.no_grad():
                    for group in opt.param_groups:
                        for p in group["params"]:
                            p.mul_(1 + eps)
            return out

        opt.step = step
        return opt

    return make


@pytest.mark.parametrize(("eps", "passes"), [(0.0, True), (2e-15, True), (3e-12, False)])
def test_conformance_catches_a_deviation_near_round_off(eps, passes):
    """One nudge of 3e-12 (about 27 ulps, 2.7x the float64 tolerance at T = 50 steps, which
    is 2.8e-13) must fail; a 100x looser tolerance would let it through."""
    steps = 50
    res = check_optimizer(_sgd_with_a_nudge(5, eps), reference="sgd",
                          configs=[{"lr": 0.01}], steps=steps, dtypes=("float64",),
                          probes=("scaled",))
    assert res.passed is passes, str(res)
    assert res.frame["tol"].item() == conf.tolerance("float64", steps)
    if not passes:
        assert res.failures[0].step == 5


def test_torch_calibration_stays_small():
    """tol = max(50·u·T, 10 e_torch): torch.optim's own error against the reference must not
    inflate the float64 tolerance, and in float32 stays within a few 1e-4."""
    steps = 100
    res = check_optimizer(torch.optim.Adam, reference="adam",
                          configs=[{}, {"lr": 1e-3, "amsgrad": True, "weight_decay": 0.05}],
                          steps=steps, probes=("scaled", "model"))
    assert res.passed, str(res)
    f = res.frame
    f64, f32 = f[f.dtype == "float64"], f[f.dtype == "float32"]
    assert (f64["torch_error"] < conf.tolerance("float64", steps) / 10).all()
    assert (f64["tol"] == conf.tolerance("float64", steps)).all()
    assert (f32["tol"] <= 1e-3).all()
    # passing is measured, not vacuous: errors were computed on parameters and state
    assert (f["max_error_param"] <= f["tol"]).all()
    assert (f["max_error_param"] > 0).any()
    assert (f["state_compared"] > 0).all()


def test_float32_conformance_catches_a_float32_sized_error():
    """In float32 the tolerance is 50·2⁻²⁴·T (3e-4 at T = 100): a nudge of 2e-3 fails, and a
    float32 tolerance computed with float64's u would fail a faithful run."""
    steps = 100
    bad = check_optimizer(_sgd_with_a_nudge(3, 2e-3), reference="sgd",
                          configs=[{"lr": 0.01}], steps=steps, dtypes=("float32",),
                          probes=("scaled",))
    assert not bad.passed
    good = check_optimizer(torch.optim.SGD, reference="sgd", configs=[{"lr": 0.01}],
                           steps=steps, dtypes=("float32",), probes=("scaled",))
    assert good.passed
    assert good.frame["max_error_param"].item() > conf.tolerance("float64", steps)


def test_rule_defaults_pinned_where_torch_documents_them():
    """The one non-torch default-like number in the rules: the aliases."""
    assert optim.get("momentum").hyper["momentum"] == 0.9
    assert optim.get("nesterov").hyper["nesterov"] is True
