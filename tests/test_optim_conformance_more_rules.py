"""check_optimizer on NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD and Adafactor.

Each rule is re-implemented here from its formulas (the papers' and torch's documentation, not
gradsuite's kernels), with one classic mistake that can be switched on. The faithful versions
and torch.optim's own classes must pass; each mistake must be caught, at the step where it
first changes something.
"""

import math

import pytest
import torch

from suite.conformance import check_optimizer


class Formulas(torch.optim.Optimizer):
    """Textbook versions of the seven rules; ``bug`` switches on one mistake."""

    def __init__(self, params, rule, bug=None, **hyper):
        self.rule, self.bug = rule, bug
        super().__init__(params, hyper)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            hyper = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                if p.grad is not None:
                    st = self.state[p]
                    if not st:
                        st["step"] = torch.tensor(0.0)
                    st["step"] += 1
                    getattr(self, "_" + self.rule)(p, p.grad, st, float(st["step"]), **hyper)

    def _nadam(self, p, g, st, t, lr, betas, eps, weight_decay, momentum_decay,
               decoupled_weight_decay, maximize):
        b1, b2 = betas
        g = -g if maximize else g
        if "exp_avg" not in st:
            st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            st["mu_product"] = torch.tensor(1.0)
        if weight_decay:
            if decoupled_weight_decay:
                p.mul_(1 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        if self.bug == "no_momentum_schedule":
            mu = mu_next = b1
        else:
            mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
            mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        st["mu_product"] *= mu
        prod = float(st["mu_product"])
        st["exp_avg"] = b1 * st["exp_avg"] + (1 - b1) * g
        st["exp_avg_sq"] = b2 * st["exp_avg_sq"] + (1 - b2) * g * g
        denom = torch.sqrt(st["exp_avg_sq"] / (1 - b2**t)) + eps
        p.sub_(lr * (1 - mu) / (1 - prod) * g / denom
               + lr * mu_next / (1 - prod * mu_next) * st["exp_avg"] / denom)

    def _radam(self, p, g, st, t, lr, betas, eps, weight_decay, decoupled_weight_decay,
               maximize):
        b1, b2 = betas
        g = -g if maximize else g
        if "exp_avg" not in st:
            st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        if weight_decay:
            if decoupled_weight_decay:
                p.mul_(1 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        st["exp_avg"] = b1 * st["exp_avg"] + (1 - b1) * g
        st["exp_avg_sq"] = b2 * st["exp_avg_sq"] + (1 - b2) * g * g
        m_hat = st["exp_avg"] / (1 - b1**t)
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho > 5 or self.bug == "no_rectification_switch":
            r = math.sqrt(max((rho - 4) * (rho - 2) * rho_inf
                              / ((rho_inf - 4) * (rho_inf - 2) * rho), 0.0))
            p.sub_(lr * m_hat * r * math.sqrt(1 - b2**t) / (torch.sqrt(st["exp_avg_sq"]) + eps))
        else:
            p.sub_(lr * m_hat)

    def _adamax(self, p, g, st, t, lr, betas, eps, weight_decay, maximize):
        b1, b2 = betas
        g = -g if maximize else g
        if "exp_avg" not in st:
            st["exp_avg"], st["exp_inf"] = torch.zeros_like(p), torch.zeros_like(p)
        if weight_decay:
            g = g + weight_decay * p
        st["exp_avg"] = b1 * st["exp_avg"] + (1 - b1) * g
        if self.bug == "eps_outside_max":  # Keras: u = max(b2 u, |g|), divide by u + eps
            st["exp_inf"] = torch.maximum(b2 * st["exp_inf"], g.abs())
            denom = st["exp_inf"] + eps
        else:
            st["exp_inf"] = torch.maximum(b2 * st["exp_inf"], g.abs() + eps)
            denom = st["exp_inf"]
        p.sub_(lr / (1 - b1**t) * st["exp_avg"] / denom)

    def _adadelta(self, p, g, st, t, lr, rho, eps, weight_decay, maximize):
        g = -g if maximize else g
        if "square_avg" not in st:
            st["square_avg"], st["acc_delta"] = torch.zeros_like(p), torch.zeros_like(p)
        if weight_decay:
            g = g + weight_decay * p
        st["square_avg"] = rho * st["square_avg"] + (1 - rho) * g * g
        delta = torch.sqrt(st["acc_delta"] + eps) / torch.sqrt(st["square_avg"] + eps) * g
        st["acc_delta"] = rho * st["acc_delta"] + (1 - rho) * delta * delta
        p.sub_((1.0 if self.bug == "lr_ignored" else lr) * delta)

    def _rprop(self, p, g, st, t, lr, etas, step_sizes, maximize):
        g = -g if maximize else g
        if "prev" not in st:
            st["prev"], st["step_size"] = torch.zeros_like(p), torch.full_like(p, lr)
            st["raw_prev"] = torch.zeros_like(p)
        prev = st["raw_prev"] if self.bug == "sign_on_raw_previous_gradient" else st["prev"]
        s = torch.sign(g * prev)
        factor = torch.ones_like(p)
        factor[s > 0] = etas[1]
        factor[s < 0] = etas[0]
        st["step_size"] = (st["step_size"] * factor).clamp(*step_sizes)
        st["raw_prev"] = g.clone()
        g = torch.where(s < 0, torch.zeros_like(g), g)
        p.sub_(torch.sign(g) * st["step_size"])
        st["prev"] = g

    def _asgd(self, p, g, st, t, lr, lambd, alpha, t0, weight_decay, maximize):
        g = -g if maximize else g
        if "ax" not in st:
            st["eta"], st["mu"] = torch.tensor(lr), torch.tensor(1.0)
            st["ax"] = torch.zeros_like(p)
        if weight_decay:
            g = g + weight_decay * p
        new_eta = lr / (1 + lambd * lr * t) ** alpha
        eta = new_eta if self.bug == "eta_updated_before_step" else float(st["eta"])
        p.mul_(1 - lambd * eta).sub_(eta * g)
        mu = float(st["mu"])
        st["ax"] = st["ax"] + (p - st["ax"]) * mu if mu != 1 else p.clone()
        st["eta"] = torch.tensor(new_eta)
        st["mu"] = torch.tensor(1 / max(1, t - t0))

    def _adafactor(self, p, g, st, t, lr, beta2_decay, eps, d, weight_decay, maximize):
        eps1 = torch.finfo(p.dtype).eps if eps[0] is None else eps[0]
        g = -g if maximize else g
        factored = p.dim() > 1
        if "row_var" not in st and "variance" not in st:
            if factored:
                st["row_var"] = torch.zeros_like(p.sum(-1, keepdim=True))
                st["col_var"] = torch.zeros_like(p.sum(-2, keepdim=True))
            else:
                st["variance"] = torch.zeros_like(p)
        w = t**beta2_decay  # 1 - beta2_hat
        cap = 0.01 if self.bug == "paper_relative_step" else lr
        rho = min(cap, 1 / math.sqrt(t))
        rms_p = float(p.pow(2).mean().sqrt())
        step = max(eps[1], rms_p) * rho
        p.mul_(1 - lr * weight_decay)
        if factored:
            st["row_var"] = (1 - w) * st["row_var"] + w * (g * g).mean(-1, keepdim=True)
            st["col_var"] = (1 - w) * st["col_var"] + w * (g * g).mean(-2, keepdim=True)
            v = st["row_var"] * st["col_var"] / st["row_var"].mean(-2, keepdim=True).clamp(
                min=eps1)
        else:
            st["variance"] = (1 - w) * st["variance"] + w * g * g
            v = st["variance"]
        u = g / v.clamp(min=eps1 * eps1).sqrt()
        p.sub_(step / max(1.0, float(u.pow(2).mean().sqrt()) / d) * u)


def make(rule, bug=None):
    def factory(params, **hyper):
        return Formulas(params, rule, bug=bug, **hyper)

    factory.__qualname__ = f"Formulas[{rule}{', ' + bug if bug else ''}]"
    return factory


# The catalogue entries (suite.optim.variants) for the mistakes above: the check names them.
CATALOGUE_NAMES = {
    ("nadam", "no_momentum_schedule"): "nadam_constant_momentum",
    ("radam", "no_rectification_switch"): "radam_always_rectified",
    ("adamax", "eps_outside_max"): "adamax_eps_outside_max",
    ("adadelta", "lr_ignored"): "adadelta_lr_ignored",
    ("rprop", "sign_on_raw_previous_gradient"): "rprop_sign_on_raw_previous_gradient",
    ("asgd", "eta_updated_before_step"): "asgd_eta_updated_before_step",
    ("adafactor", "paper_relative_step"): "adafactor_relative_step_capped_at_0.01",
}

# The plain run: 40 steps, float64, the badly scaled probe (a matrix, a vector, a scalar); `-m slow` runs the full default check.
FAST = {"steps": 40, "dtypes": ("float64",), "probes": ("scaled",)}
RUNS = [pytest.param(FAST, id="fast"), pytest.param({}, id="full", marks=pytest.mark.slow)]

RULES = ["nadam", "radam", "adamax", "adadelta", "rprop", "asgd", "adafactor"]
BROKEN = [("nadam", "no_momentum_schedule"), ("radam", "no_rectification_switch"),
          ("adamax", "eps_outside_max"), ("adadelta", "lr_ignored"),
          ("rprop", "sign_on_raw_previous_gradient"), ("asgd", "eta_updated_before_step"),
          ("adafactor", "paper_relative_step")]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize(("rule", "bug"), BROKEN, ids=[f"{r}-{b}" for r, b in BROKEN])
def test_broken_version_is_caught(rule, bug, run):
    result = check_optimizer(make(rule, bug), reference=rule, **run)
    assert not result.passed, str(result)
    f = result.failures[0]
    assert f.step is not None
    assert f.step >= 1
    assert f.error > f.tol
    assert "first differs at step" in str(result)
    # and the catalogue names the mistake on every cell whose trajectory differs (RAdam's
    # always-rectified step raises a ZeroDivisionError where rho_inf = 4, and a raising
    # optimizer has no trajectory to name)
    name = CATALOGUE_NAMES[(rule, bug)]
    explained = result.explained()
    assert name in explained, str(result)
    differing = [f for f in result.failures if "raised" not in f.message]
    assert len(explained[name]) == len(differing), str(result)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("rule", RULES)
def test_faithful_version_passes(rule, run):
    """The same classes without the mistake pass: what is caught is the mistake."""
    result = check_optimizer(make(rule), reference=rule, **run)
    assert result.passed, str(result)
    f = result.frame
    # cells where torch.optim's own float32 run is too far from the float64 reference for a
    # tolerance to mean anything are not applicable (Adafactor at 200 steps: 0.1), and say so
    skipped = f[~f["applicable"].astype(bool)]
    assert skipped["reason"].str.contains("torch.optim's own float32 error").all(), \
        skipped["reason"].tolist()
    assert (skipped["torch_error"] > 0.01).all()
    ran = f[f["applicable"].astype(bool)]
    assert len(ran) >= len(f) - 2
    assert (ran["state_compared"] > 0).all()
    assert (ran["max_error_param"] <= ran["tol"]).all()


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("rule", RULES)
def test_torch_optim_passes_against_its_reference(rule, run):
    from suite.optim import get_spec

    cls = get_spec(rule).torch_class()
    impls = [{"foreach": False}] if rule == "asgd" else [{"foreach": False}, {"foreach": True}]
    for impl in impls:
        result = check_optimizer(cls, reference=rule, extra_kwargs=impl, **run)
        assert result.passed, str(result)


def test_torch_foreach_asgd_differs_from_its_for_loop():
    """torch's foreach ASGD computes eta in float32 arithmetic (its for-loop in double): in
    float64 that is a 1e-7 relative difference, which the float64 check reports."""
    result = check_optimizer(torch.optim.ASGD, reference="asgd", extra_kwargs={"foreach": True},
                             dtypes=("float64",), probes=("scaled",), steps=40)
    assert not result.passed
    f = result.failures[0]
    assert 1e-9 < f.error < 1e-5, str(result)

