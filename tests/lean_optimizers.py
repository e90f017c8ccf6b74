"""Lean optimizers as users write them: reduced signatures, renamed hyperparameters, other
state conventions, and one deliberate deviation each (written here in torch, independently of
suite.optim.variants, whose entries the tests expect to name them)."""

import torch


class LeanAdam(torch.optim.Optimizer):
    """Adam with only lr, betas and eps (no weight_decay, amsgrad, maximize)."""

    bias_correction = True
    #: the moments' dtype (None: the parameter's)
    state_dtype = None

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p, dtype=self.state_dtype)
                    st["exp_avg_sq"] = torch.zeros_like(p, dtype=self.state_dtype)
                st["step"] += 1
                t = float(st["step"])
                g = p.grad.to(st["exp_avg"].dtype)
                st["exp_avg"].lerp_(g, 1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                c1, c2 = (1 - b1**t, 1 - b2**t) if self.bias_correction else (1.0, 1.0)
                denom = (st["exp_avg_sq"].sqrt() / c2**0.5).add_(group["eps"])
                p.addcdiv_(st["exp_avg"], denom, value=-group["lr"] / c1)


class NoBiasAdam(LeanAdam):
    """LeanAdam without the bias corrections of either moment."""

    bias_correction = False


class StrictKwargsAdam(LeanAdam):
    """Takes **kwargs and rejects unknown names at construction, as many libraries do."""

    def __init__(self, params, **kwargs):
        known = {"lr", "betas", "eps"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}")
        super().__init__(params, **kwargs)


class SumAdam(LeanAdam):
    """Adam's parameters exactly, but exp_avg kept as an un-normalised running sum
    m' = beta1 m' + g (= m / (1 - beta1)); the update rescales it."""

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = float(st["step"])
                st["exp_avg"].mul_(b1).add_(p.grad)
                st["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (st["exp_avg_sq"].sqrt() / (1 - b2**t) ** 0.5).add_(group["eps"])
                m = st["exp_avg"] * (1 - b1)
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))


class BetaSGD(torch.optim.Optimizer):
    """SGD whose momentum argument is called ``beta``; no dampening, nesterov or maximize."""

    def __init__(self, params, lr=1e-3, beta=0.0, weight_decay=0.0, ema=False):
        super().__init__(params, {"lr": lr, "beta": beta, "weight_decay": weight_decay})
        self.ema = ema

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                if group["beta"]:
                    st = self.state[p]
                    if self.ema:  # EMA-style: buf = beta*buf + (1 - beta)*g, from zero
                        buf = st.setdefault("momentum_buffer", torch.zeros_like(p))
                        buf.mul_(group["beta"]).add_(g, alpha=1 - group["beta"])
                    elif "momentum_buffer" not in st:
                        st["momentum_buffer"] = g.clone()
                    else:
                        st["momentum_buffer"].mul_(group["beta"]).add_(g)
                    g = st["momentum_buffer"]
                p.add_(g, alpha=-group["lr"])


def ema_sgd(params, lr=1e-3, beta=0.0, weight_decay=0.0):
    return BetaSGD(params, lr=lr, beta=beta, weight_decay=weight_decay, ema=True)


class Deviant(torch.optim.Optimizer):
    """Full torch.optim signatures for adam / adagrad / rmsprop, with one deviation ``how``:
    decoupled weight decay, RMSprop's square_avg starting at 1, state in a narrower dtype,
    every step scaled by a constant, or the step counted per group."""

    def __init__(self, params, rule, how, scale=0.5, state_dtype=None, **hyper):
        self.rule, self.how, self.scale, self.state_dtype = rule, how, scale, state_dtype
        super().__init__(params, hyper)

    def _zeros(self, p, fill=0.0):
        return torch.full_like(p, fill, dtype=self.state_dtype or p.dtype)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            h = {k: v for k, v in group.items() if k not in ("params", "group_step")}
            group_step = group["group_step"] = group.get("group_step", 0) + 1
            for p in group["params"]:
                if p.grad is not None:
                    st = self.state[p]
                    if self.how == "group_step" and st:  # as many libraries count steps
                        st["step"] = torch.tensor(float(group_step - 1))
                    getattr(self, "_" + self.rule)(p, p.grad, st, **h)

    def _decay(self, p, g, lr, wd):
        if wd and self.how == "decoupled":
            p.mul_(1 - lr * wd)
            return g
        return g + wd * p if wd else g

    def _adam(self, p, g, st, lr, betas, eps, weight_decay, amsgrad, maximize):
        b1, b2 = betas
        if "exp_avg" not in st:
            st["step"] = st.get("step", torch.tensor(0.0))
            st["exp_avg"], st["exp_avg_sq"] = self._zeros(p), self._zeros(p)
            if amsgrad:
                st["max_exp_avg_sq"] = self._zeros(p)
        g = -g if maximize else g
        g = self._decay(p, g, lr, weight_decay)
        st["step"] += 1
        t = float(st["step"])
        st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        v = st["exp_avg_sq"]
        if amsgrad:
            torch.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
            v = st["max_exp_avg_sq"]
        denom = v.sqrt() / (1 - b2**t) ** 0.5 + eps
        factor = self.scale if self.how == "scaled" else 1.0
        p.add_(-(factor * lr / (1 - b1**t)) * st["exp_avg"] / denom)

    def _adagrad(self, p, g, st, lr, lr_decay, weight_decay, initial_accumulator_value, eps,
                 maximize):
        if not st:
            st["step"] = torch.tensor(0.0)
            st["sum"] = self._zeros(p, initial_accumulator_value)
        st["step"] += 1
        g = -g if maximize else g
        g = self._decay(p, g, lr, weight_decay)
        clr = lr / (1 + (float(st["step"]) - 1) * lr_decay)
        st["sum"].addcmul_(g, g)
        p.add_(-clr * g / (st["sum"].sqrt() + eps))

    def _rmsprop(self, p, g, st, lr, alpha, eps, weight_decay, momentum, centered, maximize):
        if not st:
            st["step"] = torch.tensor(0.0)
            st["square_avg"] = self._zeros(p, 1.0 if self.how == "starts_at_one" else 0.0)
            if centered:
                st["grad_avg"] = self._zeros(p)
            if momentum:
                st["momentum_buffer"] = self._zeros(p)
        st["step"] += 1
        g = -g if maximize else g
        g = self._decay(p, g, lr, weight_decay)
        st["square_avg"].mul_(alpha).addcmul_(g, g, value=1 - alpha)
        var = st["square_avg"]
        if centered:
            st["grad_avg"].mul_(alpha).add_(g, alpha=1 - alpha)
            var = var - st["grad_avg"] ** 2
        avg = var.sqrt() + eps
        if momentum:
            st["momentum_buffer"].mul_(momentum).add_(g / avg)
            p.add_(-lr * st["momentum_buffer"])
        else:
            p.add_(-lr * g / avg)


def deviant(rule, how, **options):
    def factory(params, **hyper):
        return Deviant(params, rule, how, **options, **hyper)
    factory.__qualname__ = f"Deviant[{rule}, {how}]"
    return factory
