"""What each fine-tuning phase compiles with: optimizers by name, default loss and metrics.

Shared by :func:`kerastl.fine_tune` (and its phases), the per-group-rate
optimizers of :mod:`kerastl.training.discriminative`, the learning-rate finder
and the CLI, so none of them has to import another for these.
"""

from __future__ import annotations

import keras

from kerastl.errors import UserInputError
from kerastl.models import task_of

#: Optimizer classes by the names ``make_optimizer`` and the CLI's ``--optimizer`` take.
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
}


def make_optimizer(name: str, learning_rate: float, *, momentum: float | None = None,
                   weight_decay: float | None = None) -> keras.optimizers.Optimizer:
    """Build a Keras optimizer by name (``adam``, ``adamw``, ``sgd``, ``rmsprop``, ``adagrad``).

    Args:
        name: the optimizer's name (or a Keras optimizer, returned as it is).
        learning_rate: a float or a ``LearningRateSchedule``.
        momentum: for ``sgd`` (default 0.9) and ``rmsprop`` (default 0.0);
            refused for the others (Adam's is ``beta_1``).
        weight_decay: decoupled weight decay (``adamw`` default 1e-4).

    Raises:
        ValueError: unknown name, or a momentum the optimizer has no use for.
    """
    if isinstance(name, keras.optimizers.Optimizer):
        return name
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise UserInputError(
            f"Unknown optimizer '{name}'. Known: {', '.join(OPTIMIZERS)}. Received: {name!r}"
        )
    kwargs = {"learning_rate": learning_rate}
    kwargs.update(momentum_option(key, momentum))
    if key == "adamw":
        kwargs["weight_decay"] = 1e-4 if weight_decay is None else weight_decay
    elif weight_decay:
        kwargs["weight_decay"] = weight_decay
    return OPTIMIZERS[key](**kwargs)


def momentum_option(key: str, momentum: float | None) -> dict:
    """``{"momentum": ...}`` for SGD (default 0.9) and RMSprop, ``{}`` otherwise.

    Raises:
        ValueError: a momentum outside [0, 1), or one given to an optimizer
            without a momentum argument.
    """
    if momentum is not None and (isinstance(momentum, bool)
                                 or not isinstance(momentum, (int, float))
                                 or not 0.0 <= momentum < 1.0):
        raise UserInputError(f"momentum must be a number in [0, 1). Received: {momentum!r}")
    if key == "sgd":
        return {"momentum": 0.9 if momentum is None else float(momentum)}
    if key == "rmsprop":
        return {} if momentum is None else {"momentum": float(momentum)}
    if momentum is not None:
        raise UserInputError(
            f"momentum applies to the 'sgd' and 'rmsprop' optimizers, not '{key}' "
            "(Adam-style optimizers keep their own beta_1). Received: "
            f"optimizer={key!r}, momentum={momentum!r}")
    return {}


def _label_rank(dataset) -> int:
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise UserInputError(
            "Datasets must yield (images, labels) batches, e.g. from ktl.data.image_folder. "
            f"Received element_spec={spec}"
        )
    return len(spec[1].shape)


def default_loss_and_metrics(model, train, label_smoothing: float = 0.0):
    """Loss and metrics that match the model's head and the label format."""
    task = task_of(model)
    if task == "regression":
        return keras.losses.MeanSquaredError(), ["mae"]
    if task == "multilabel":
        return (keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
                [keras.metrics.BinaryAccuracy(name="accuracy")])
    if _label_rank(train) >= 2:  # one-hot / soft labels (MixUp, CutMix)
        return (keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                [keras.metrics.CategoricalAccuracy(name="accuracy")])
    if label_smoothing:
        raise UserInputError(
            "label_smoothing needs one-hot labels; integer labels were given. Use "
            "one-hot labels (e.g. augment with MixUp) or label_smoothing=0."
        )
    return (keras.losses.SparseCategoricalCrossentropy(),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
