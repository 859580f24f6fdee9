"""Task models: a thin head over a backbone (KerasHub's Backbone/Task split)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kerastl.backbones.builder import build_backbone
from kerastl.errors import UserInputError


def _scope(strategy):
    """The scope of ``strategy`` (a Strategy or a name for ``get_strategy``)."""
    if isinstance(strategy, str):
        from kerastl.distribute import get_strategy

        strategy = get_strategy(strategy)
    return strategy.scope()


def _resolve_backbone(backbone) -> keras.Model:
    if isinstance(backbone, str):
        return build_backbone(backbone)
    if isinstance(backbone, keras.Model):
        return backbone
    raise UserInputError(
        "backbone must be a registry name or a model from ktl.build_backbone. "
        f"Received: backbone={backbone!r}"
    )


def _features(backbone: keras.Model, dropout: float, hidden_units: Sequence[int]):
    if not 0 <= dropout < 1:
        raise UserInputError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = backbone(inputs)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    for i, units in enumerate(hidden_units):
        if not isinstance(units, int) or units < 1:
            raise UserInputError(
                f"hidden_units must be positive ints. Received: hidden_units={hidden_units!r}"
            )
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return inputs, x


def build_classifier(backbone, num_classes: int, *, dropout: float = 0.2,
                     hidden_units: Sequence[int] = (), multilabel: bool = False,
                     name: str | None = None, strategy=None) -> keras.Model:
    """An image classifier: backbone -> (dropout, hidden layers) -> probabilities.

    Args:
        backbone: a registry name (built frozen with ImageNet weights) or a
            model from :func:`build_backbone`.
        num_classes: number of classes (>= 2, or >= 1 when ``multilabel``).
        dropout: dropout rate before each dense layer of the head.
        hidden_units: sizes of optional hidden ReLU layers.
        multilabel: sigmoid outputs (independent labels) instead of softmax.
        name: model name; default ``"<backbone>_classifier"``.
        strategy: a ``tf.distribute.Strategy`` or a name for
            :func:`kerastl.distribute.get_strategy`; the model's variables are
            created in its scope (with a backbone *name*, the backbone too).

    Returns:
        A ``keras.Model`` from raw ``[0, 255]`` RGB to class probabilities
        (float32, also under mixed precision).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserInputError(f"num_classes must be a positive int. Received: {num_classes!r}")
    if num_classes == 1 and not multilabel:
        raise UserInputError(
            "A softmax classifier needs num_classes >= 2 (use 2 for a binary problem, or "
            "multilabel=True for independent sigmoid outputs). Received: num_classes=1"
        )
    if strategy is not None:
        with _scope(strategy):
            return build_classifier(backbone, num_classes, dropout=dropout,
                                    hidden_units=hidden_units, multilabel=multilabel, name=name)
    backbone = _resolve_backbone(backbone)
    inputs, x = _features(backbone, dropout, tuple(hidden_units))
    outputs = keras.layers.Dense(
        num_classes, activation="sigmoid" if multilabel else "softmax", dtype="float32",
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name=name or f"{backbone.name}_classifier")


def build_regressor(backbone, num_outputs: int = 1, *, dropout: float = 0.2,
                    hidden_units: Sequence[int] = (), name: str | None = None,
                    strategy=None) -> keras.Model:
    """A regressor: backbone -> (dropout, hidden layers) -> ``num_outputs`` linear outputs.

    ``strategy`` works as in :func:`build_classifier`.
    """
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise UserInputError(f"num_outputs must be a positive int. Received: {num_outputs!r}")
    if strategy is not None:
        with _scope(strategy):
            return build_regressor(backbone, num_outputs, dropout=dropout,
                                   hidden_units=hidden_units, name=name)
    backbone = _resolve_backbone(backbone)
    inputs, x = _features(backbone, dropout, tuple(hidden_units))
    outputs = keras.layers.Dense(num_outputs, dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"{backbone.name}_regressor")


def task_of(model: keras.Model) -> str:
    """``"multiclass"``, ``"multilabel"`` or ``"regression"``, from the output layer."""
    try:
        last = model.get_layer("predictions")
    except ValueError:
        last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "linear")
    if activation == "softmax":
        return "multiclass"
    if activation == "sigmoid":
        return "multilabel"
    return "regression"
