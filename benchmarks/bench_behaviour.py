"""Behaviour tracked across commits like speed (scipy's benchmarks/optimize.py style):
setup runs the study once, track_* returns the number."""

import numpy as np

from .common import need, pin_threads

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
