"""check_optimizer: broken optimizers are caught, faithful ones pass, torch.optim passes."""

import sys
import textwrap

import pytest

from suite.conformance import check_optimizer

ZOO = '''
import math
import torch


class Textbook(torch.optim.Optimizer):
    """Faithful re-implementations written from the textbook formulas, not torch's code.

    ``bug`` injects one realistic mistake; ``names`` = False stores state under other names.
    """

    def __init__(self, params, rule, bug=None, names=True, **hyper):
        self.rule, self.bug, self.names = rule, bug, names
        super().__init__(params, hyper)

    def _key(self, k):
        return k if self.names else "my_" + k

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            hyper = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                if p.grad is None:
                    continue
                getattr(self, "_" + self.rule)(p, p.grad, self.state[p], **hyper)

    def _sgd(self, p, g, st, lr, momentum, dampening, weight_decay, nesterov, maximize):
        bug = self.bug
        if maximize and bug != "maximize_ignored":
            g = -g
        if weight_decay and bug != "wd_after_momentum":
            g = g + weight_decay * p
        d = g
        if momentum:
            k = self._key("momentum_buffer")
            if k not in st:
                st[k] = (1 - dampening) * g if bug == "dampening_first_step" else (
                    momentum * torch.zeros_like(g) + (1 - dampening) * g
                    if bug == "buffer_starts_at_zero" else g.clone())
            else:
                st[k] = momentum * st[k] + (1 - dampening) * g
            d = g + momentum * st[k] if (nesterov and bug != "nesterov_ignored") else st[k]
        if weight_decay and bug == "wd_after_momentum":
            d = d + weight_decay * p
        p.sub_(lr * d)

    def _adagrad(self, p, g, st, lr, lr_decay, weight_decay, initial_accumulator_value, eps,
                 maximize):
        bug = self.bug
        s = self._key("sum")
        if s not in st:
            iav = 0.0 if bug == "iav_ignored" else initial_accumulator_value
            st[s] = torch.full_like(p, iav)
            st["step"] = torch.tensor(0.0)
        st["step"] += 1
        t = float(st["step"])
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * p
        clr = lr / (1 + (t if bug == "lr_decay_from_step" else t - 1) * lr_decay)
        st[s] = st[s] + g * g
        denom = torch.sqrt(st[s] + eps) if bug == "eps_inside" else torch.sqrt(st[s]) + eps
        p.sub_(clr * g / denom)

    def _rmsprop(self, p, g, st, lr, alpha, eps, weight_decay, momentum, centered, maximize):
        bug = self.bug
        v, ga, b = self._key("square_avg"), self._key("grad_avg"), self._key("momentum_buffer")
        if v not in st:
            st[v] = torch.zeros_like(p)
            st["step"] = torch.tensor(0.0)
            if centered:
                st[ga] = torch.zeros_like(p)
            if momentum:
                st[b] = torch.zeros_like(p)
        st["step"] += 1
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * p
        a = 1 - alpha if bug == "alpha_swapped" else alpha
        st[v] = a * st[v] + (1 - a) * g * g
        var = st[v]
        if centered:
            st[ga] = alpha * st[ga] + (1 - alpha) * g
            if bug != "centered_ignored":
                var = var - st[ga] ** 2
        denom = torch.sqrt(var + eps) if bug == "eps_inside" else torch.sqrt(var) + eps
        if momentum:
            st[b] = momentum * st[b] + g / denom
            p.sub_(lr * st[b])
        else:
            p.sub_(lr * g / denom)

    def _adam(self, p, g, st, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=False):
        bug = self.bug
        b1, b2 = betas
        m, v, vm = self._key("exp_avg"), self._key("exp_avg_sq"), self._key("max_exp_avg_sq")
        if m not in st:
            st[m], st[v] = torch.zeros_like(p), torch.zeros_like(p)
            st["step"] = torch.tensor(0.0)
            if amsgrad:
                st[vm] = torch.zeros_like(p)
        st["step"] += 1
        t = float(st["step"]) + (1 if bug == "bias_off_by_one" else 0)  # first update: t = 2
        if bug == "maximize_after_wd":
            if weight_decay and not decoupled:
                g = g + weight_decay * p
            if maximize:
                g = -g
        else:
            if maximize:
                g = -g
            if weight_decay and not decoupled:
                g = g + weight_decay * p
        if weight_decay and decoupled:
            p.mul_(1 - (1.0 if bug == "wd_not_scaled_by_lr" else lr) * weight_decay)
        st[m] = b1 * st[m] + (1 - b1) * g
        st[v] = b2 * st[v] + (1 - b2) * g * g
        bc1, bc2 = (1.0, 1.0) if bug == "no_bias_correction" else (1 - b1**t, 1 - b2**t)
        v_used = st[v]
        if amsgrad and bug != "amsgrad_ignored":
            if bug == "amsgrad_max_of_vhat":
                st[vm] = torch.maximum(st[vm], st[v] / bc2)
                v_hat = st[vm]
            else:
                st[vm] = torch.maximum(st[vm], st[v])
                v_used = st[vm]
                v_hat = st[vm] / bc2
        else:
            v_hat = v_used / bc2
        m_hat = st[m] / bc1
        if bug == "eps_inside":
            denom = torch.sqrt(v_hat + eps)
        elif bug == "eps_before_bias_correction":
            denom = (torch.sqrt(v_used) + eps) / math.sqrt(bc2)
        else:
            denom = torch.sqrt(v_hat) + eps
        p.sub_(lr * m_hat / denom)

    def _adamw(self, p, g, st, **h):
        self._adam(p, g, st, decoupled=self.bug != "adamw_coupled", **h)


def make(rule, bug=None, names=True):
    def factory(params, **hyper):
        return Textbook(params, rule, bug=bug, names=names, **hyper)
    factory.__qualname__ = f"Textbook[{rule}{', ' + bug if bug else ''}]"
    return factory
'''

BROKEN = [
    ("sgd", "dampening_first_step"), ("sgd", "nesterov_ignored"), ("sgd", "wd_after_momentum"),
    ("sgd", "maximize_ignored"), ("sgd", "buffer_starts_at_zero"),
    ("adagrad", "lr_decay_from_step"), ("adagrad", "iav_ignored"), ("adagrad", "eps_inside"),
    ("rmsprop", "eps_inside"), ("rmsprop", "centered_ignored"), ("rmsprop", "alpha_swapped"),
    ("adam", "no_bias_correction"), ("adam", "bias_off_by_one"), ("adam", "eps_inside"),
    ("adam", "amsgrad_max_of_vhat"), ("adam", "amsgrad_ignored"),
    ("adam", "eps_before_bias_correction"), ("adam", "maximize_after_wd"),
    ("adamw", "adamw_coupled"), ("adamw", "wd_not_scaled_by_lr"),
]
REFERENCES = ["sgd", "adagrad", "rmsprop", "adam", "adamw"]

#: The catalogue's name for each mistake of the zoo (suite.optim.variants). Adding the decay
#: after momentum is decoupled weight decay for SGD, and starting the buffer at zero with
#: dampening is dampening on the first step: the same maths under two names.
ZOO_NAMES = {
    ("sgd", "dampening_first_step"): "dampening_on_first_step",
    ("sgd", "nesterov_ignored"): "nesterov_ignored",
    ("sgd", "wd_after_momentum"): "decoupled_weight_decay",
    ("sgd", "maximize_ignored"): "maximize_ignored",
    ("sgd", "buffer_starts_at_zero"): "dampening_on_first_step",
    ("adagrad", "lr_decay_from_step"): "lr_decay_from_wrong_step",
    ("adagrad", "iav_ignored"): "initial_accumulator_ignored",
    ("adagrad", "eps_inside"): "eps_inside_sqrt",
    ("rmsprop", "eps_inside"): "eps_inside_sqrt",
    ("rmsprop", "centered_ignored"): "centered_ignored",
    ("rmsprop", "alpha_swapped"): "square_avg_weights_swapped",
    ("adam", "no_bias_correction"): "no_bias_correction",
    ("adam", "bias_off_by_one"): "bias_correction_off_by_one",
    ("adam", "eps_inside"): "eps_inside_sqrt",
    ("adam", "amsgrad_max_of_vhat"): "amsgrad_max_of_vhat",
    ("adam", "amsgrad_ignored"): "amsgrad_ignored",
    ("adam", "eps_before_bias_correction"): "eps_before_bias_correction",
    ("adam", "maximize_after_wd"): "maximize_after_weight_decay",
    ("adamw", "adamw_coupled"): "coupled_weight_decay",
    ("adamw", "wd_not_scaled_by_lr"): "weight_decay_not_scaled_by_lr",
}


def zoo_module():
    """The zoo as an importable module (for tests in other files)."""
    import importlib
    import tempfile

    d = tempfile.mkdtemp(prefix="zoo")
    with open(f"{d}/optzoo_shared.py", "w") as fh:
        fh.write(textwrap.dedent(ZOO))
    sys.path.insert(0, d)
    try:
        return importlib.import_module("optzoo_shared")
    finally:
        sys.path.remove(d)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp("zoo")
    (d / "optzoo.py").write_text(textwrap.dedent(ZOO))
    sys.path.insert(0, str(d))
    import optzoo

    yield optzoo
    sys.path.remove(str(d))
    sys.modules.pop("optzoo", None)


# The plain run uses 60 steps to stay fast; `-m slow` repeats every check at the default 200.
STEPS = [60, pytest.param(200, marks=pytest.mark.slow)]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize(("rule", "bug"), BROKEN, ids=[f"{r}-{b}" for r, b in BROKEN])
def test_broken_optimizer_is_caught(zoo, rule, bug, steps):
    result = check_optimizer(zoo.make(rule, bug), reference=rule, dtypes=("float64",),
                             steps=steps)
    assert not result.passed, str(result)
    f = result.failures[0]
    assert f.step is not None
    assert f.step >= 1
    assert f.error > f.tol
    text = str(result)
    assert "FAIL" in text
    assert "first differs at step" in text
    # each mistake is named by the catalogue, in every failing cell
    name = ZOO_NAMES[(rule, bug)]
    explained = result.explained()
    assert name in explained, text
    assert len(explained[name]) == len(result.failures), text
    assert f"consistent with: {name}" in text or f"; {name}" in text


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("rule", REFERENCES)
def test_faithful_reimplementation_passes(zoo, rule, steps):
    result = check_optimizer(zoo.make(rule), reference=rule, steps=steps)
    assert result.passed, str(result)
    stateful = result.frame["config"].str.contains("momentum") | (rule != "sgd")
    assert (result.frame.loc[stateful, "state_compared"] > 0).all()
    # passing is not vacuous: errors were measured, and sit below the tolerance
    assert result.frame["max_error_param"].notna().all()
    assert (result.frame["max_error_param"] <= result.frame["tol"]).all()


def test_state_under_other_names_compares_parameters_only(zoo):
    result = check_optimizer(zoo.make("adam", names=False), reference="adam",
                             dtypes=("float64",), probes=("scaled",), steps=60)
    assert result.passed
    assert "exposes no state" in str(result)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("rule", REFERENCES)
def test_torch_optim_passes_against_its_reference(rule, steps):
    from suite.optim import get_spec

    cls = get_spec(rule).torch_class()
    impls = [{"foreach": False}, {"foreach": True}]
    if get_spec(rule).fused_on_cpu:
        impls.append({"fused": True})
    for impl in impls:
        result = check_optimizer(cls, reference=rule, extra_kwargs=impl, steps=steps)
        assert result.passed, str(result)


def test_errors_are_clear(zoo):
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        check_optimizer(zoo.make("adam"), reference="adamm")
    with pytest.raises(ValueError, match="unknown probe 'noisy'"):
        check_optimizer(zoo.make("adam"), reference="adam", probes=("noisy",))
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        check_optimizer(zoo.make("adam"), reference="adam", dtypes=("int8",))

    def raises(params, **h):
        raise RuntimeError("no GPU here")

    result = check_optimizer(raises, reference="sgd", probes=("scaled",), dtypes=("float64",))
    assert not result.passed
    assert "construction failed: RuntimeError: no GPU here" in str(result)


def test_restricted_configs(zoo):
    res = check_optimizer(zoo.make("sgd", "nesterov_ignored"), reference="sgd",
                          configs=[{"lr": 0.1, "momentum": 0.9}], dtypes=("float64",), steps=60)
    assert res.passed  # the bug is invisible without nesterov: only the asked configs run
    assert set(res.frame["config"]) == {"sgd(lr=0.1, momentum=0.9)"}


pytest_plugins = ["pytester"]


def test_pytest_plugin_reports_the_diagnosis(pytester, zoo, monkeypatch):
    zoo_dir = str(__import__("pathlib").Path(zoo.__file__).parent)
    monkeypatch.setenv("PYTHONPATH", zoo_dir)
    pytester.makepyfile(test_user="""
        import torch
        import optzoo

        def test_good(optimizer_conformance):
            optimizer_conformance(torch.optim.SGD, "sgd", steps=30, dtypes=("float64",),
                                  probes=("scaled",))

        def test_bad(optimizer_conformance):
            optimizer_conformance(optzoo.make("adam", "eps_inside"), "adam", steps=30,
                                  dtypes=("float64",), probes=("scaled",))
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*FAIL*", "*first differs at step 1*"])


def test_cli_check(zoo, capsys):
    from suite.cli import main

    assert main(["check", "torch.optim:SGD", "--reference", "sgd", "--steps", "20",
                 "--dtypes", "float64"]) == 0
    assert "PASS" in capsys.readouterr().out
    def raises(params, lr=1e-3):
        raise RuntimeError("no GPU here")

    zoo.raises = raises
    assert main(["check", "optzoo:raises", "--reference", "sgd", "--steps", "20"]) == 2
    assert "raised on construction: RuntimeError: no GPU here" in capsys.readouterr().err
    assert main(["check", "nosuchmodule:X", "--reference", "sgd"]) == 2
    assert "cannot import module 'nosuchmodule'" in capsys.readouterr().err
    assert main(["check", "torch.optim:SGD", "--reference", "lion"]) == 2
    assert "unknown optimizer 'lion'" in capsys.readouterr().err
    zoo.bad_sgd = zoo.make("sgd", "nesterov_ignored")
    assert main(["check", "optzoo:bad_sgd", "--reference", "sgd", "--steps", "30",
                 "--dtypes", "float64"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert "nesterov=True" in out
