"""Text task models: raw strings in, the tokenizer inside the model.

:class:`TextClassifier` is the text counterpart of
:class:`kerastl.ImageClassifier`: input ``"text"`` (``tf.string [batch]``),
the :class:`~kerastl.text.bert.TextBackbone` nested as one layer (tokenizer,
encoder, pooling), then the head (``head_dropout``, optional hidden layers,
``predictions``). ``get_config`` keeps the backbone name, class names and
sequence length, so a ``.keras`` file carries its own contract, and the same
``freeze`` / ``unfreeze`` / ``fine_tune`` / ``export_saved_model`` calls work.

:class:`TextEmbedder` gives L2-normalised sentence embeddings (what
sentence-transformers' ``encode(normalize_embeddings=True)`` returns).
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

import keras

from kerastl.errors import UserInputError
from kerastl.models import (
    REQUIRES,
    ClassifierTask,
    TaskContract,
    _check_class_names,
    _check_hidden,
    _layer_maker,
    task_from_config,
)
from kerastl.text.bert import TextBackbone, build_text_backbone


def _model_name(backbone: TextBackbone, suffix: str) -> str:
    """``<backbone>_<suffix>``, with a local folder's path reduced to a valid name."""
    base = pathlib.PurePath(backbone.backbone_name or "text").name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{base}_{suffix}").lstrip("_.") or suffix


def _resolve(backbone, sequence_length) -> TextBackbone:
    if isinstance(backbone, TextBackbone):
        if sequence_length is not None and sequence_length != backbone.sequence_length:
            raise UserInputError(
                f"sequence_length={sequence_length} differs from the backbone's "
                f"{backbone.sequence_length}; pass it to build_text_backbone instead.")
        return backbone
    if isinstance(backbone, str):   # built frozen, as image backbones are
        built = build_text_backbone(backbone, sequence_length=sequence_length)
        built.trainable = False
        return built
    raise UserInputError(
        "backbone must be a text backbone name (e.g. 'minilm_l6'), a local BERT folder, or "
        f"a model from build_text_backbone. Received: backbone={backbone!r}")


class TextTask(TaskContract, keras.Model):
    """Base of the text task models: backbone, head, and the model's contract."""

    task = "regression"
    _suffix = "model"
    #: Marks kerastl's task models (image and text), which describe themselves.
    is_kerastl_task = True
    kind = "text"

    def __init__(self, backbone, num_outputs: int, *, activation=None, dropout: float = 0.1,
                 hidden_units: Sequence[int] = (), class_names=None, sequence_length=None,
                 name=None, head_layers=None, **kwargs):
        backbone = _resolve(backbone, sequence_length)
        hidden = _check_hidden(hidden_units)
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise UserInputError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
        names = _check_class_names(class_names, num_outputs)
        make = _layer_maker(head_layers)
        text = keras.Input(shape=(), dtype="string", name="text")
        x = backbone(text)
        for i, units in enumerate(hidden):
            if dropout:
                x = make(keras.layers.Dropout, dropout, name=f"head_dropout_{i}")(x)
            x = make(keras.layers.Dense, units, activation="relu", name=f"head_dense_{i}")(x)
        if dropout:
            x = make(keras.layers.Dropout, dropout, name="head_dropout")(x)
        outputs = make(keras.layers.Dense, num_outputs, activation=activation, dtype="float32",
                       name="predictions")(x)
        super().__init__(inputs=text, outputs=outputs,
                         name=name or _model_name(backbone, self._suffix), **kwargs)
        self.backbone = backbone
        self._num_outputs = int(num_outputs)
        self._dropout = float(dropout)
        self._hidden_units = hidden
        self._class_names = names

    @property
    def sequence_length(self) -> int:
        return self.backbone.sequence_length

    @property
    def backbone_name(self) -> str | None:
        return self.backbone.backbone_name or None

    @property
    def resize(self) -> None:
        """Text models resize nothing (kept so code reading a model's contract can ask)."""
        return None

    @property
    def image_size(self) -> None:
        return None

    def get_config(self) -> dict:
        return self._contract_config()


@keras.saving.register_keras_serializable(package="kerastl")
class TextClassifier(ClassifierTask, TextTask):
    """Text classifier: raw strings -> tokenizer -> BERT encoder -> pooling -> head.

    Args:
        backbone: a text backbone name (``"minilm_l6"``, built with its
            pretrained weights), a local BERT folder, or a model from
            :func:`kerastl.text.build_text_backbone`.
        num_classes: number of classes (>= 2, or >= 1 when ``multilabel``).
        dropout: dropout before each dense layer of the head.
        hidden_units: sizes of optional hidden ReLU layers.
        multilabel: sigmoid outputs instead of softmax.
        class_names: one name per class (kept in the ``.keras`` file).
        sequence_length: tokens per text (with a backbone name).
        name: model name; default ``"<backbone>_classifier"``.

    Example:
        >>> model = TextClassifier("minilm_l6", 5, class_names=splits.class_names)
        >>> model.predict(tf.constant(["Shares rose 3% after the results."]))
    """

    def __init__(self, backbone, num_classes: int, *, dropout: float = 0.1,
                 hidden_units: Sequence[int] = (), multilabel: bool = False, **kwargs):
        self._init_classifier(backbone, num_classes, dropout, hidden_units, multilabel, kwargs)


@keras.saving.register_keras_serializable(package="kerastl")
class TextEmbedder(keras.Model):
    """Raw strings -> L2-normalised sentence embeddings (cosine similarity = dot product).

    Args:
        backbone: as for :class:`TextClassifier`.
        sequence_length: tokens per text (with a backbone name).
    """

    def __init__(self, backbone="minilm_l6", *, sequence_length=None, name=None, **kwargs):
        backbone = _resolve(backbone, sequence_length)
        text = keras.Input(shape=(), dtype="string", name="text")
        outputs = keras.layers.UnitNormalization(name="normalize")(backbone(text))
        super().__init__(inputs=text, outputs=outputs,
                         name=name or _model_name(backbone, "embedder"), **kwargs)
        self.backbone = backbone

    def get_config(self) -> dict:
        return {"requires": REQUIRES, "backbone": keras.saving.serialize_keras_object(self.backbone),
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict):
        return task_from_config(cls, config)


def build_text_classifier(backbone="minilm_l6", num_classes: int = 2, *, dropout: float = 0.1,
                          hidden_units: Sequence[int] = (), multilabel: bool = False,
                          class_names=None, sequence_length: int | None = None,
                          name: str | None = None, strategy=None) -> TextClassifier:
    """A :class:`TextClassifier` (see it for the arguments); ``strategy`` creates its
    variables in that strategy's scope."""
    if strategy is not None:
        from kerastl.models import _scope

        with _scope(strategy):
            return build_text_classifier(backbone, num_classes, dropout=dropout,
                                         hidden_units=hidden_units, multilabel=multilabel,
                                         class_names=class_names,
                                         sequence_length=sequence_length, name=name)
    return TextClassifier(backbone, num_classes, dropout=dropout, hidden_units=hidden_units,
                          multilabel=multilabel, class_names=class_names,
                          sequence_length=sequence_length, name=name)


def build_text_embedder(backbone="minilm_l6", *, sequence_length: int | None = None,
                        name: str | None = None) -> TextEmbedder:
    """A :class:`TextEmbedder`: L2-normalised sentence embeddings."""
    return TextEmbedder(backbone, sequence_length=sequence_length, name=name)
