"""Optimizers a user might bring, for the tests (importable as ``user_optim:ClipMomentum`` once
``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import torch


class ClipMomentum(torch.optim.Optimizer):
    """SGD with momentum on gradients clipped to a global norm over *all* parameters.

    The scale ``min(1, max_norm / ‖g‖)`` couples every parameter of the instance, so N
    starts put in one instance (one tensor or N tensors) do not run as N independent starts.
    """

    def __init__(self, params, lr=1e-2, momentum=0.9, max_norm=1.0):
        if lr <= 0:
            raise ValueError(f"lr={lr}; expected > 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "max_norm": max_norm})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        total = float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        for group in self.param_groups:
            scale = min(1.0, group["max_norm"] / (total + 1e-12))
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(group["momentum"]).add_(p.grad, alpha=scale)
                p.add_(buf, alpha=-group["lr"])
        return loss


class Exploding(torch.optim.Optimizer):
    """Raises on its third step (a broken user optimizer)."""

    def __init__(self, params, lr=1e-2):
        super().__init__(params, {"lr": lr})
        self.calls = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.calls += 1
        if self.calls >= 3:
            raise RuntimeError("exploded on purpose")
        for g in self.param_groups:
            for p in g["params"]:
                p.add_(p.grad, alpha=-g["lr"])


def clip_momentum_factory(params, learning_rate=1e-2, **hyper):
    """A factory with its own name for the learning rate (``rename={'lr': 'learning_rate'}``)."""
    return ClipMomentum(params, lr=learning_rate, **hyper)
