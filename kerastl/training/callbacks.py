"""Callbacks used by ``fine_tune``."""

from __future__ import annotations

import math

import keras

from kerastl.memory import trim_heap


class BestWeights(keras.callbacks.Callback):
    """Remember the weights of the best epoch across phases (restore with :meth:`restore`).

    Unlike ``EarlyStopping(restore_best_weights=True)`` it survives the
    recompile between the head phase and the fine-tuning phase, and it tracks
    the weights of the *full* model even while a head-only model trains on
    cached features.

    Args:
        model_to_save: the full model whose weights are snapshotted.
        monitor: metric to minimise (``"val_loss"``, falling back to ``"loss"``).
    """

    def __init__(self, model_to_save: keras.Model, monitor: str = "val_loss"):
        super().__init__()
        self.model_to_save = model_to_save
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_logs: dict = {}
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor, logs.get("loss"))
        if value is None or not math.isfinite(float(value)):
            return
        if float(value) < self.best:
            self.best = float(value)
            self.best_epoch = epoch
            self.best_logs = {k: float(v) for k, v in logs.items()}
            self._weights = self.model_to_save.get_weights()

    def restore(self) -> bool:
        """Put the best weights back; returns False when no epoch was recorded."""
        if self._weights is None:
            return False
        self.model_to_save.set_weights(self._weights)
        return True


class PenaltyFreeValLoss(keras.callbacks.Callback):
    """Report ``val_loss`` without a weight penalty that Keras adds to it.

    Keras adds ``model.losses`` (here the L2-SP penalty) to the evaluation
    loss too, so a phase-2 epoch's ``val_loss`` would be the data loss plus a
    term that grows as the weights move, and the best-epoch restore and early
    stopping would compare it with phase 1's penalty-free loss. The weights do
    not change during evaluation, so the penalty is one constant there: this
    callback (first in the list: the others see the corrected logs) moves it
    out of ``val_loss`` into its own log, ``penalty``.

    Args:
        penalty: an object whose ``value()`` is the penalty now
            (:class:`kerastl.regularization.L2SPPenalty`).
        in_val_loss: whether ``val_loss`` holds it (``model.fit``'s does; the
            strategy loop's evaluation loss does not, and is only annotated).
    """

    def __init__(self, penalty, in_val_loss: bool = True):
        super().__init__()
        self.penalty = penalty
        self.in_val_loss = in_val_loss

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        value = self.penalty.value()
        logs["penalty"] = value
        if self.in_val_loss and "val_loss" in logs:
            logs["val_loss"] = float(logs["val_loss"]) - value


class PhaseLogger(keras.callbacks.Callback):
    """Collect per-epoch logs with the phase number and learning rate."""

    def __init__(self, phase: int, rows: list[dict]):
        super().__init__()
        self.phase = phase
        self.rows = rows

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": int(epoch) + 1, "phase": self.phase}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in row:
            try:
                row["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            except (TypeError, ValueError):
                pass
        self.rows.append(row)


class TrimHeap(keras.callbacks.Callback):
    """Hand the C heap that an epoch freed back to the OS (glibc ``malloc_trim``).

    TensorFlow frees the epoch's batches and activations, but glibc keeps the
    pages in its arenas, so a process's resident memory grows epoch after epoch
    up to its fragmentation level (benchmarks/train_memory.py)."""

    def on_epoch_end(self, epoch, logs=None):
        trim_heap()
