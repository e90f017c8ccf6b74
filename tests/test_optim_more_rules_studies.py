"""The seven newer rules in the convergence study and the roofline, like the first five."""

import numpy as np
import pytest

from suite import bench
from suite.studies import convergence

NEW_RULES = ("nadam", "radam", "adamax", "adadelta", "rprop", "asgd", "adafactor")
STARTS = np.array([[1.0, 2.0], [-3.0, 0.5], [0.2, -1.0]])


@pytest.mark.parametrize("name", NEW_RULES)
def test_convergence_runs_match_torch_optim(name):
    """Every backend's final iterates equal torch.optim's on the same starts (Adafactor: one
    parameter per start, since its statistics are per tensor)."""
    ref = convergence.torch_optim_trajectory("himmelblau", name, STARTS, 30, lr=0.01)[-1]
    assert np.abs(ref - STARTS).max() > 1e-3  # the starts moved
    for backend in ("numpy", "numba", "torch"):
        _, traj = convergence.run_full("himmelblau", name, STARTS, 30, backend=backend,
                                       lr=0.01, record_every=30)
        last = traj[traj.step == 30][["x0", "x1"]].to_numpy()
        np.testing.assert_allclose(last, ref, rtol=0, atol=1e-12)


def test_adafactor_batch_is_not_one_tensor():
    """Batched as one (n, d) matrix, Adafactor would factor across starts: the study must not."""
    import torch

    x = torch.nn.Parameter(torch.tensor(STARTS))
    opt = torch.optim.Adafactor([x], lr=0.01, foreach=False)
    from suite.problems import get as get_problem

    prob = get_problem("himmelblau")
    for _ in range(30):
        x.grad = prob.grad_fn(x.detach())
        opt.step()
    one_tensor = x.detach().numpy()
    ours = convergence.torch_optim_trajectory("himmelblau", "adafactor", STARTS, 30,
                                              lr=0.01)[-1]
    assert np.abs(one_tensor - ours).max() > 1e-3


@pytest.mark.parametrize("name", NEW_RULES)
def test_roofline_steps_and_bytes(name):
    """Each implementation's step runs, and the bytes count arrays, not 0-dim scalars."""
    fns = bench._step_fns(name, 1 << 10, "float32")
    assert {"numba", "numpy", "torch-backend", "torch.optim-forloop",
            "torch.optim-foreach"} <= set(fns)
    for fn in fns.values():
        fn()
    arrays = {"nadam": 2, "radam": 2, "adamax": 2, "adadelta": 2, "rprop": 2, "asgd": 1,
              "adafactor": 1}[name]
    assert bench.bytes_per_element(name, bench.BENCH_HYPER[name], 4) == (3 + 2 * arrays) * 4
