"""What :func:`kerastl.fine_tune` returns."""

from __future__ import annotations

import dataclasses

import keras


@dataclasses.dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns.

    Attributes:
        model: the trained model, holding the weights of the best epoch.
        history: merged per-epoch history, ``{metric: [values]}`` with
            ``"epoch"`` and ``"phase"`` (1 = head, 2 = fine-tuning) columns.
        best_val_metrics: metrics of the best epoch (lowest ``val_loss``, or
            ``loss`` without validation data), with its ``epoch`` and ``phase``.
        timings: seconds spent per phase and on feature extraction.
        cached_features: whether phase 1 trained on cached backbone features.
        resumed_from: the checkpoint folder this run resumed from, or None.
        linear_head: with ``head_init="linear_probe"``, the fitted scikit-learn
            pipeline (scaler + ``LogisticRegressionCV``) phase 1 started the head from.
    """

    model: keras.Model
    history: dict[str, list]
    best_val_metrics: dict[str, float]
    timings: dict[str, float]
    cached_features: bool = False
    resumed_from: str | None = None
    linear_head: object | None = None

    def history_rows(self) -> list[dict]:
        """The history as one dict per epoch."""
        n = len(self.history.get("epoch", []))
        return [{k: v[i] for k, v in self.history.items() if i < len(v)} for i in range(n)]
