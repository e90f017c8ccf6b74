"""pytest-benchmark suite: `pytest --benchmark-only` measures; a plain `pytest` runs each body
once as a test (see conftest.py).

Every group holds one operation at one size: our three backends next to torch.optim's for-loop,
foreach and fused implementations (optimizers), or torch's own functions (activations, losses).
Threads are pinned to 1 for torch and Numba (the ``threads`` benchmarks: 1 and every core) and
recorded in extra_info with the size. Numba
functions are compiled and warmed before measuring.
"""

import numpy as np
import pytest
import torch

from suite import activations, losses, optim
from suite.sweep import set_threads, thread_counts

SIZES = [1_000, 100_000, 1_000_000]
MANY = [(int(a), int(b)) for a, b in np.random.default_rng(0).integers(1, 64, (300, 2))]
HYPER = {"sgd": {"lr": 1e-3, "momentum": 0.9}, "adagrad": {}, "rmsprop": {},
         "adam": {}, "adamw": {}}
IMPLS = ["numba", "numpy", "torch-backend", "torch.optim-forloop", "torch.optim-foreach",
         "torch.optim-fused"]


@pytest.fixture(autouse=True)
def _threads():
    return set_threads(1)


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
    rule.step(params, grads, state)  # compiles (numba) and creates lazy state
    return lambda: rule.step(params, grads, state)


def _torch(name, impl, shapes):
    spec = optim.get_spec(name)
    if impl == "fused" and not spec.fused_on_cpu:
        pytest.skip(f"torch.optim.{spec.torch_name} has no fused implementation")
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape) * 1e-3
    opt = spec.torch_optimizer(params, impl, **HYPER[name])
    opt.step()
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
    from suite.bench import sweep_threads

    n = 1 if threads == "1" else sweep_threads()[-1]
    if threads == "all" and n == 1:
        pytest.skip("Numba may use one thread here (NUMBA_NUM_THREADS=1 or one core): "
                    "'all' would repeat '1'")
    got = set_threads(n)
    assert got == {"torch_threads": n, "numba_threads": n}
    shapes = [(1 << 22,)]
    if impl.startswith("torch.optim-"):
        fn = _torch(name, impl.split("-", 1)[1], shapes)
    else:
        fn = _ours(name, "numba", shapes, flat=False)
    benchmark.group = f"step {name} size={1 << 22} threads={threads}"
    benchmark.extra_info.update({"impl": impl, "size": 1 << 22, "threads": n, **got,
                                 "dtype": "float32"})
    benchmark(fn)


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
    benchmark.group = f"activation {name} forward+backward n={n}"
    benchmark.extra_info.update({"impl": impl, "size": n, **thread_counts()})
    benchmark(fn)


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
    benchmark.group = f"convergence himmelblau adam {len(g)} starts x {steps} steps"
    benchmark.extra_info.update({"point_steps": len(g) * steps,
                                 **thread_counts()})
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
