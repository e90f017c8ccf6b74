"""Behaviour tracked across commits like speed (scipy's benchmarks/optimize.py style):
setup runs the study once, track_* returns the number."""

import numpy as np

from .common import all_threads, need, pin_threads

STARTS = [(0, 0), (-4, 0), (4, 0), (0, 4), (2, 2), (-1, -1)]
LR = {"sgd": 1e-3, "adagrad": 0.1, "rmsprop": 1e-2, "adam": 1e-2, "adamw": 1e-2}


class Himmelblau:
    params = list(LR)
    param_names = ["optimizer"]
    timeout = 120

    def setup(self, name):
        pin_threads()
        conv = need("suite.studies.convergence", "run")
        self.df = conv.run("himmelblau", name, np.array(STARTS, float), 5000,
                           backend="numpy", lr=LR[name])

    def track_median_steps_to_1e_8(self, name):
        return float(self.df["steps_to_target_1e-08"].median())

    track_median_steps_to_1e_8.unit = "steps"

    def track_starts_reaching_minimum_A(self, name):
        return int((self.df["minimizer_index"] == 0).sum())

    track_starts_reaching_minimum_A.unit = "starts"


class ConvergenceBasinMap:
    """Speed of a Himmelblau basin map (Adam, lr 0.01, 100 x 100 starts, 200 steps) at one
    thread and at every core: the Numba runner (``convergence.run``), the per-start runner the
    vectorised one replaced, and torch.optim.Adam on one (N, 2) parameter, Numba and torch pinned
    to the same count. Setup checks the result once against the NumPy reference."""

    params = (["1", "all"], ["numba", "numba-per-start", "torch-batched"])
    param_names = ["threads", "implementation"]
    timeout = 300
    rounds = 1
    repeat = (2, 5, 60.0)

    def setup(self, threads, impl):
        n = 1 if threads == "1" else all_threads()
        if threads == "all" and n == 1:
            raise NotImplementedError("one core only: 'all' would repeat '1'")
        pin_threads(n)
        conv = need("suite.studies.convergence", "grid_starts")
        from suite import problems

        p = problems.get("himmelblau")
        g = conv.grid_starts(p, 100)
        if impl == "numba":
            def fn():
                return conv.run(p, "adam", g, 200, backend="numba", lr=0.01)
        elif impl == "numba-per-start":
            speed = need("suite.studies.convergence_speed", "basin_map_call")
            fn = speed.basin_map_call(impl, grid=100, steps=200)
        else:
            import torch

            def fn():
                return conv.run(p, torch.optim.Adam, g, 200, lr=0.01)
        got = fn()["final_value"].to_numpy()  # compiles (numba); checked once
        want = conv.run(p, "adam", g, 200, backend="numpy", lr=0.01)["final_value"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        self.fn = fn

    def time_basin_map(self, threads, impl):
        self.fn()


class GradientStatistics:
    params = (["sigmoid", "tanh", "relu", "selu"], ["xavier_normal", "he_normal",
                                                    "lecun_normal"])
    param_names = ["activation", "init"]

    def setup(self, act, init):
        pin_threads()
        gs = need("suite.studies.gradstats", "summary")
        self.s = gs.summary(gs.run(act, init, 20, 64, 32, seed=0, backend="numpy"))

    def track_R_z(self, act, init):
        return float(self.s["R_z"].iloc[0])

    track_R_z.unit = "decades"
