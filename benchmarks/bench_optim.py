"""Optimizer steps, activations: ours (numpy, numba, torch backend) next to torch's own.

Threads: 1 for torch and Numba (``pin_threads`` in every ``setup``), except where a benchmark
has a ``threads`` parameter: "1" and "all" (every core; Numba's parallel steps split a large
parameter across them).
"""

import numpy as np

from .common import all_threads, need, pin_threads

IMPLS = ["numba", "numpy", "torch-backend", "torch.optim-forloop", "torch.optim-foreach",
         "torch.optim-fused"]
HYPER = {"sgd": {"lr": 1e-3, "momentum": 0.9}, "adagrad": {}, "rmsprop": {}, "adam": {},
         "adamw": {}}
#: the many-small-tensors case: 300 tensors of mixed shapes (63,000 elements)
MANY = [(int(a), int(b)) for a, b in np.random.default_rng(0).integers(1, 64, (300, 2))]


def _step(name, impl, shapes, warm=True):
    """A zero-argument step of ``impl`` on float32 tensors of ``shapes``; with ``warm``, one step
    is taken first (state created, Numba compiled), else Numba is compiled on a tiny tensor and
    the first call creates the state."""
    optim = need("suite.optim", "get")
    if impl.startswith("torch.optim-"):
        import torch

        spec = optim.get_spec(name)
        kind = impl.split("-", 1)[1]
        if kind == "fused" and not spec.fused_on_cpu:
            raise NotImplementedError("no fused implementation in torch")
        params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape) * 1e-3
        opt = spec.torch_optimizer(params, kind, **HYPER[name])
        if warm:
            opt.step()
        return opt.step
    backend = "torch" if impl == "torch-backend" else impl
    rule = optim.get(name, backend=backend, **HYPER[name])
    if backend == "torch":
        import torch

        p = [torch.randn(s) for s in shapes]
        g = [torch.randn(s) * 1e-3 for s in shapes]
    elif len(shapes) > 1 and backend == "numba":  # one kernel over a flat buffer
        if not hasattr(optim, "flat_buffer"):
            raise NotImplementedError("suite.optim.flat_buffer not available at this commit")
        pf, _ = optim.flat_buffer(shapes)
        pf[:] = np.random.default_rng(0).standard_normal(pf.size)
        p, g = [pf], [(np.random.default_rng(1).standard_normal(pf.size) * 1e-3)
                      .astype(np.float32)]
    else:
        rng = np.random.default_rng(0)
        p = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        g = [(rng.standard_normal(s) * 1e-3).astype(np.float32) for s in shapes]
    st = rule.init(p)
    if warm:
        rule.step(p, g, st)
    elif backend == "numba":  # compile outside the measurement, on a tiny tensor
        tiny = [np.zeros(8, np.float32)]
        tst = rule.init(tiny)
        rule.step(tiny, [np.ones(8, np.float32)], tst)
    return lambda: rule.step(p, g, st)


class OptimizerStep:
    """One step on one 1e6-element tensor, and on 300 small tensors of mixed shapes."""

    params = (list(HYPER), ["1000000", "300 tensors"], IMPLS)
    param_names = ["optimizer", "size", "implementation"]
    # one round of 3-15 samples (asv's default is two rounds in separate processes): 60
    # combinations x 2 rounds took most of a commit's run time; medians moved < 5 % here
    rounds = 1
    repeat = (3, 15, 1.0)

    def setup(self, name, size, impl):
        pin_threads()
        self.fn = _step(name, impl, MANY if size == "300 tensors" else [(int(size),)])

    def time_step(self, name, size, impl):
        self.fn()


class OptimizerStepThreads:
    """One step on one 2**22-element float32 tensor (16 MiB per array, beyond the caches) at one
    thread and at every core, ours (Numba) next to torch.optim's foreach and fused steps."""

    params = (list(HYPER), ["1", "all"], ["numba", "torch.optim-foreach", "torch.optim-fused"])
    param_names = ["optimizer", "threads", "implementation"]
    rounds = 1
    repeat = (3, 15, 1.0)

    def setup(self, name, threads, impl):
        n = 1 if threads == "1" else all_threads()
        if threads == "all" and n == 1:
            raise NotImplementedError("one core only: 'all' would repeat '1'")
        pin_threads(n)
        self.fn = _step(name, impl, [(1 << 22,)])

    def time_step(self, name, threads, impl):
        self.fn()


class StepMemory:
    """Memory of a step on 2**23 float32 elements (32 MiB per array), large enough that a
    temporary the size of the parameter stands out of the interpreter's own ~300-430 MB.

    ``peakmem_setup`` is the baseline (parameter and gradient allocated, nothing stepped);
    ``peakmem_step`` adds three steps: the difference is the state the first step creates plus
    any temporaries. ``StepTemporaries`` measures the temporaries directly.
    """

    params = (list(HYPER), ["numba", "numpy", "torch.optim-foreach", "torch.optim-fused"])
    param_names = ["optimizer", "implementation"]
    size = 1 << 23
    timeout = 120

    def setup(self, name, impl):
        pin_threads()
        self.fn = _step(name, impl, [(self.size,)], warm=False)

    def peakmem_setup(self, name, impl):
        pass

    def peakmem_step(self, name, impl):
        for _ in range(3):
            self.fn()


class StepTemporaries:
    """Peak memory a step allocates beyond what exists before it, in units of the parameter's
    size (0 for a fused loop, 1 per full-size temporary), by ``suite.bench.peak_extra_bytes``."""

    params = StepMemory.params
    param_names = StepMemory.param_names
    size = StepMemory.size
    timeout = 120

    def setup(self, name, impl):
        pin_threads()
        self.bench = need("suite.bench", "peak_extra_bytes")  # skipped at older commits
        self.fn = _step(name, impl, [(self.size,)], warm=False)

    def track_temporaries(self, name, impl):
        return self.bench.peak_extra_bytes(self.fn) / (4 * self.size)

    track_temporaries.unit = "parameter sizes"


class Activations:
    """forward(x) then backward(x, dy) of our backends; ``numba-fused`` is forward_backward;
    ``torch`` is torch's function with autograd's backward (it reuses the saved output)."""

    params = (["sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "softplus", "gelu",
               "silu", "softmax", "log_softmax"],
              ["numpy", "numba", "numba-fused", "torch-backend", "torch"])
    param_names = ["activation", "backend"]
    rounds = 1
    repeat = (3, 15, 1.0)

    def setup(self, name, backend):
        pin_threads()
        acts = need("suite.activations", "get")
        try:
            acts.get(name)
        except (KeyError, ValueError) as exc:
            raise NotImplementedError(f"{name} not available at this commit") from exc
        x = np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)
        if backend == "torch":
            import torch

            tx = torch.from_numpy(x).requires_grad_(True)
            tdy = torch.from_numpy(x.copy())
            f = acts.get(name).torch_fn()

            def fn():
                tx.grad = None
                f(tx).backward(tdy)
        elif backend == "numba-fused":
            act = acts.get(name, backend="numba")
            if not hasattr(act, "forward_backward"):
                raise NotImplementedError("forward_backward not available at this commit")

            def fn():
                act.forward_backward(x, x)
        else:
            if backend == "torch-backend":
                import torch

                x = torch.from_numpy(x)
            act = acts.get(name, backend="torch" if backend == "torch-backend" else backend)

            def fn():
                act.forward(x)
                act.backward(x, x)
        fn()
        self.fn = fn

    def time_forward_backward(self, name, backend):
        self.fn()
