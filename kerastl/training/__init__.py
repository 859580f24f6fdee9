"""Training: two-phase fine-tuning and its callbacks."""

from kerastl.training.fine_tune import FineTuneResult, fine_tune, make_optimizer

__all__ = ["FineTuneResult", "fine_tune", "make_optimizer"]
