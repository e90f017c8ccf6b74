"""pytorch-optimizer's NAdam, RAdam, AdaMax and AdaDelta against gradsuite's references.

Which of them are faithful to torch.optim, and where the others differ, found by
check_optimizer (its ASGD and AdaFactor are other algorithms under the same names: Adaptive
SGD with an ``amplifier``, and the paper's Adafactor with momentum and parameter scaling).
"""

import functools

import pytest
import torch

from suite.conformance import check_optimizer

po = pytest.importorskip("pytorch_optimizer")

FAST = {"steps": 40, "dtypes": ("float64",), "probes": ("scaled", "model")}


def adamax(params, lr, betas, eps, weight_decay, maximize):
    return po.AdaMax(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                     weight_decouple=False, maximize=maximize)


def adadelta(params, lr, rho, eps, weight_decay, maximize):
    return po.AdaDelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                       weight_decouple=False, maximize=maximize)


def radam(params, lr, betas, eps, weight_decay, decoupled_weight_decay, maximize,
          degenerated_to_sgd=True):
    return po.RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                    weight_decouple=decoupled_weight_decay,
                    degenerated_to_sgd=degenerated_to_sgd, maximize=maximize)


def test_nadam_is_torchs_own_and_passes():
    assert po.NAdam is torch.optim.NAdam
    assert check_optimizer(po.NAdam, "nadam", **FAST).passed


def test_adadelta_is_faithful():
    result = check_optimizer(adadelta, "adadelta", **FAST)
    assert result.passed, str(result)


def test_adamax_counts_steps_per_group():
    """Faithful on every step where each parameter has a gradient; its step counter is the
    param group's, so the model probe's step without gradients shifts every later bias
    correction (first seen at step 4, the step after it)."""
    result = check_optimizer(adamax, "adamax", **FAST)
    assert not result.passed
    assert {f.probe for f in result.failures} == {"model"}
    assert {f.step for f in result.failures} == {4}
    assert set(result.explained()) >= {"step_counted_per_group"}, str(result)


def test_radam_ignores_coupled_weight_decay_and_skips_early_steps():
    # with degenerated_to_sgd=True and no coupled decay: only the group step counter differs
    ok = [{}, {"lr": 0.01, "betas": (0.9, 0.99)},
          {"lr": 1e-3, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}]
    assert check_optimizer(radam, "radam", configs=ok, **{**FAST, "probes": ("scaled",)}).passed
    # coupled decay (weight_decouple=False) is never applied: the update ignores it
    coupled = check_optimizer(radam, "radam", configs=[{"weight_decay": 0.1}],
                              **{**FAST, "probes": ("scaled",)})
    assert not coupled.passed
    assert coupled.failures[0].step == 1
    # its default degenerated_to_sgd=False does not move the parameters while rho_t <= 5
    default = check_optimizer(functools.partial(radam, degenerated_to_sgd=False), "radam",
                              configs=[{}], **{**FAST, "probes": ("scaled",)})
    assert not default.passed
    assert default.failures[0].step == 1
