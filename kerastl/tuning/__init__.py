"""Hyperparameter search for transfer learning on KerasTuner.

``ktl.tuning.search(train, val, backbones=..., tuner="hyperband")`` searches
backbones, head size, dropout, both learning rates, unfreeze depth,
augmentation, label smoothing and optimizer; it resumes after a crash
(``overwrite=False``), releases memory between trials (or isolates each
trial in its own process) and runs distributed on KerasTuner's chief/worker
mechanism. See docs/tuning.md.
"""

from kerastl.tuning.hypermodel import DEFAULTS, HYPERPARAMETERS, TransferHyperModel
from kerastl.tuning.search import TUNERS, SearchResult, search
from kerastl.tuning.text import TEXT_DEFAULTS, TextHyperModel

__all__ = ["DEFAULTS", "HYPERPARAMETERS", "TEXT_DEFAULTS", "TUNERS", "SearchResult",
           "TextHyperModel", "TransferHyperModel", "search"]
