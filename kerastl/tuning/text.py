"""The KerasTuner search space for text: :class:`TextHyperModel`.

The same hyperparameters and two-phase ``fit`` as
:class:`~kerastl.tuning.TransferHyperModel` (backbone, head, rates, unfreeze
depth, optimizer, label smoothing), without image augmentation, plus the
``sequence_length`` of the tokenizer inside the model. ``unfreeze_groups``
counts the encoder's groups (``embeddings``, one per transformer layer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras_tuner as kt

from kerastl.config import DEFAULTS as CONFIG
from kerastl.errors import UserInputError
from kerastl.tuning.hypermodel import DEFAULTS, TransferHyperModel

#: The text search space: the image one without ``augmentation``, plus ``sequence_length``.
TEXT_DEFAULTS: dict[str, dict] = {
    **{k: v for k, v in DEFAULTS.items() if k != "augmentation"},
    "sequence_length": {"kind": "choice", "values": [64, 128, 256], "default": 128},
}


class TextHyperModel(TransferHyperModel):
    """Search space over text backbones, head, rates, unfreeze depth and sequence length.

    Args:
        num_classes: number of classes (softmax head).
        backbones: text backbone names (or local BERT folders); the first is the default.
        weights: ``"pretrained"`` (or ``"imagenet"``, read as the checkpoint) or ``None``.
        space, fixed, head_epoch_fraction, patience, seed, verbose, name, strategy,
        class_names: as :class:`~kerastl.tuning.TransferHyperModel`.

    Example:
        >>> hm = TextHyperModel(5, fixed={"sequence_length": 64})
        >>> result = ktl.tuning.search(splits.train, splits.val, hypermodel=hm, max_trials=4)
    """

    table = TEXT_DEFAULTS

    def __init__(self, num_classes: int, *, backbones: Sequence[str] = ("minilm_l6",),
                 weights="pretrained", space: Mapping | None = None,
                 fixed: Mapping | None = None, head_epoch_fraction: float = 0.3,
                 patience: int | None = CONFIG.patience, seed: int | None = CONFIG.seed,
                 verbose=0, name: str | None = None, strategy=None,
                 class_names: Sequence[str] | None = None):
        from kerastl.text.presets import text_backbone_spec

        kt.HyperModel.__init__(self, name=name, tunable=True)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise UserInputError(f"num_classes must be an int >= 2. Received: {num_classes!r}")
        backbones = (backbones,) if isinstance(backbones, str) else tuple(backbones)
        if not backbones:
            raise UserInputError("backbones must name at least one text backbone.")
        for b in backbones:
            text_backbone_spec(b)  # raises with close matches for unknown names
        if weights not in ("pretrained", "imagenet", None):
            raise UserInputError(f"weights must be 'pretrained' or None for text backbones. "
                                 f"Received: weights={weights!r}")
        self.image_size = None
        self._setup(num_classes, backbones, None if weights is None else "pretrained", space,
                    fixed, head_epoch_fraction, patience, seed, verbose, strategy, class_names)

    def _spec(self, name: str):
        from kerastl.text.presets import text_backbone_spec

        spec = text_backbone_spec(name)
        # mean pooling has no pooler: the groups a built model has
        return type(spec)(**{**spec.__dict__, "groups": spec.groups[:-1],
                             "group_cuts": spec.group_cuts[:-1]})

    def build(self, hp: kt.HyperParameters):
        """The :class:`~kerastl.text.TextClassifier` of ``hp`` (uncompiled)."""
        from kerastl.text.bert import build_text_backbone
        from kerastl.text.models import TextClassifier

        v = self.values(hp)
        backbone = build_text_backbone(v["backbone"], weights=self.weights,
                                       sequence_length=int(v["sequence_length"]))
        backbone.trainable = False
        hidden = (int(v["head_units"]),) if v["head_units"] else ()
        return TextClassifier(backbone, self.num_classes, dropout=float(v["dropout"]),
                              hidden_units=hidden, class_names=self.class_names)
