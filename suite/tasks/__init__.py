"""Training tasks on real data: small enough to train in seconds on one CPU core.

A :class:`Task` is everything a training run needs except the optimizer:

- **data**: a fixed train/test split (the split's seed is part of the task, so every run of
  every optimizer sees the same split), standardised where the task says so (the scaler is fit
  on the training part only);
- **a model builder** ``task.model(seed)``: the same seed gives the same initial weights;
- **a loss** (the mean over a batch) and **metrics** (loss, and accuracy for classification);
- **a default budget**: ``steps`` optimizer steps of ``batch_size`` examples;
- **a target**: a training-loss value (``target_loss``; time to reach it is the score) and,
  for classification, a test accuracy (``target_accuracy``) reported second.

Data come only from what ships inside installed packages: scikit-learn's bundled
``load_digits`` (1797 8x8 images of 10 digits) and ``load_breast_cancer`` (569 x 30), and
seeded synthetic draws; nothing is downloaded. The tasks (see each one's ``description``):

=====================  ========================================================================
digits_logreg          multinomial logistic regression on standardised digits (convex)
digits_mlp             64-100-10 tanh MLP (the network of :mod:`suite.mlp`, in torch)
digits_cnn             two 3x3 conv layers and a linear layer on the 8x8 images
breast_cancer_logreg   logistic regression on the *raw* features (ill-conditioned on purpose)
noisy_quadratic        DeepOBS's quadratic_deep: 100-D, Hessian eigenvalues 90 in (0, 1) and
                       10 in (30, 60), random rotation, noise from sampled data points
deep_linear            a 6-layer linear network on standardised digits (linear as a function,
                       non-convex as a landscape: depth alone makes it hard)
=====================  ========================================================================

>>> from suite import tasks
>>> t = tasks.get("digits_mlp")
>>> d = t.data()                  # TaskData: x_train, y_train, x_test, y_test (torch tensors)
>>> model = t.model(seed=0)       # torch.nn.Module, seeded
>>> t.loss(model(d.x_train), d.y_train)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("classification", "binary", "regression")


@dataclass(frozen=True)
class TaskData:
    """One task's split as tensors (features in the task's dtype; labels int64 or float)."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


@dataclass(frozen=True)
class Task:
    """A training task (see the module docstring).

    ``load() -> (x_train, y_train, x_test, y_test)`` returns NumPy arrays (already split and
    standardised); ``build(x_train) -> torch.nn.Module`` builds the model under a seeded RNG;
    ``loss_fn(output, y) -> scalar tensor`` is the mean loss over a batch.
    """

    name: str
    description: str
    kind: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    build: Callable[[], Any]
    loss_fn: Callable[[Any, Any], Any]
    steps: int
    batch_size: int
    target_loss: float
    target_accuracy: float | None = None
    record_every: int = 10
    standardized: bool = False
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind={self.kind!r}; expected one of "
                             f"{', '.join(KINDS)}")
        for what in ("steps", "batch_size", "record_every"):
            v = getattr(self, what)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"task {self.name!r}: {what}={v!r}; expected a positive int")

    @property
    def has_accuracy(self) -> bool:
        return self.kind in ("classification", "binary")

    def data(self, dtype: Any = None) -> TaskData:
        """The split as torch tensors (float32 features unless ``dtype``)."""
        return _tensors(self, str(dtype) if dtype is not None else "torch.float32")

    def model(self, seed: int = 0, dtype: Any = None) -> Any:
        """The model with the initial weights of ``seed`` (the global RNG is left alone)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.build()
        return net.to(dtype or torch.float32)

    def loss(self, output: Any, y: Any) -> Any:
        return self.loss_fn(output, y)

    def accuracy(self, output: Any, y: Any) -> float:
        """Share of correct predictions (NaN for regression tasks)."""
        if self.kind == "classification":
            return float((output.argmax(dim=1) == y).double().mean())
        if self.kind == "binary":
            return float(((output.reshape(-1) > 0) == (y.reshape(-1) > 0.5)).double().mean())
        return float("nan")

    def describe(self) -> dict[str, Any]:
        """Columns for a tidy frame (one row per task)."""
        d = self.data()
        return {"task": self.name, "kind": self.kind, "n_train": d.n_train,
                "n_test": int(d.x_test.shape[0]), "n_features": int(np.prod(d.x_train.shape[1:])),
                "n_parameters": sum(p.numel() for p in self.model(0).parameters()),
                "steps": self.steps, "batch_size": self.batch_size,
                "epochs": self.steps * self.batch_size / d.n_train,
                "target_loss": self.target_loss,
                "target_accuracy": self.target_accuracy if self.target_accuracy is not None
                else float("nan"),
                "standardized": self.standardized, "description": self.description}


@functools.cache
def _tensors(task: Task, dtype: str) -> TaskData:
    import torch

    dt = getattr(torch, dtype.removeprefix("torch."))
    xtr, ytr, xte, yte = task.load()

    def y(a: np.ndarray) -> Any:
        if task.kind == "classification":
            return torch.as_tensor(a, dtype=torch.int64)
        return torch.as_tensor(a, dtype=dt)

    return TaskData(torch.as_tensor(xtr, dtype=dt).contiguous(), y(ytr),
                    torch.as_tensor(xte, dtype=dt).contiguous(), y(yte))


from suite.tasks.catalog import TASKS  # (at the end: the catalogue needs Task)


def get(name: str | Task) -> Task:
    """The task called ``name`` (a :class:`Task` passes through); ValueError listing names."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Task", "TaskData", "get"]
