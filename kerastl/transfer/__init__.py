"""Transfer learning without fine-tuning, and around it.

Feature extraction (a frozen backbone as a fixed feature extractor with a
linear classifier on top), AdaBN domain adaptation and k-fold
cross-validation for small datasets.
"""

from kerastl.regularization import add_l2
from kerastl.transfer.adabn import adapt_batchnorm
from kerastl.transfer.cross_validation import CrossValidationResult, cross_validate
from kerastl.transfer.features import extract_features
from kerastl.transfer.linear import LinearHead, fit_linear_head, linear_head_model

__all__ = [
    "CrossValidationResult",
    "LinearHead",
    "adapt_batchnorm",
    "add_l2",
    "cross_validate",
    "extract_features",
    "fit_linear_head",
    "linear_head_model",
]
