"""pytest-benchmark suite: `pytest --benchmark-only` measures; a plain `pytest` runs each body
once as a test (see conftest.py).

Every group holds one operation at one size: our three backends next to torch.optim's for-loop,
foreach and fused implementations (optimizers), or torch's own functions (activations, losses).
Threads are pinned to 1 for torch and Numba (the ``threads`` benchmarks: 1 and every core) and
recorded in extra_info with the size. Numba
functions are compiled and warmed before measuring.

Each body verifies before it times: the warm-up call's result is checked once against torch
(torch.optim's for-loop step, torch's function and autograd) or, for torch's own
implementations, against gradsuite's NumPy reference. A plain `pytest` therefore runs real
tests; a benchmark of a wrong result fails instead of being timed.
"""

import numpy as np
import pytest
import torch

from suite import activations, losses, optim
from suite.sweep import set_threads, thread_counts

# a body whose check fails never reaches benchmark(): the failure is the report, not the
# plugin's "fixture was not used" warning
pytestmark = pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")

SIZES = [1_000, 100_000, 1_000_000]
MANY = [(int(a), int(b)) for a, b in np.random.default_rng(0).integers(1, 64, (300, 2))]
HYPER = {"sgd": {"lr": 1e-3, "momentum": 0.9}, "adagrad": {}, "rmsprop": {},
         "adam": {}, "adamw": {}}
IMPLS = ["numba", "numpy", "torch-backend", "torch.optim-forloop", "torch.optim-foreach",
         "torch.optim-fused"]


@pytest.fixture(autouse=True)
def _threads():
    return set_threads(1)


def _pin_threads(threads):
    """Set torch's and Numba's threads to "1" or "all" (every core Numba may use), checked;
    skip "all" where it would repeat "1". Returns the counts torch and Numba report."""
    from suite.bench import sweep_threads

    n = 1 if threads == "1" else sweep_threads()[-1]
    if threads == "all" and n == 1:
        pytest.skip("Numba may use one thread here (NUMBA_NUM_THREADS=1 or one core): "
                    "'all' would repeat '1'")
    got = set_threads(n)
    assert got == {"torch_threads": n, "numba_threads": n}
    return got


def _np64(a):
    return (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)).astype(
        np.float64)


def _check_step(name, before, grads, after, reference):
    """One step from float32 ``before`` with ``grads`` gave ``after``; ``reference`` is
    "torch" (torch.optim's for-loop step) or "numpy" (gradsuite's reference in float64).
    Agreement within a few float32 ulps of the larger of the parameter and its update (torch
    rounds every intermediate to float32), and the step moved them."""
    if reference == "torch":
        tp = [torch.nn.Parameter(torch.from_numpy(b.astype(np.float32))) for b in before]
        for p, g in zip(tp, grads, strict=True):
            p.grad = torch.from_numpy(g.astype(np.float32))
        optim.get_spec(name).torch_optimizer(tp, "forloop", **HYPER[name]).step()
        ref = [_np64(p) for p in tp]
    else:
        rule = optim.get(name, backend="numpy", **HYPER[name])
        ref = [b.astype(np.float64) for b in before]
        rule.step(ref, [g.astype(np.float64) for g in grads], rule.init(ref))
    for b, a, r in zip(before, after, ref, strict=True):
        scale = np.maximum(np.maximum(np.abs(r), np.abs(b)), np.abs(r - b))
        ulps = np.spacing(scale.astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(a - r) <= 8 * ulps), f"{name}: first step differs from {reference}"
        assert np.any(a != b), f"{name}: the step did not move the parameters"


def _ours(name, backend, shapes, flat):
    rng = np.random.default_rng(0)
    rule = optim.get(name, backend=backend, **HYPER[name])
    if backend == "torch":
        params = [torch.randn(s) for s in shapes]
        grads = [torch.randn(s) * 1e-3 for s in shapes]
    elif flat:  # the many-small-tensors case: one kernel over a flat buffer
        pf, _ = optim.flat_buffer(shapes)
        pf[:] = rng.standard_normal(pf.size)
        gf = (rng.standard_normal(pf.size) * 1e-3).astype(np.float32)
        params, grads = [pf], [gf]
    else:
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        grads = [(rng.standard_normal(s) * 1e-3).astype(np.float32) for s in shapes]
    state = rule.init(params)
    before = [_np64(p) for p in params]
    rule.step(params, grads, state)  # compiles (numba) and creates lazy state
    _check_step(name, before, [_np64(g) for g in grads], [_np64(p) for p in params], "torch")
    return lambda: rule.step(params, grads, state)


def _torch(name, impl, shapes):
    spec = optim.get_spec(name)
    if impl == "fused" and not spec.fused_on_cpu:
        pytest.skip(f"torch.optim.{spec.torch_name} has no fused implementation")
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape) * 1e-3
    opt = spec.torch_optimizer(params, impl, **HYPER[name])
    before = [_np64(p) for p in params]
    opt.step()
    _check_step(name, before, [_np64(p.grad) for p in params], [_np64(p) for p in params],
                "numpy")
    return opt.step


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", [*SIZES, "many"])
@pytest.mark.parametrize("name", list(HYPER))
def test_optimizer_step(benchmark, name, size, impl):
    shapes = MANY if size == "many" else [(size,)]
    if impl.startswith("torch.optim-"):
        fn = _torch(name, impl.split("-", 1)[1], shapes)
    else:
        backend = {"torch-backend": "torch"}.get(impl, impl)
        fn = _ours(name, backend, shapes, flat=size == "many" and backend == "numba")
    benchmark.group = f"step {name} size={size}"
    benchmark.extra_info.update({"impl": impl, "size": size, "tensors": len(shapes),
                                 "elements": int(sum(np.prod(s) for s in shapes)),
                                 **thread_counts(),
                                 "flat_buffer": size == "many" and impl == "numba",
                                 "dtype": "float32"})
    benchmark(fn)


@pytest.mark.parametrize("impl", ["numba", "torch.optim-foreach", "torch.optim-fused"])
@pytest.mark.parametrize("threads", ["1", "all"])
@pytest.mark.parametrize("name", list(HYPER))
def test_optimizer_step_threads(benchmark, name, threads, impl):
    """One step on 2**22 float32 elements (beyond the caches) at one thread and at every core
    Numba may use (run with NUMBA_NUM_THREADS unset or = the cores to measure "all")."""
    got = _pin_threads(threads)
    n = got["numba_threads"]
    shapes = [(1 << 22,)]
    if impl.startswith("torch.optim-"):
        fn = _torch(name, impl.split("-", 1)[1], shapes)
    else:
        fn = _ours(name, "numba", shapes, flat=False)
    benchmark.group = f"step {name} size={1 << 22} threads={threads}"
    benchmark.extra_info.update({"impl": impl, "size": 1 << 22, "threads": n, **got,
                                 "dtype": "float32"})
    benchmark(fn)


def _check_activation(name, impl, x, dy):
    """The benchmarked call's (y, dx) against torch autograd in float64 (against the NumPy
    formulas for torch's own implementation), within float32 accuracy."""
    if impl == "torch":
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = activations.get(name).torch_fn()(tx)
        ty.backward(torch.from_numpy(dy))
        y, dx = ty.detach().numpy(), tx.grad.numpy()
        ref = activations.get(name)
        ry, rdx = ref.forward(x.astype(np.float64)), ref.backward(x.astype(np.float64),
                                                                  dy.astype(np.float64))
    else:
        backend = {"torch-backend": "torch", "numba-fused": "numba"}.get(impl, impl)
        act = activations.get(name, backend=backend)
        ax, ady = (torch.from_numpy(x), torch.from_numpy(dy)) if backend == "torch" else (x, dy)
        y, dx = (act.forward_backward(ax, ady) if impl == "numba-fused"
                 else (act.forward(ax), act.backward(ax, ady)))
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        ty = act.torch_fn()(tx)
        ty.backward(torch.from_numpy(dy.astype(np.float64)))
        ry, rdx = ty.detach().numpy(), tx.grad.numpy()
    for got, ref in ((y, ry), (dx, rdx)):
        np.testing.assert_allclose(_np64(got), ref, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} {impl}")


@pytest.mark.parametrize("impl", ["numpy", "numba", "numba-fused", "torch-backend", "torch"])
@pytest.mark.parametrize("name", activations.NAMES)
def test_activation_forward_backward(benchmark, name, impl):
    """forward(x) then backward(x, dy) per backend; ``numba-fused`` is forward_backward(x, dy)
    (one pass); ``torch`` is torch's function plus autograd's backward (which reuses the
    saved output)."""
    n = 1_000_000
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dy = np.ones(n, dtype=np.float32)
    if name in ("softmax", "log_softmax"):
        x, dy = x.reshape(1000, 1000), dy.reshape(1000, 1000)
    if impl == "torch":
        tx = torch.from_numpy(x).requires_grad_(True)
        tdy = torch.from_numpy(dy)
        fn_t = activations.get(name).torch_fn()

        def fn():
            tx.grad = None
            fn_t(tx).backward(tdy)
    elif impl == "numba-fused":
        act = activations.get(name, backend="numba")

        def fn():
            act.forward_backward(x, dy)
    else:
        backend = {"torch-backend": "torch"}.get(impl, impl)
        act = activations.get(name, backend=backend)
        ax, ady = (torch.from_numpy(x), torch.from_numpy(dy)) if backend == "torch" else (x, dy)

        def fn():
            act.forward(ax)
            act.backward(ax, ady)
    fn()
    _check_activation(name, impl, x, dy)
    benchmark.group = f"activation {name} forward+backward n={n}"
    benchmark.extra_info.update({"impl": impl, "size": n, **thread_counts()})
    benchmark(fn)


def _check_loss(name, impl, x, t):
    """The benchmarked value and gradient against torch (float64 autograd), or torch's own
    against the NumPy formulas, within float32 accuracy."""
    tt = torch.from_numpy(t if t.dtype.kind == "i" else t.astype(np.float64))
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    loss64 = losses.get(name)
    if impl == "torch":
        tx32 = torch.from_numpy(x).requires_grad_(True)
        v = loss64.torch_value(tx32, torch.from_numpy(t), "mean")
        v.backward()
        got = (v.detach().numpy(), tx32.grad.numpy())
        ref = (loss64.value(x.astype(np.float64), tt.numpy()),
               loss64.grad(x.astype(np.float64), tt.numpy()))
    else:
        backend = {"torch-backend": "torch"}.get(impl, impl)
        loss = losses.get(name, backend=backend)
        ax, at = (torch.from_numpy(x), torch.from_numpy(t)) if backend == "torch" else (x, t)
        got = (loss.value(ax, at), loss.grad(ax, at))
        rv = loss64.torch_value(tx, tt, "mean")
        rv.backward()
        ref = (rv.detach().numpy(), tx.grad.numpy())
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(_np64(g), r, rtol=1e-5, atol=1e-12 + 1e-5 * np.abs(r).max(),
                                   err_msg=f"{name} {impl}")


@pytest.mark.parametrize("impl", ["numpy", "numba", "torch-backend", "torch"])
@pytest.mark.parametrize("name", ["mse", "cross_entropy", "binary_cross_entropy_with_logits"])
def test_loss_value_and_grad(benchmark, name, impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10_000, 100)).astype(np.float32)
    t = (rng.integers(0, 100, 10_000) if name == "cross_entropy"
         else rng.uniform(0, 1, x.shape).astype(np.float32))
    if impl == "torch":
        tx = torch.from_numpy(x).requires_grad_(True)
        tt = torch.from_numpy(t)
        loss = losses.get(name)

        def fn():
            tx.grad = None
            loss.torch_value(tx, tt, "mean").backward()
    else:
        backend = {"torch-backend": "torch"}.get(impl, impl)
        loss = losses.get(name, backend=backend)
        ax, at = (torch.from_numpy(x), torch.from_numpy(t)) if backend == "torch" else (x, t)

        def fn():
            loss.value(ax, at)
            loss.grad(ax, at)
    fn()
    _check_loss(name, impl, x, t)
    benchmark.group = f"loss {name} value+grad 10000x100"
    benchmark.extra_info.update({"size": x.size, **thread_counts()})
    benchmark(fn)


@pytest.mark.parametrize("impl", ["numba", "numpy", "torch-backend", "torch.optim"])
def test_convergence_point_steps(benchmark, impl):
    """Batched runner throughput on Himmelblau (point-steps per second = extra_info
    point_steps / time), next to torch.optim doing the same work on an (N, 2) parameter."""
    from suite import problems
    from suite.studies import convergence as C

    p = problems.get("himmelblau")
    g = C.grid_starts(p, 100)
    steps = 200
    if impl == "torch.optim":
        def fn():
            return C.torch_optim_trajectory(p, "adam", g, steps, lr=0.01)
    else:
        backend = {"torch-backend": "torch"}.get(impl, impl)

        def fn():
            return C.run(p, "adam", g, steps, backend=backend, lr=0.01)
    C.run(p, "adam", g[:10], 10, backend="numba", lr=0.01)  # compile outside the timing
    # verify once: final values equal torch.optim's (ours) or the NumPy reference's (torch's)
    out = fn()
    if impl == "torch.optim":
        got = p.f(out[-1])
        want = C.run(p, "adam", g, steps, backend="numpy", lr=0.01)["final_value"].to_numpy()
    else:
        got = out["final_value"].to_numpy()
        want = p.f(C.torch_optim_trajectory(p, "adam", g, steps, lr=0.01)[-1])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    benchmark.group = f"convergence himmelblau adam {len(g)} starts x {steps} steps"
    benchmark.extra_info.update({"point_steps": len(g) * steps,
                                 **thread_counts()})
    benchmark(fn)


@pytest.mark.parametrize("impl", ["numba", "numba-per-start", "torch-batched"])
@pytest.mark.parametrize("threads", ["1", "all"])
def test_convergence_basin_map_threads(benchmark, impl, threads):
    """A Himmelblau basin map (Adam, 100 x 100 starts, 200 steps) at one thread and at every
    core Numba may use: the vectorised runner (blocks of starts in SIMD lanes), the per-start
    runner it replaced, and torch.optim.Adam on one (N, 2) parameter; the same thread count
    for Numba and torch (``python -m suite.studies.convergence_speed`` for the full size)."""
    import pandas as pd

    from suite.studies import convergence_speed as S

    got = _pin_threads(threads)
    n = got["numba_threads"]
    fn = S.basin_map_call(impl, grid=100, steps=200)
    out = fn()  # compiles (numba); verified once before timing
    if impl == "torch-batched":
        want = S.basin_map_call("numba", grid=100, steps=200)()
        np.testing.assert_allclose(out["final_value"], want["final_value"], rtol=1e-9,
                                   atol=1e-12)
    else:
        other = S.basin_map_call("numba-per-start" if impl == "numba" else "numba", grid=100,
                                 steps=200)()
        pd.testing.assert_frame_equal(out, other, check_exact=True)
    benchmark.group = ("convergence basin map himmelblau adam 10000 starts x 200 steps "
                       f"threads={threads}")
    benchmark.extra_info.update({"point_steps": 10000 * 200, "threads": n, **got})
    benchmark(fn)


def test_set_threads_holds_after_numba_starts_its_pool():
    """Numba's OpenMP layer resets the runtime's thread count (shared with torch) when it
    starts; set_threads must leave both at the requested count afterwards. Run in a fresh
    interpreter with Numba's default pool size, where the fault showed (torch at 2)."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, numba, torch\n"
            "from suite.sweep import set_threads, thread_counts\n"
            "got = set_threads(1)\n"
            "@numba.njit(parallel=True)\n"
            "def f(a):\n"
            "    for i in numba.prange(a.size):\n"
            "        a[i] += 1\n"
            "f(np.ones(64))\n"
            "print(got['torch_threads'], torch.get_num_threads(), numba.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["1", "1", "1"], out
