"""The tasks: data loaders, model builders and losses, one block per task.

Budgets and targets were set so that each default budget trains in about a second on one core
and the target is reached by a well-tuned optimizer in part of the budget, not by every
learning rate (see the README's "Training tasks" section for how they were chosen).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from suite.tasks import Task

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
TEST_SIZE = 0.25


def _split(x: np.ndarray, y: np.ndarray, seed: int, standardize: bool) -> Split:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=TEST_SIZE, random_state=seed,
                                          stratify=y)
    if standardize:
        # fit on the training part only; constant pixels keep scale 1 (StandardScaler's rule)
        scaler = StandardScaler().fit(xtr)
        xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    return xtr, ytr, xte, yte


@functools.cache
def digits(standardize: bool = True, images: bool = False) -> Split:
    """scikit-learn's bundled digits (1797 x 64, pixels 0..16), split 75/25 stratified.

    ``images``: shaped (n, 1, 8, 8) and scaled to [0, 1] (x / 16) instead of standardised.
    """
    from sklearn.datasets import load_digits

    ds = load_digits()
    x, y = ds.data.astype(np.float64), ds.target.astype(np.int64)
    if images:
        xtr, ytr, xte, yte = _split(x / 16.0, y, 0, standardize=False)
        return xtr.reshape(-1, 1, 8, 8), ytr, xte.reshape(-1, 1, 8, 8), yte
    return _split(x, y, 0, standardize)


@functools.cache
def breast_cancer() -> Split:
    """scikit-learn's bundled breast cancer data (569 x 30), raw features, split 75/25."""
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer()
    return _split(ds.data.astype(np.float64), ds.target.astype(np.float64), 0,
                  standardize=False)


# ---- losses ---------------------------------------------------------------------------------


def cross_entropy(output: Any, y: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(output, y)


def bce_with_logits(output: Any, y: Any) -> Any:
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(output.reshape(-1), y.reshape(-1))


def mean_output(output: Any, y: Any) -> Any:
    """For models whose output is already the per-example loss (the noisy quadratic)."""
    return output.mean()


# ---- models ---------------------------------------------------------------------------------


def _linear(n_in: int, n_out: int) -> Any:
    import torch

    return torch.nn.Linear(n_in, n_out)


def digits_mlp_model() -> Any:
    """z_1 = x W_1ᵀ + b_1, h = tanh(z_1), z_2 = h W_2ᵀ + b_2: suite.mlp's network, 64-100-10."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.Tanh(),
                               torch.nn.Linear(100, 10))


def digits_cnn_model() -> Any:
    import torch

    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


DEEP_LINEAR_WIDTHS = (64, 32, 32, 32, 32, 32, 10)


def deep_linear_model() -> Any:
    """Six linear layers without biases or activations, torch's default initialisation."""
    import torch

    w = DEEP_LINEAR_WIDTHS
    return torch.nn.Sequential(*(torch.nn.Linear(a, b, bias=False)
                                 for a, b in itertools.pairwise(w)))


# ---- the noisy quadratic (DeepOBS quadratic_deep) -------------------------------------------

QUADRATIC_DIM = 100
QUADRATIC_NOISE = 0.6     # std of the data points x around 0 (DeepOBS's noise_level)
QUADRATIC_N = 1000        # training points; as many test points, drawn independently


@functools.cache
def quadratic_hessian(seed: int = 42) -> np.ndarray:
    """Q = Rᵀ diag(λ) R: 90 eigenvalues ~ U(0, 1), 10 ~ U(30, 60), R Haar-random in SO(100)."""
    from scipy.stats import special_ortho_group

    rng = np.random.default_rng(seed)
    lam = np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])
    r = special_ortho_group.rvs(QUADRATIC_DIM, random_state=rng)
    q = r.T @ np.diag(lam) @ r
    return (q + q.T) / 2


@functools.cache
def quadratic_data(seed: int = 42) -> Split:
    rng = np.random.default_rng(seed + 1)
    xtr = rng.normal(0.0, QUADRATIC_NOISE, (QUADRATIC_N, QUADRATIC_DIM))
    xte = rng.normal(0.0, QUADRATIC_NOISE, (QUADRATIC_N, QUADRATIC_DIM))
    return xtr, np.zeros(QUADRATIC_N), xte, np.zeros(QUADRATIC_N)


def quadratic_model() -> Any:
    import torch

    class NoisyQuadratic(torch.nn.Module):
        """Output: 0.5 (θ - x)ᵀ Q (θ - x) per data point x; θ starts at 1 (as in DeepOBS)."""

        def __init__(self) -> None:
            super().__init__()
            self.theta = torch.nn.Parameter(torch.ones(QUADRATIC_DIM, dtype=torch.float64))
            self.register_buffer("hessian", torch.as_tensor(quadratic_hessian()))

        def forward(self, x: Any) -> Any:
            q = self.theta - x
            return 0.5 * ((q @ self.hessian) * q).sum(dim=1)

    return NoisyQuadratic()


def quadratic_minimum() -> tuple[np.ndarray, float]:
    """The training loss's minimiser (the mean of the training points) and minimum."""
    xtr = quadratic_data()[0]
    h = quadratic_hessian()
    theta = xtr.mean(axis=0)
    q = theta - xtr
    return theta, float(0.5 * np.einsum("ni,ij,nj->n", q, h, q).mean())


# ---- the catalogue --------------------------------------------------------------------------

TASKS: dict[str, Task] = {t.name: t for t in [
    Task("digits_logreg",
         "Multinomial logistic regression (64 -> 10) on standardised digits: convex.",
         "classification", functools.partial(digits, True), functools.partial(_linear, 64, 10),
         cross_entropy, steps=300, batch_size=64, target_loss=0.05, target_accuracy=0.95,
         record_every=10, standardized=True),
    Task("digits_mlp",
         "MLP 64-100-10 with tanh (suite.mlp's network, in torch) on standardised digits.",
         "classification", functools.partial(digits, True), digits_mlp_model, cross_entropy,
         steps=400, batch_size=64, target_loss=0.01, target_accuracy=0.95, record_every=10,
         standardized=True),
    Task("digits_cnn",
         "Conv(1->4, 3x3) ReLU, Conv(4->8, 3x3) ReLU, max-pool 2, linear 128 -> 10 on the "
         "8x8 digit images scaled to [0, 1].",
         "classification", functools.partial(digits, False, True), digits_cnn_model,
         cross_entropy, steps=200, batch_size=64, target_loss=0.1, target_accuracy=0.95,
         record_every=20),
    Task("breast_cancer_logreg",
         "Logistic regression on the raw breast-cancer features (not standardised: they "
         "range from about 1e-3 to 4e3, so the Hessian is ill-conditioned on purpose and "
         "one learning rate cannot suit every coordinate).",
         "binary", breast_cancer, functools.partial(_linear, 30, 1), bce_with_logits,
         steps=400, batch_size=32, target_loss=0.3, target_accuracy=0.9, record_every=10),
    Task("noisy_quadratic",
         "DeepOBS quadratic_deep: 0.5 (θ - x)ᵀ Q (θ - x) averaged over data points x ~ "
         "N(0, 0.6² I) in 100 dimensions, Q with 90 eigenvalues in (0, 1) and 10 in (30, 60) "
         "under a random rotation; minibatches make the gradient noisy. θ starts at 1.",
         "regression", quadratic_data, quadratic_model, mean_output, steps=300,
         batch_size=128, target_loss=86.0, record_every=10),
    Task("deep_linear",
         "Six linear layers (64-32-32-32-32-32-10, no biases, no activations) on standardised "
         "digits with cross-entropy: the same function class as digits_logreg, but a "
         "non-convex landscape with a plateau around the small initial product.",
         "classification", functools.partial(digits, True), deep_linear_model, cross_entropy,
         steps=400, batch_size=64, target_loss=0.1, target_accuracy=0.9, record_every=10,
         standardized=True),
]}
