"""Specs: defaults equal torch.optim's, validation rejects what torch.optim rejects."""

import inspect

import numpy as np
import pytest
import torch

from suite import optim
from suite.optim.spec import OPTIMIZERS


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_defaults_equal_torch(name):
    spec = OPTIMIZERS[name]
    sig = inspect.signature(spec.torch_class().__init__)
    for key, ours in spec.defaults.items():
        theirs = sig.parameters[key].default
        assert ours == theirs, f"{name}.{key}: ours {ours!r}, torch {theirs!r}"


# (optimizer, hyperparameters) that torch.optim rejects with ValueError.
REJECTED = [
    ("sgd", {"lr": -0.1}), ("sgd", {"momentum": -0.5}), ("sgd", {"weight_decay": -1.0}),
    ("sgd", {"nesterov": True}), ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("adagrad", {"lr": -1e-3}), ("adagrad", {"lr_decay": -0.5}),
    ("adagrad", {"weight_decay": -0.1}), ("adagrad", {"initial_accumulator_value": -0.1}),
    ("adagrad", {"eps": -1e-10}),
    ("rmsprop", {"lr": -1e-2}), ("rmsprop", {"eps": -1.0}), ("rmsprop", {"momentum": -0.1}),
    ("rmsprop", {"weight_decay": -0.1}), ("rmsprop", {"alpha": -0.5}),
    ("adam", {"lr": -1e-3}), ("adam", {"eps": -1e-8}), ("adam", {"betas": (1.0, 0.0)}),
    ("adam", {"betas": (0.9, 1.0)}), ("adam", {"betas": (-0.1, 0.9)}),
    ("adam", {"weight_decay": -0.1}), ("adamw", {"betas": (0.9, 1.5)}),
    ("adamw", {"lr": -1.0}), ("adamw", {"weight_decay": -1e-2}),
    ("nadam", {"lr": -1.0}), ("nadam", {"momentum_decay": -1e-3}), ("nadam", {"eps": -1.0}),
    ("nadam", {"betas": (0.9, 1.0)}), ("nadam", {"weight_decay": -0.1}),
    ("radam", {"lr": -1.0}), ("radam", {"betas": (1.0, 0.9)}), ("radam", {"eps": -1.0}),
    ("radam", {"weight_decay": -0.1}),
    ("adamax", {"lr": -1.0}), ("adamax", {"betas": (0.9, -0.1)}), ("adamax", {"eps": -1.0}),
    ("adamax", {"weight_decay": -0.1}),
    ("adadelta", {"lr": -1.0}), ("adadelta", {"rho": 1.1}), ("adadelta", {"rho": -0.1}),
    ("adadelta", {"eps": -1.0}), ("adadelta", {"weight_decay": -0.1}),
    ("rprop", {"lr": -1.0}), ("rprop", {"etas": (1.0, 1.2)}), ("rprop", {"etas": (0.5, 1.0)}),
    ("rprop", {"etas": (0.0, 1.2)}),
    ("asgd", {"lr": -1.0}), ("asgd", {"weight_decay": -0.1}),
    ("adafactor", {"lr": -1.0}), ("adafactor", {"beta2_decay": 0.1}),
    ("adafactor", {"eps": (-1.0, 1e-3)}), ("adafactor", {"eps": (None, -1.0)}),
    ("adafactor", {"d": 0.5}), ("adafactor", {"weight_decay": -0.1}),
]


@pytest.mark.parametrize(("name", "hyper"), REJECTED)
def test_rejects_what_torch_rejects(name, hyper):
    spec = OPTIMIZERS[name]
    with pytest.raises(ValueError):  # noqa: PT011 - torch's own messages vary
        spec.torch_class()([torch.zeros(2, requires_grad=True)], **hyper)
    with pytest.raises(ValueError, match=r"Invalid|Nesterov") as info:
        optim.get(name, **hyper)
    bad_key = next(iter(hyper)) if len(hyper) == 1 else "nesterov"
    text = str(info.value).lower()
    assert bad_key.split("[")[0].rstrip("s") in text.replace(" ", "_") \
        or "beta" in text or "epsilon" in text or "nesterov" in text
    if bad_key not in ("betas", "etas", "eps", "nesterov"):  # the value is named
        assert repr(float(hyper[bad_key])) in text or str(hyper[bad_key]) in text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_hyperparameters_rejected(value):
    with pytest.raises(ValueError, match="finite"):
        optim.get("adam", lr=value)


def test_unknown_names_and_types():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamx'.*sgd"):
        optim.get("adamx")
    with pytest.raises(ValueError, match=r"unknown backend 'jax'.*numpy"):
        optim.get("adam", backend="jax")
    with pytest.raises(TypeError, match=r"unknown hyperparameter.*momentumm.*valid"):
        optim.get("sgd", momentumm=0.9)
    with pytest.raises(TypeError, match="amsgrad"):
        optim.get("adam", amsgrad="yes")
    with pytest.raises(TypeError, match="betas"):
        optim.get("adam", betas=0.9)


def test_aliases_are_sgd_configurations():
    assert optim.get("momentum").hyper == optim.get("sgd", momentum=0.9).hyper
    nes = optim.get("nesterov", lr=0.1)
    assert nes.spec.name == "sgd"
    assert nes.hyper["nesterov"] is True
    assert nes.hyper["momentum"] == 0.9


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_params_and_grads(backend):
    rule = optim.get("adam", backend=backend)
    with pytest.raises(ValueError, match="empty parameter list"):
        rule.init([])
    with pytest.raises(TypeError, match="dtype int64"):
        rule.init([np.zeros(3, dtype=np.int64)])
    with pytest.raises(TypeError, match="list of arrays"):
        rule.init(np.zeros(3))
    params = [np.zeros(3), np.zeros((2, 2))]
    state = rule.init(params)
    with pytest.raises(ValueError, match=r"gradient 1 has shape \(4,\).*\(2, 2\)"):
        rule.step(params, [np.zeros(3), np.zeros(4)], state)
    with pytest.raises(ValueError, match=r"gradient 0 has dtype float32.*float64"):
        rule.step(params, [np.zeros(3, np.float32), np.zeros((2, 2))], state)
    with pytest.raises(ValueError, match="2 parameters but 1 gradients"):
        rule.step(params, [np.zeros(3)], state)
    with pytest.raises(ValueError, match="state has 1 entries"):
        rule.step(params, [np.zeros(3), np.zeros((2, 2))], state[:1])


def test_numba_rejects_non_contiguous_params():
    rule = optim.get("sgd", backend="numba")
    p = np.zeros((4, 4))[:, ::2]
    with pytest.raises(ValueError, match="not C-contiguous"):
        rule.init([p])


def test_torch_backend_rejects_numpy_params():
    with pytest.raises(TypeError, match=r"expects torch\.Tensor"):
        optim.get("sgd", backend="torch").init([np.zeros(3)])


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_non_finite_gradients_propagate_like_torch(name, backend):
    """NaN/inf gradients are not checked or clipped: parameters become what torch makes them."""
    g = np.array([np.nan, np.inf, -np.inf, 1.0])
    rule = optim.get(name, backend=backend, lr=0.1)
    p = [torch.ones(4, dtype=torch.float64)] if backend == "torch" else [np.ones(4)]
    st = rule.init(p)
    rule.step(p, [torch.from_numpy(g.copy()) if backend == "torch" else g.copy()], st)
    tp = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = rule.torch_optimizer([tp])
    tp.grad = torch.from_numpy(g.copy())
    opt.step()
    ours, theirs = np.asarray(p[0]), tp.detach().numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_array_equal(ours[np.isfinite(theirs)], theirs[np.isfinite(theirs)])
    np.testing.assert_array_equal(ours[np.isinf(theirs)], theirs[np.isinf(theirs)])


def test_none_gradient_leaves_parameter_and_state_untouched():
    rule = optim.get("adam", backend="numba", lr=0.1)
    params = [np.ones(3), np.ones(2)]
    state = rule.init(params)
    rule.step(params, [np.ones(3), None], state)
    np.testing.assert_array_equal(params[1], np.ones(2))
    assert state[1] == {}
    assert state[0]["step"] == 1.0


# ---- edges: what torch.optim accepts at the boundary, messages, implementations ----------

# (optimizer, hyperparameters) at the edge of the valid range, which torch.optim accepts
ACCEPTED = [
    ("sgd", {"lr": 0.0, "momentum": 0.0, "weight_decay": 0.0}),
    ("adam", {"betas": (0.0, 0.0), "eps": 0.0}), ("adamax", {"betas": (0.0, 0.5)}),
    ("adadelta", {"rho": 0.0}), ("adadelta", {"rho": 1.0}),
    ("adafactor", {"beta2_decay": 0.0}), ("adafactor", {"eps": (0.0, 0.0)}),
    ("adafactor", {"eps": (0.5, 1e-3), "d": 1.0}),
    ("rprop", {"etas": (1e-3, 1.001)}),
]


@pytest.mark.parametrize(("name", "hyper"), ACCEPTED)
def test_accepts_what_torch_accepts_at_the_edges(name, hyper):
    spec = OPTIMIZERS[name]
    torch_opt = spec.torch_class()([torch.zeros(2, requires_grad=True)], **hyper)
    resolved = optim.get(name, **hyper).hyper
    for key, value in hyper.items():
        assert resolved[key] == torch_opt.defaults[key] == value


def test_type_errors_name_the_value_and_what_was_expected():
    with pytest.raises(TypeError, match=r"hyperparameter lr='abc' must be a real number, got "
                                        r"str$"):
        optim.get("adam", lr="abc")
    with pytest.raises(TypeError, match=r"hyperparameter lr=None must be a real number, got "
                                        r"NoneType$"):
        optim.get("sgd", lr=None)
    with pytest.raises(TypeError, match=r"betas=0\.9 must be a pair \(beta1, beta2\)$"):
        optim.get("adam", betas=0.9)
    with pytest.raises(TypeError, match=r"etas=1 must be a pair \(etaminus, etaplus\)$"):
        optim.get("rprop", etas=1)
    with pytest.raises(TypeError, match=r"eps=0\.001 must be a pair \(epsilon1 or None, "
                                        r"epsilon2\)$"):
        optim.get("adafactor", eps=1e-3)
    with pytest.raises(TypeError, match=r"hyperparameter betas\[1\]='x' must be a real"):
        optim.get("adam", betas=(0.9, "x"))
    with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) a, b; valid: lr, "
                                        r"momentum, dampening, weight_decay, nesterov, "
                                        r"maximize$"):
        optim.get("sgd", b=1, a=2)
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamx'; expected one of sgd, "
                                         r"adagrad, rmsprop, adam, adamw, nadam, radam, adamax, "
                                         r"adadelta, rprop, asgd, adafactor, momentum, nesterov$"):
        optim.get("adamx")


def test_value_errors_name_the_hyperparameter_and_the_range():
    nan = float("nan")
    cases = [
        ("adam", {"lr": nan}, r"^Invalid lr value: nan \(expected a finite number\)$"),
        ("adam", {"betas": (nan, 0.9)}, r"^Invalid betas\[0\] value: nan"),
        ("adam", {"betas": (0.9, nan)}, r"^Invalid betas\[1\] value: nan"),
        ("adafactor", {"eps": (nan, 1e-3)}, r"^Invalid eps\[0\] value: nan"),
        ("adafactor", {"eps": (None, nan)}, r"^Invalid eps\[1\] value: nan"),
        ("sgd", {"nesterov": True}, (r"^Nesterov momentum requires a momentum and zero "
                                    r"dampening \(got momentum=0\.0, dampening=0\.0\)$")),
        ("rprop", {"etas": (0.5, 1.0)}, (r"^Invalid eta values: 0\.5, 1\.0 \(expected 0 < "
                                        r"etaminus < 1 < etaplus\)$")),
    ]
    for name, hyper, message in cases:
        with pytest.raises(ValueError, match=message):
            optim.get(name, **hyper)


def test_numbers_of_other_types_are_converted():
    """A 0-dim tensor or numpy scalar is accepted as torch accepts it, as a float."""
    for value in (torch.tensor(0.25, dtype=torch.float64), np.float32(0.25), 1):
        lr = optim.get("adam", lr=value).hyper["lr"]
        assert type(lr) is float
        assert lr == float(value)


def test_torch_optimizer_forces_the_implementation():
    p = [torch.zeros(2, requires_grad=True)]
    spec = OPTIMIZERS["adam"]
    assert spec.torch_impls() == ("forloop", "foreach", "fused")
    assert OPTIMIZERS["rmsprop"].torch_impls() == ("forloop", "foreach")
    default = spec.torch_optimizer(p, lr=0.5).defaults
    assert (default["foreach"], default["fused"], default["lr"]) == (False, None, 0.5)
    foreach = spec.torch_optimizer(p, "foreach").defaults
    assert (foreach["foreach"], foreach["fused"]) == (True, None)
    fused = spec.torch_optimizer(p, "fused").defaults
    assert (fused["foreach"], fused["fused"]) == (None, True)
    with pytest.raises(ValueError, match=r"^unknown torch implementation 'cuda'; expected one "
                                         r"of forloop, foreach, fused$"):
        spec.torch_optimizer(p, "cuda")
    with pytest.raises(ValueError, match=r"^torch.optim.RMSprop has no fused implementation$"):
        OPTIMIZERS["rmsprop"].torch_optimizer(p, "fused")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_on_cpu_is_what_torch_supports(name):
    """``fused_on_cpu`` and ``torch_impls`` against torch: does a fused CPU step run?"""
    spec = OPTIMIZERS[name]
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    try:
        opt = spec.torch_class()([p], fused=True)
        p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        supported = True
    except (TypeError, RuntimeError, ValueError):
        supported = False
    assert spec.fused_on_cpu is supported
    assert spec.torch_impls() == (("forloop", "foreach", "fused") if supported
                                  else ("forloop", "foreach"))


STATE_CASES = [
    ("sgd", {}), ("sgd", {"momentum": 0.5}), ("rmsprop", {}), ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"centered": True}), ("rmsprop", {"momentum": 0.5, "centered": True}),
    ("adam", {}), ("adam", {"amsgrad": True}), ("adamw", {"amsgrad": True}),
    ("adafactor", {}),
] + [(name, {}) for name in OPTIMIZERS if name not in ("sgd", "rmsprop", "adam", "adafactor")]


@pytest.mark.parametrize(("name", "hyper"), STATE_CASES)
def test_state_names_are_torchs_own(name, hyper):
    """state_names against the state torch.optim itself keeps after one step."""
    spec = OPTIMIZERS[name]
    resolved = spec.resolve(**hyper)
    every = set()
    for shape in ((3,), (2, 3), ()):
        p = torch.ones(shape, dtype=torch.float64, requires_grad=True)
        opt = spec.torch_class()([p], **hyper)
        p.grad = torch.full(shape, 0.5, dtype=torch.float64)
        opt.step()
        theirs = set(opt.state[p]) - ({"step"} if name == "sgd" else set())
        assert set(spec.state_names(resolved, len(shape))) == theirs, shape
        assert len(spec.state_names(resolved, len(shape))) == len(theirs)
        every |= theirs
    assert set(spec.state_names(resolved)) == every


def test_alias_defaults_are_fresh_copies():
    from suite.optim.spec import alias_defaults

    assert alias_defaults("Nesterov") == {"momentum": 0.9, "nesterov": True}
    assert alias_defaults("sgd") == {}
    got = alias_defaults("momentum")
    got["momentum"] = 0.5
    assert alias_defaults("momentum") == {"momentum": 0.9}
