"""State: torch.optim's names, conversion to and from state_dict, switching mid-run."""

import tracemalloc

import numpy as np
import pytest
import torch

from suite import optim
from suite.optim.spec import OPTIMIZERS

HYPER = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "adagrad": {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    "rmsprop": {"centered": True, "momentum": 0.5, "weight_decay": 0.1},
    "adam": {"amsgrad": True, "weight_decay": 0.1, "lr": 0.01},
    "adamw": {"amsgrad": True, "lr": 0.01, "maximize": True},
    "nadam": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "radam": {"lr": 0.01, "weight_decay": 0.1},
    "adamax": {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
    "adadelta": {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1},
    "rprop": {"lr": 0.01, "etas": (0.3, 1.5)},
    "asgd": {"lr": 0.05, "t0": 5.0, "lambd": 0.01},  # averaging starts inside the 30 steps
    "adafactor": {"lr": 0.05, "weight_decay": 0.1, "d": 2.0},
}


def _grads(k, shapes):
    rng = np.random.default_rng(k)
    return [rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 2, s) for s in shapes]


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_switch_between_rule_and_torch_mid_run(name, backend):
    """10 steps with our rule, 10 with torch.optim, 10 with ours again == 30 with torch
    (reloaded from its state_dict at the same steps)."""
    shapes = [(4, 3), (5,)]
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s) for s in shapes]
    rule = optim.get(name, backend=backend, **HYPER[name])
    wrap = (lambda a: torch.from_numpy(a.copy())) if backend == "torch" else (lambda a: a.copy())

    # reference: torch.optim alone, saved and reloaded into a new optimizer at the same steps
    # (load_state_dict casts 0-dim state such as NAdam's mu_product to the parameter's dtype,
    # so a reloaded torch run itself rounds it differently from an uninterrupted one)
    ref = [torch.tensor(a, requires_grad=True) for a in init]
    ref_opt = rule.torch_optimizer(ref)
    for k in range(30):
        if k in (10, 20):
            saved = ref_opt.state_dict()
            ref_opt = rule.torch_optimizer(ref)
            ref_opt.load_state_dict(saved)
        for p, g in zip(ref, _grads(k, shapes), strict=True):
            p.grad = torch.from_numpy(g)
        ref_opt.step()

    params = [wrap(a) for a in init]
    state = rule.init(params)
    for k in range(10):
        rule.step(params, [wrap(g) for g in _grads(k, shapes)], state)
    tparams = [torch.tensor(np.asarray(p), requires_grad=True) for p in params]
    topt = rule.torch_optimizer(tparams)
    topt.load_state_dict(optim.to_torch_state_dict(rule, state))
    for k in range(10, 20):
        for p, g in zip(tparams, _grads(k, shapes), strict=True):
            p.grad = torch.from_numpy(g)
        topt.step()
    params = [wrap(p.detach().numpy()) for p in tparams]
    state = optim.from_torch_state_dict(rule, topt.state_dict(), params)
    for k in range(20, 30):
        rule.step(params, [wrap(g) for g in _grads(k, shapes)], state)

    for ours, theirs in zip(params, ref, strict=True):
        np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=1e-12,
                                   atol=0)
    for st, p in zip(state, ref, strict=True):
        tst = ref_opt.state[p]
        assert set(st) == set(tst), (set(st), set(tst))
        for key, value in tst.items():
            if key == "step":
                assert st[key] == float(value)
            else:
                np.testing.assert_allclose(np.asarray(st[key]), value.numpy(), rtol=1e-12,
                                           atol=1e-300)


def test_state_names_follow_torch():
    for name, hyper in HYPER.items():
        rule = optim.get(name, **hyper)
        for shape in ((3,), (2, 3)):
            params = [np.ones(shape)]
            state = rule.init(params)
            rule.step(params, [np.ones(shape)], state)
            names = set(rule.spec.state_names(rule.hyper, len(shape)))
            assert set(state[0]) == names | ({"step"} if name != "sgd" else set())
            # and torch.optim's own state has the same names
            tp = torch.ones(shape, dtype=torch.float64, requires_grad=True)
            opt = rule.torch_optimizer([tp])
            tp.grad = torch.ones(shape, dtype=torch.float64)
            opt.step()
            assert set(opt.state[tp]) == set(state[0])


def test_from_state_dict_rejects_mismatches():
    rule = optim.get("adam", lr=0.01)
    p = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.02)
    p.grad = torch.ones(3)
    opt.step()
    with pytest.raises(ValueError, match=r"lr=0\.02 but the rule has lr=0\.01"):
        optim.from_torch_state_dict(rule, opt.state_dict(), [np.zeros(3)])
    opt2 = torch.optim.SGD([p], lr=0.01, momentum=0.9)
    opt2.step()
    with pytest.raises(ValueError, match=r"unexpected entries.*momentum_buffer"):
        optim.from_torch_state_dict(rule, {**opt2.state_dict(),
                                           "param_groups": [dict(rule.hyper, params=[0])]},
                                    [np.zeros(3)])
    with pytest.raises(ValueError, match="covers 1 parameters, got 2"):
        optim.from_torch_state_dict(rule, opt.state_dict() | {
            "param_groups": [dict(rule.hyper, params=[0])]}, [np.zeros(3), np.zeros(3)])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_numba_step_allocates_nothing(name):
    """After the first step, a numba step on 1e6 parameters allocates no array memory."""
    rule = optim.get(name, backend="numba", **HYPER[name])
    params = [np.ones(1_000_000)]
    grads = [np.full(1_000_000, 0.5)]
    state = rule.init(params)
    rule.step(params, grads, state)  # creates lazy state, compiles
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            rule.step(params, grads, state)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 64_000, f"a numba {name} step allocated {peak} bytes"
    # the same check does see NumPy temporaries, so it is not vacuous
    ref = optim.get(name, backend="numpy", **HYPER[name])
    st = ref.init(params)
    ref.step(params, grads, st)
    tracemalloc.start()
    try:
        ref.step(params, grads, st)
        numpy_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert numpy_peak > 8_000_000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_torch_backend_on_cuda_matches_torch_optim(name):
    """On a GPU: our torch backend on CUDA against torch.optim's CUDA implementations."""
    from suite.probes import PROBES
    from suite.trajectory import compare, run_rule, run_torch

    rule = optim.get(name, backend="torch", **HYPER[name])
    ours = run_rule(rule, PROBES["scaled"], 200, "float64", device="cuda")
    refs = {}
    for impl in rule.spec.torch_impls():
        probe_param = torch.zeros(1, dtype=torch.float64, device="cuda", requires_grad=True)
        probe_param.grad = torch.ones_like(probe_param)
        try:  # some torch versions check the fused kernel's devices only when stepping
            rule.torch_optimizer([probe_param], impl).step()
        except RuntimeError as exc:  # this torch has no fused kernel of this rule on CUDA
            if impl != "fused" or "fused" not in str(exc):
                raise
            continue
        ref = run_torch(lambda p, impl=impl: rule.torch_optimizer(p, impl), {},
                        PROBES["scaled"], 200, "float64", device="cuda")
        assert ref.error is None, ref.error
        refs[impl] = ref
    assert list(refs)[:2] == ["forloop", "foreach"]
    # torch's for-loop is the ground truth; where one of torch's own implementations differs
    # from its for-loop (foreach ASGD computes eta in float32), ours may differ from that one
    # by no more than torch's own spread
    for impl, ref in refs.items():
        spread = 0.0
        if impl != "forloop":
            spread = max((r.max_error for r in compare(ref, refs["forloop"], np.inf)
                          if np.isfinite(r.max_error)), default=0.0)
        bad = [r for r in compare(ours, ref, 1e-12 + 2 * spread)
               if r.first_bad_step is not None]
        assert not bad, (impl, spread, bad[:3])


# weight_decay = 1 and momentum = 1 are where a branch written `!= 0` differs from one written
# `!= 1`: every rule with weight decay, and SGD with momentum 1, against torch.optim's own steps
AT_ONE = [(name, {"weight_decay": 1.0}) for name in OPTIMIZERS
          if "weight_decay" in OPTIMIZERS[name].defaults] + [
    ("nadam", {"weight_decay": 1.0, "decoupled_weight_decay": True}),
    ("radam", {"weight_decay": 1.0, "decoupled_weight_decay": True}),
    ("sgd", {"momentum": 1.0, "dampening": 0.5}),
    ("sgd", {"momentum": 1.0, "nesterov": True}),
    ("rmsprop", {"momentum": 1.0}),
]


@pytest.mark.parametrize(("name", "hyper"), AT_ONE, ids=lambda v: str(v))
def test_hyperparameters_equal_to_one_match_torch(name, hyper):
    rule = optim.get(name, backend="numpy", lr=0.01, **hyper)
    init = np.linspace(-1.0, 2.0, 6).reshape(2, 3)
    params = [init.copy()]
    state = rule.init(params)
    tp = torch.tensor(init, requires_grad=True)
    topt = rule.torch_optimizer([tp])
    for k in range(4):
        g = _grads(k, [(2, 3)])[0]
        rule.step(params, [g.copy()], state)
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
        np.testing.assert_allclose(params[0], tp.detach().numpy(), rtol=1e-12, atol=0)
    assert set(state[0]) == set(topt.state[tp])
