"""The vectorised convergence runner (``run_blocks``: blocks of starts in SIMD lanes) returns
exactly what the per-start runner (``run_batch``) returns: iterates, values, best gaps, first
hits and trajectories bit for bit, on every problem and every rule it runs, for any block size.
"""

import re

import numpy as np
import pandas as pd
import pytest
from numba import njit

from suite import optim
from suite import problems as P
from suite.schedules import Schedule
from suite.studies import _convergence_numba as K
from suite.studies import convergence as C

# every rule code of the batched runner, with the branches of its kernel
RULES = [
    ("sgd", {"lr": 1e-3}),
    ("sgd", {"lr": 1e-3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", {"lr": 1e-3, "momentum": 0.5, "dampening": 0.3, "maximize": True}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("rmsprop", {"lr": 1e-2}),
    ("rmsprop", {"lr": 1e-2, "centered": True, "momentum": 0.5, "weight_decay": 0.01}),
    ("adam", {"lr": 1e-2}),
    ("adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.01}),
    ("adamw", {"lr": 1e-2, "weight_decay": 0.1}),
]
PROBLEMS = [("himmelblau", {}), ("rosenbrock", {}), ("rosenbrock", {"dim": 5}), ("beale", {}),
            ("booth", {}), ("rastrigin", {"dim": 3}), ("ackley", {"dim": 3}),
            ("goldstein_price", {}), ("styblinski_tang", {"dim": 3}), ("three_hump_camel", {}),
            ("quadratic", {"dim": 4, "kappa": 50.0})]
TARGETS = np.array([1e-1, 1e-2, 1e-4, 1e-8])


def _both(prob, name, hyper, x0, steps, every, lanes, lrs=None):
    """Outputs of run_batch and run_blocks on the same arguments."""
    rule = optim.get(name, **hyper)
    pid, data = K.problem_data(prob)
    n, d = x0.shape
    n_rec = (steps // every + (1 if steps % every else 0) + 1) if every else 0
    lrs = np.full(steps, float(rule.hyper["lr"])) if lrs is None else lrs
    consts = K.step_constants(rule.name, rule.hyper, lrs)
    outs = []
    for fn, extra in ((K.run_batch, ()), (K.run_blocks, (lanes,))):
        o = [np.full_like(x0, np.nan), np.full(n, np.nan), np.full((n, len(TARGETS)), -1),
             np.full(n, np.nan), np.full((n_rec, n), np.nan), np.full((n_rec, n, d), np.nan)]
        fn(x0, steps, pid, data, float(prob.f_min), C._OPT_CODES[name], consts,
           C._hyper_array(rule), TARGETS, every, *o, *extra)
        outs.append(o)
    return outs


def _assert_identical(a, b):
    for u, v, what in zip(a, b, ("x", "f", "hits", "best", "rec_f", "rec_x"), strict=True):
        assert u.dtype == v.dtype, what
        # equal bits (-0.0 kept apart from 0.0), and NaN in the same places: a NaN's sign and
        # payload are not compared (x86 returns the first operand's NaN, and the compiler may
        # swap the operands of a commutative + or *; torch does not specify them either)
        if u.dtype.kind == "f":
            nan = np.isnan(u)
            np.testing.assert_array_equal(nan, np.isnan(v), err_msg=what)
            u, v = np.where(nan, 0.0, u), np.where(nan, 0.0, v)
        np.testing.assert_array_equal(u.view(np.int64), v.view(np.int64), err_msg=what)


@pytest.mark.parametrize(("name", "hyper"), RULES, ids=[f"{n}{i}" for i, (n, _) in
                                                        enumerate(RULES)])
@pytest.mark.parametrize(("pname", "kw"), PROBLEMS,
                         ids=[n + str(kw.get("dim", "")) for n, kw in PROBLEMS])
def test_blocks_equal_the_per_start_runner(pname, kw, name, hyper):
    prob = P.get(pname, **kw)
    lo, hi = prob.domain
    # 70 starts: one full block of 64 lanes and a partial one; a few starts far out diverge
    x0 = np.random.default_rng(7).uniform(lo, hi, (70, prob.dim))
    x0[::9] *= 3.0
    a, b = _both(prob, name, hyper, x0, 150, 11, K.LANES)
    _assert_identical(a, b)


def test_results_do_not_depend_on_the_block_size_or_the_schedule():
    prob = P.get("himmelblau")
    x0 = C.grid_starts(prob, 9)  # 81 starts
    lrs = np.array([Schedule("cosine", {"T_max": 200, "eta_min": 1e-4}).lr_at(0.05, t)
                    for t in range(300)])
    ref = None
    for lanes in (1, 8, 13, 64, 81, 128):
        a, b = _both(prob, "adam", {"lr": 0.05}, x0, 300, 1, lanes, lrs)
        _assert_identical(a, b)
        if ref is not None:
            _assert_identical(ref, b)
        ref = b
    # the first hits are real: Adam reaches 1e-8 from most of the grid within 300 steps
    assert (ref[2][:, -1] > 0).mean() > 0.5


def test_run_frames_equal_the_per_start_runner(monkeypatch):
    """Every output column of ``convergence.run_full`` (numba backend) is unchanged."""
    cases = [("himmelblau", "adam", {"lr": 1e-2}), ("rosenbrock", "sgd",
             {"lr": 1e-3, "momentum": 0.9}), ("beale", "rmsprop", {"lr": 1e-2}),
             ("goldstein_price", "adagrad", {"lr": 0.1}), ("booth", "adamw", {"lr": 0.1})]
    for pname, name, hyper in cases:
        prob = P.get(pname)
        g = C.grid_starts(prob, 8)
        new = C.run_full(prob, name, g, 400, backend="numba", record_every=50, **hyper)
        with monkeypatch.context() as m:
            m.setattr(K, "run_blocks", lambda *args: K.run_batch(*args[:-1]))
            old = C.run_full(prob, name, g, 400, backend="numba", record_every=50, **hyper)
        for u, v in zip(new, old, strict=True):
            pd.testing.assert_frame_equal(u, v, check_exact=True)
        assert new[0]["steps_to_target_1e-02"].notna().any()


def _vectorised(fn, *args):
    """Whether LLVM's loop vectoriser vectorised a loop of ``fn`` (a loop it marked
    ``llvm.loop.isvectorized``) into arithmetic on vectors of doubles."""
    fn(*args)
    ir = "".join(fn.inspect_llvm().values())
    return ('!"llvm.loop.isvectorized", i32 1' in ir
            and re.search(r"= f(mul|add|sub) <\d+ x double>", ir) is not None)


def test_the_vectorisation_check_sees_a_scalar_loop():
    @njit(error_model="numpy")
    def recurrence(p, out):  # each element needs the previous one: stays scalar
        for i in range(1, out.size):
            out[i] = out[i - 1] * p[i] + 1.0

    @njit(error_model="numpy")
    def elementwise(p, out):
        for i in range(out.size):
            out[i] = out[i] * p[i] + 1.0

    a, b = np.ones(64), np.ones(64)
    assert not _vectorised(recurrence, a, b)
    assert _vectorised(elementwise, a, b)


@pytest.mark.parametrize("pname", ["himmelblau", *[pytest.param(n, marks=pytest.mark.slow) for n in (
    "booth", "beale", "goldstein_price", "three_hump_camel", "rosenbrock", "styblinski_tang",
    "quadratic")]])
def test_polynomial_problems_vectorise(pname):
    """The lane loops of a polynomial problem's value and gradient are vectorised (2-D block:
    one loop each, so the check is about that loop)."""
    pid = K.PROBLEM_IDS[pname]
    n = K.LANES
    p, out, data = np.random.default_rng(0).random(2 * n), np.empty(2 * n), np.eye(2)

    @njit(error_model="numpy")
    def value(p, out, data):
        K._values_b(pid, p, 2, data, 0.0, out[:n])

    @njit(error_model="numpy")
    def gradient(p, out, data):
        K._gradients_b(pid, p, 2, data, out, n)

    assert _vectorised(value, p, out, data)
    assert _vectorised(gradient, p, out, data)
