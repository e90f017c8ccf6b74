"""Check what a user brings against gradsuite's references.

- :mod:`suite.conformance.optimizers`: any torch.optim-style optimizer against a reference
  update rule (``check_optimizer``), with explanations from the catalogue of known variants in
  :mod:`suite.optim.variants`.
- :mod:`suite.conformance.activations`: any activation (a torch callable, an ``nn.Module``, an
  ``autograd.Function`` or a NumPy forward/backward pair) against the exact values of a
  reference activation (``check_activation``).

``from suite.conformance import check_optimizer`` keeps working.
"""

from suite.conformance.activations import ActivationResult, check_activation
from suite.conformance.optimizers import (
    CONFIGS,
    ConformanceResult,
    Failure,
    NotApplicable,
    accepted_hyperparameters,
    check_optimizer,
    load_object,
    signature_supports,
    tolerance,
)

__all__ = [
    "CONFIGS",
    "ActivationResult",
    "ConformanceResult",
    "Failure",
    "NotApplicable",
    "accepted_hyperparameters",
    "check_activation",
    "check_optimizer",
    "load_object",
    "signature_supports",
    "tolerance",
]
