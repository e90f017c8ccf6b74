"""A user's optimizer in the convergence runner (the torch path): the learning rate under its
own name and its schedule, an optimizer without a learning rate, the dtype of the run and the
seeded gradient noise, each against a hand computation or the reference rule."""

import math

import numpy as np
import pytest
import torch

from suite import problems as P
from suite.schedules import Schedule
from suite.studies import convergence as C
from suite.subjects import resolve


class PlainSGD(torch.optim.Optimizer):
    """p <- p - learning_rate * grad, with the rate under its own name."""

    def __init__(self, params, learning_rate=0.1):
        super().__init__(params, {"learning_rate": learning_rate})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["learning_rate"])


def _booth(x, y):
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _booth_grad(x, y):
    a, b = x + 2 * y - 7, 2 * x + y - 5
    return 2 * a + 4 * b, 4 * a + 2 * b


@pytest.mark.parametrize("elementwise", [True, False])
def test_renamed_learning_rate_follows_the_schedule(elementwise):
    """Step schedule (size 2, gamma 0.5) from 0.05: rates 0.05, 0.05, 0.025, 0.025, applied
    to the optimizer's own 'learning_rate'; four steps of gradient descent on Booth by hand."""
    sub = resolve(PlainSGD, rename={"lr": "learning_rate"}, elementwise=elementwise)
    sched = Schedule("step", {"step_size": 2, "gamma": 0.5})
    s = C.run(P.get("booth"), sub, np.array([[0.0, 0.0]]), 4, schedule=sched, lr=0.05)
    x, y = 0.0, 0.0
    for lr in (0.05, 0.05, 0.025, 0.025):
        gx, gy = _booth_grad(x, y)
        x, y = x - lr * gx, y - lr * gy
    assert s["final_value"].iloc[0] == pytest.approx(_booth(x, y), rel=1e-12)
    assert s["lr"].iloc[0] == 0.05


def test_an_optimizer_without_a_learning_rate():
    """Without 'lr' in its groups (and no rename) it runs with the constant schedule, its lr
    column is NaN; a schedule is refused with a message that says what to do."""
    starts = np.array([[0.0, 0.0], [1.0, 1.0]])
    s = C.run(P.get("booth"), PlainSGD, starts, 3)
    assert math.isnan(s["lr"].iloc[0])
    x, y = 0.0, 0.0
    for _ in range(3):
        gx, gy = _booth_grad(x, y)
        x, y = x - 0.1 * gx, y - 0.1 * gy
    assert s["final_value"].iloc[0] == pytest.approx(_booth(x, y), rel=1e-12)
    with pytest.raises(ValueError, match=r"^optimizer 'PlainSGD' has no 'lr' in its param "
                                         r"groups; a learning-rate schedule needs one \(pass "
                                         r"rename=\{'lr': \.\.\.\} if the optimizer calls it "
                                         r"otherwise\)$"):
        C.run(P.get("booth"), PlainSGD, starts, 3,
              schedule=Schedule("step", {"step_size": 2, "gamma": 0.5}))


@pytest.mark.parametrize("elementwise", [True, False])
def test_the_run_is_in_the_requested_dtype(elementwise):
    """float32: every recorded iterate is a float32 number; float64: not."""
    sub = resolve(torch.optim.SGD, elementwise=elementwise)
    starts = np.array([[0.1, 0.2], [3.0, -2.0]])
    _, t32 = C.run_full(P.get("booth"), sub, starts, 3, record_every=1, dtype="float32",
                        lr=0.01)
    _, t64 = C.run_full(P.get("booth"), sub, starts, 3, record_every=1, lr=0.01)
    for t, exact in ((t32, True), (t64, False)):
        xs = t[["x0", "x1"]].to_numpy()[2:]          # after the first step
        assert np.array_equal(xs.astype(np.float32).astype(np.float64), xs) is exact


def test_gradient_noise_is_seeded_as_for_the_references():
    """A noisy problem: torch.optim.SGD as a user's class sees the same seeded noise as the
    reference rule (numpy), so both end at the same point; another seed does not."""
    prob = P.noisy(P.get("booth"), 0.5)
    starts = np.array([[0.0, 0.0], [3.0, -2.0]])
    ref = C.run(prob, "sgd", starts, 5, seed=3, lr=0.01)
    user = C.run(prob, resolve(torch.optim.SGD, elementwise=True), starts, 5, seed=3, lr=0.01)
    np.testing.assert_allclose(user["final_value"], ref["final_value"], rtol=1e-12)
    other = C.run(prob, resolve(torch.optim.SGD, elementwise=True), starts, 5, seed=4, lr=0.01)
    assert not np.allclose(other["final_value"], ref["final_value"], rtol=1e-6)
