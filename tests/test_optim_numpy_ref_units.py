"""numpy_ref's helpers, and corners of the newer rules that PyTorch's own configurations do not
reach (a rectification threshold hit exactly, ASGD's average before t0, Adafactor's relative
step cap and parameters of more than two dimensions), each against torch itself."""

import numpy as np
import pytest
import torch
from torch.optim.optimizer import _get_scalar_dtype

from suite import optim
from suite.optim import numpy_ref as R


def _torch_np_dtype() -> type:
    return {torch.float32: np.float32, torch.float64: np.float64}[_get_scalar_dtype()]


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("w", [0.125, 0.25, -0.25, 0.5, 0.75, 0.875, 1.5, 2.0])
def test_lerp_is_torch_lerp_bit_for_bit(w, dtype):
    """torch.lerp switches formulas at |w| = 0.5 (a + w(b - a) below, b - (b - a)(1 - w) from
    there on); the two round differently, so the switch must sit exactly where torch's does.
    The weights make the formula's product exact (w, or 1 - w, a power of two): torch's CPU
    kernel fuses the multiply-add, which rounds otherwise-equal formulas differently by up to
    an ulp, so only such weights can be held to bit equality."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(4000) * 10.0 ** rng.uniform(-3, 3, 4000)).astype(dtype)
    b = (rng.standard_normal(4000) * 10.0 ** rng.uniform(-3, 3, 4000)).astype(dtype)
    want = torch.lerp(torch.from_numpy(a), torch.from_numpy(b), w).numpy()
    np.testing.assert_array_equal(R.lerp(a, b, w), want)


def test_scalar_dtype_is_torchs_by_default():
    assert R.scalar_dtype() is np.float32
    assert R.scalar_dtype() is _torch_np_dtype()
    # a NumPy float for the value (an lr from a NumPy sweep) still gives torch's dtype, as
    # torch.optim.ASGD's `torch.as_tensor(lr, dtype=_get_scalar_dtype())` does
    t = R.scalar(torch.zeros(3, dtype=torch.float64), np.float64(0.1))
    assert t.dtype == torch.float32
    n = R.scalar(np.zeros(3), np.float64(0.1))
    assert n.dtype == np.float32
    assert n.shape == ()


def test_scalar_dtype_follows_torchs_default_dtype(float64_default):
    assert R.scalar_dtype() is np.float64
    assert R.scalar_dtype() is _torch_np_dtype()
    assert R.scalar(torch.zeros(3, dtype=torch.float32), 0.5).dtype == torch.float64
    assert R.scalar(np.zeros(3, dtype=np.float32), 0.5).dtype == np.float64
    p = torch.zeros(3, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.ASGD([p], lr=0.05)
    p.grad = torch.ones(3, dtype=torch.float32)
    opt.step()
    assert opt.state[p]["eta"].dtype == R.init_state("asgd", p.detach(), {"lr": 0.05})[
        "eta"].dtype


def test_sign_is_torch_sign_nan_included():
    x = np.array([np.nan, -2.0, -0.0, 0.0, 3.0, -np.inf, np.inf, 1e-320])
    got = R.sign(x)
    np.testing.assert_array_equal(got, torch.sign(torch.from_numpy(x)).numpy())
    np.testing.assert_array_equal(got, [0.0, -1.0, 0.0, 0.0, 1.0, -1.0, 1.0, 1.0])


def test_init_state_names_and_kinds():
    p = np.zeros((2, 3))
    assert R.init_state("sgd", p, {}) == {}
    st = R.init_state("nadam", p, {})
    assert isinstance(st["mu_product"], np.ndarray)
    assert st["mu_product"].dtype == np.float32
    assert st["mu_product"].shape == ()
    assert st["mu_product"] == 1.0
    with pytest.raises(ValueError, match=r"^unknown optimizer 'nope'$"):
        R.init_state("nope", p, {})


def _against_torch(name, hyper, shapes, steps, seed=0, wide=False):
    """Our numpy rule and torch.optim's for-loop implementation on the same gradients
    (``wide``: gradients spread over six decades)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    rule = optim.get(name, backend="numpy", **hyper)
    ours = [a.copy() for a in init]
    state = rule.init(ours)
    ref = [torch.tensor(a, requires_grad=True) for a in init]
    opt = rule.torch_optimizer(ref)
    for _ in range(steps):
        grads = [rng.standard_normal(s) * (10.0 ** rng.uniform(-3, 3, s) if wide else 1.0)
                 for s in shapes]
        rule.step(ours, grads, state)
        for p, g in zip(ref, grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    return ours, state, ref, opt


def test_radam_rectification_threshold_hit_exactly():
    """With this beta2, rho_t at step 6 is exactly 5.0 in float64: torch does not rectify
    (rho_t > 5 is false) and neither may we; one step of the other branch moves p by far
    more than round-off."""
    beta2 = 0.8397685748659791
    step = 6.0
    rho_inf = 2 / (1 - beta2) - 1
    assert rho_inf - 2 * step * beta2**step / (1 - beta2**step) == 5.0
    ours, _, ref, _ = _against_torch("radam", {"lr": 0.1, "betas": (0.9, beta2)}, [(20,)], 6)
    np.testing.assert_allclose(ours[0], ref[0].detach().numpy(), rtol=1e-13, atol=0)


def test_asgd_average_before_t0_is_a_copy_bit_for_bit():
    """Before t0 mu is 1, and torch copies the parameter into ax (ax + (p - ax) * 1 rounds
    differently once the parameter moves by much more than itself): ax equals the parameter
    bit for bit, in torch and in ours."""
    ours, state, ref, opt = _against_torch("asgd", {"lr": 0.05, "lambd": 1e-3}, [(200,)], 5,
                                           wide=True)
    np.testing.assert_array_equal(opt.state[ref[0]]["ax"].numpy(), ref[0].detach().numpy())
    np.testing.assert_array_equal(state[0]["ax"], ours[0])
    np.testing.assert_allclose(ours[0], ref[0].detach().numpy(), rtol=1e-12, atol=0)


def test_adafactor_relative_step_cap():
    """rho_t = min(lr, 1/sqrt(t)): with lr = 1 the cap is 1/sqrt(t) from step 2 on."""
    ours, _, ref, _ = _against_torch("adafactor", {"lr": 1.0}, [(4, 5), (6,)], 12)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-12, atol=0)


def test_adafactor_on_a_parameter_of_three_dimensions():
    """Row and column statistics over the last two axes, per leading index."""
    ours, state, ref, opt = _against_torch("adafactor", {"lr": 0.05}, [(3, 4, 5)], 6)
    np.testing.assert_allclose(ours[0], ref[0].detach().numpy(), rtol=1e-12, atol=0)
    for key in ("row_var", "col_var"):
        np.testing.assert_allclose(state[0][key], opt.state[ref[0]][key].numpy(),
                                   rtol=1e-12, atol=0)
