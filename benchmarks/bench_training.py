"""Training behaviour tracked across commits: steps to digits_mlp's target training loss.

Each reference optimizer at a fixed learning rate (chosen once with the tuning protocol of
``gradsuite run --parts training``; fixed here so that a change in the rule, the task or the
study shows up as a change in the number, not as a different choice).
"""

from .common import need, pin_threads

#: lr per reference optimizer on digits_mlp (the protocol's choice at the time of writing)
LR = {"sgd": 1.0, "adagrad": 0.316, "rmsprop": 0.0316, "adam": 0.0316, "adamw": 0.0316}


class TrainingDigitsMLP:
    params = list(LR)
    param_names = ["optimizer"]
    timeout = 300

    def setup(self, name):
        pin_threads()
        need("suite.tasks", "get")
        training = need("suite.studies.training", "summarize")
        curves = training.run("digits_mlp", name, seeds=(0, 1, 2), lr=LR[name])
        self.runs = training.summarize(curves)

    def track_median_steps_to_target(self, name):
        return float(self.runs["steps_to_target"].fillna(float("inf")).median())

    track_median_steps_to_target.unit = "steps"

    def track_median_final_test_accuracy(self, name):
        return float(self.runs["final_test_accuracy"].median())

    track_median_final_test_accuracy.unit = "fraction"
