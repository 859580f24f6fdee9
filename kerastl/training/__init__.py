"""Training: two-phase fine-tuning, its callbacks, schedules and per-group rates."""

from kerastl.training.discriminative import (
    discriminative_optimizer,
    exclude_norm_and_bias,
    layerwise_multipliers,
)
from kerastl.training.fine_tune import fine_tune
from kerastl.training.gradual import GradualUnfreezing, prebuild_optimizer
from kerastl.training.lr_finder import LRFindResult, lr_find
from kerastl.training.optimizers import OPTIMIZERS, make_optimizer
from kerastl.training.result import FineTuneResult
from kerastl.training.schedules import OneCycle, WarmupCosine, make_schedule, warmup_cosine

__all__ = [
    "FineTuneResult",
    "GradualUnfreezing",
    "LRFindResult",
    "OPTIMIZERS",
    "OneCycle",
    "WarmupCosine",
    "discriminative_optimizer",
    "exclude_norm_and_bias",
    "fine_tune",
    "layerwise_multipliers",
    "lr_find",
    "make_optimizer",
    "make_schedule",
    "prebuild_optimizer",
    "warmup_cosine",
]
