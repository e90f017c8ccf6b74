"""Optimizer steps: ours (numpy, numba, torch backend) and torch.optim's implementations."""

import numpy as np

from .common import need, pin_threads

IMPLS = ["numba", "numpy", "torch-backend", "torch-forloop", "torch-foreach", "torch-fused"]
HYPER = {"sgd": {"lr": 1e-3, "momentum": 0.9}, "adagrad": {}, "rmsprop": {}, "adam": {},
         "adamw": {}}


class OptimizerStep:
    params = (list(HYPER), [10_000, 1_000_000], IMPLS)
    param_names = ["optimizer", "size", "implementation"]

    def setup(self, name, size, impl):
        pin_threads()
        optim = need("suite.optim", "get")
        if impl.startswith("torch-") and impl != "torch-backend":
            import torch

            spec = optim.get_spec(name)
            kind = impl.split("-", 1)[1]
            if kind == "fused" and not spec.fused_on_cpu:
                raise NotImplementedError("no fused implementation in torch")
            p = torch.nn.Parameter(torch.randn(size))
            p.grad = torch.randn(size) * 1e-3
            self.opt = spec.torch_optimizer([p], kind, **HYPER[name])
            self.fn = self.opt.step
        else:
            backend = "torch" if impl == "torch-backend" else impl
            rule = optim.get(name, backend=backend, **HYPER[name])
            if backend == "torch":
                import torch

                p, g = [torch.randn(size)], [torch.randn(size) * 1e-3]
            else:
                rng = np.random.default_rng(0)
                p = [rng.standard_normal(size).astype(np.float32)]
                g = [(rng.standard_normal(size) * 1e-3).astype(np.float32)]
            st = rule.init(p)
            rule.step(p, g, st)  # compile and create state outside the timing
            self.fn = lambda: rule.step(p, g, st)
        self.fn()

    def time_step(self, name, size, impl):
        self.fn()

    def peakmem_step(self, name, size, impl):
        for _ in range(3):
            self.fn()


class Activations:
    params = (["sigmoid", "tanh", "relu", "gelu", "softmax"], ["numpy", "numba", "torch"])
    param_names = ["activation", "backend"]

    def setup(self, name, backend):
        pin_threads()
        acts = need("suite.activations", "get")
        x = np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)
        if backend == "torch":
            import torch

            x = torch.from_numpy(x)
        self.act, self.x = acts.get(name, backend=backend), x
        self.act.backward(x, x)

    def time_forward_backward(self, name, backend):
        self.act.forward(self.x)
        self.act.backward(self.x, self.x)
