"""Two-phase fine-tuning: train the head on a frozen backbone, then unfreeze the top.

The flow fastai made standard, in Keras 3: freeze the backbone, train the
head at ``learning_rate`` (on cached backbone features when that is exact
and faster), unfreeze with BatchNorm kept in inference mode, recompile at
``fine_tune_learning_rate`` and continue; keep the weights of the best
validation epoch across both phases.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

import keras
import tensorflow as tf

from kerastl.errors import UserInputError
from kerastl.freezing import find_backbone, freeze
from kerastl.freezing import unfreeze as unfreeze_model
from kerastl.models import task_of
from kerastl.training.callbacks import BestWeights, PhaseLogger

log = logging.getLogger(__name__)

_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
}


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
    """

    model: keras.Model
    history: dict[str, list]
    best_val_metrics: dict[str, float]
    timings: dict[str, float]
    cached_features: bool = False

    def history_rows(self) -> list[dict]:
        """The history as one dict per epoch."""
        n = len(self.history.get("epoch", []))
        return [{k: v[i] for k, v in self.history.items() if i < len(v)} for i in range(n)]


def make_optimizer(name: str, learning_rate: float, *, momentum: float = 0.9,
                   weight_decay: float | None = None) -> keras.optimizers.Optimizer:
    """Build a Keras optimizer by name (``adam``, ``adamw``, ``sgd``, ``rmsprop``, ``adagrad``)."""
    if isinstance(name, keras.optimizers.Optimizer):
        return name
    key = str(name).lower()
    if key not in _OPTIMIZERS:
        raise UserInputError(
            f"Unknown optimizer '{name}'. Known: {', '.join(_OPTIMIZERS)}. Received: {name!r}"
        )
    kwargs = {"learning_rate": learning_rate}
    if key == "sgd":
        kwargs["momentum"] = momentum
    if key == "adamw":
        kwargs["weight_decay"] = 1e-4 if weight_decay is None else weight_decay
    elif weight_decay:
        kwargs["weight_decay"] = weight_decay
    return _OPTIMIZERS[key](**kwargs)


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


def _resolve_verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _head_model(model: keras.Model, backbone: keras.Model):
    """A model from backbone features to the output sharing the head's layers, or None."""
    layers = model.layers
    if backbone not in layers or not isinstance(layers[0], keras.layers.InputLayer):
        return None
    index = layers.index(backbone)
    if index != 1:
        return None
    feature_shape = tuple(backbone.output.shape[1:])
    inputs = keras.Input(feature_shape, name="features")
    x = inputs
    try:
        for layer in layers[index + 1:]:
            x = layer(x)
    except (ValueError, TypeError) as err:
        log.info("Not caching features: the head is not a simple chain (%s)", err)
        return None
    if tuple(x.shape[1:]) != tuple(model.output.shape[1:]):
        return None
    return keras.Model(inputs, x, name=f"{model.name}_head")


def _augmentation_layers(model: keras.Model) -> list[str]:
    names = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        cls = type(layer).__name__
        if cls.startswith("Random") or cls in ("RandAugment", "MixUp", "CutMix", "AugMix",
                                               "AutoContrast"):
            names.append(layer.name)
    return names


def _should_cache(cache_features, model, train, head_epochs) -> tuple[bool, str]:
    if cache_features not in ("auto", True, False):
        raise UserInputError(
            f"cache_features must be 'auto', True or False. Received: {cache_features!r}"
        )
    if cache_features is False:
        return False, "cache_features=False"
    if getattr(train, "_kerastl_augmented", False):
        return False, "the training data is augmented (each epoch must see new images)"
    aug = _augmentation_layers(model)
    if aug:
        return False, f"the model has augmentation layers ({', '.join(aug[:3])})"
    if cache_features == "auto" and head_epochs < 2:
        return False, "a single head epoch costs no more than extracting features"
    return True, ""


def fine_tune(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset | None = None, *,
              head_epochs: int = 3, epochs: int = 10, learning_rate: float = 1e-3,
              fine_tune_learning_rate: float = 1e-4, unfreeze: dict | None = None,
              callbacks: list | None = None, cache_features="auto", verbose="auto",
              optimizer: str = "adam", loss=None, metrics=None, patience: int | None = 3,
              label_smoothing: float = 0.0, class_weight: dict | None = None,
              weight_decay: float | None = None) -> FineTuneResult:
    """Fine-tune ``model`` in two phases and return the best weights.

    Phase 1 trains only the head for ``head_epochs`` with the backbone frozen
    (BatchNorm in inference mode), on cached backbone features when
    ``cache_features`` allows. Phase 2 calls ``unfreeze(model, **unfreeze)``
    (default: the whole backbone, BatchNorm still frozen), recompiles at
    ``fine_tune_learning_rate`` and trains ``epochs`` more epochs. Early
    stopping (``patience`` epochs without a better ``val_loss``) ends a phase;
    the weights of the best epoch over both phases are restored at the end.

    Args:
        model: a model containing a kerastl backbone (``build_classifier``...).
        train: dataset of ``(images, labels)`` batches, images float32 [0, 255].
        val: optional validation dataset of the same form.
        head_epochs: epochs of phase 1 (0 skips it).
        epochs: epochs of phase 2 (0 skips it).
        learning_rate: phase-1 learning rate.
        fine_tune_learning_rate: phase-2 learning rate.
        unfreeze: keyword arguments for :func:`kerastl.unfreeze`
            (``{"groups": 2}``, ``{"fraction": 0.3}``, ``{"from_layer": ...}``,
            ``train_bn``).
        callbacks: extra Keras callbacks, passed to both phases.
        cache_features: ``"auto"`` (cache when the backbone is frozen, nothing is
            augmented and ``head_epochs >= 2``), ``True`` or ``False``.
        verbose: Keras verbosity; ``"auto"`` shows progress bars on a terminal
            and one line per epoch otherwise.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"`` or ``"adagrad"``.
        loss: a Keras loss; default chosen from the head and label format.
        metrics: Keras metrics; default accuracy (or MAE for regression).
        patience: early-stopping patience per phase; ``None`` disables it.
        label_smoothing: for one-hot labels.
        class_weight: ``{class index: weight}`` passed to ``fit``.
        weight_decay: optimizer weight decay (AdamW default 1e-4).

    Returns:
        A :class:`FineTuneResult`.

    Raises:
        ValueError: the model has no kerastl backbone, or an argument is invalid.
    """
    for label, value in (("head_epochs", head_epochs), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserInputError(f"{label} must be an int >= 0. Received: {label}={value!r}")
    if head_epochs + epochs == 0:
        raise UserInputError("Nothing to do: head_epochs and epochs are both 0.")
    backbone, _spec = find_backbone(model)
    verbose = _resolve_verbose(verbose)
    if loss is None:
        loss, default_metrics = default_loss_and_metrics(model, train, label_smoothing)
        metrics = default_metrics if metrics is None else metrics
    monitor = "val_loss" if val is not None else "loss"
    best = BestWeights(model, monitor=monitor)
    rows: list[dict] = []
    timings: dict[str, float] = {}
    user_callbacks = list(callbacks or [])

    def phase_callbacks(phase):
        cbs = [PhaseLogger(phase, rows), best] + user_callbacks
        if patience is not None:
            cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=patience))
        return cbs

    cached = False
    if head_epochs:
        freeze(model)
        use_cache, why = _should_cache(cache_features, model, train, head_epochs)
        head = _head_model(model, backbone) if use_cache else None
        if use_cache and head is None:
            why = "the head is not a simple chain of layers after the backbone"
        if head is None and cache_features is not False:
            log.info("Phase 1 not using cached features: %s", why)
        start = time.perf_counter()
        if head is not None:
            cached = True
            from kerastl.data.features import extract_features, features_dataset

            log.info("Phase 1: extracting backbone features once (frozen backbone)")
            t0 = time.perf_counter()
            f_train, y_train = extract_features(backbone, train, verbose=verbose == 1)
            val_ds = None
            if val is not None:
                f_val, y_val = extract_features(backbone, val, verbose=verbose == 1)
                val_ds = features_dataset(f_val, y_val, batch_size=_batch_size(train),
                                          shuffle=False)
            timings["feature_extraction"] = time.perf_counter() - t0
            train_ds = features_dataset(f_train, y_train, batch_size=_batch_size(train),
                                        shuffle=True, seed=1337)
            head.compile(optimizer=make_optimizer(optimizer, learning_rate,
                                                  weight_decay=weight_decay),
                         loss=loss, metrics=metrics)
            head.fit(train_ds, validation_data=val_ds, epochs=head_epochs, verbose=verbose,
                     callbacks=phase_callbacks(1), class_weight=class_weight, shuffle=False)
        else:
            model.compile(optimizer=make_optimizer(optimizer, learning_rate,
                                                   weight_decay=weight_decay),
                          loss=loss, metrics=metrics)
            model.fit(train, validation_data=val, epochs=head_epochs, verbose=verbose,
                      callbacks=phase_callbacks(1), class_weight=class_weight, shuffle=False)
        timings["phase1"] = time.perf_counter() - start
    done = len(rows)
    if epochs:
        unfreeze_model(model, **(unfreeze or {}))
        model.compile(optimizer=make_optimizer(optimizer, fine_tune_learning_rate,
                                               weight_decay=weight_decay),
                      loss=loss, metrics=metrics)
        start = time.perf_counter()
        model.fit(train, validation_data=val, initial_epoch=done, epochs=done + epochs,
                  verbose=verbose, callbacks=phase_callbacks(2), class_weight=class_weight,
                  shuffle=False)
        timings["phase2"] = time.perf_counter() - start
    if best.restore():
        log.info("Restored the weights of epoch %d (%s=%.4f)", best.best_epoch + 1,
                 monitor, best.best)
    if not model.compiled:
        model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=loss,
                      metrics=metrics)
    history = _merge(rows)
    best_row = _best_row(rows, monitor)
    return FineTuneResult(model=model, history=history, best_val_metrics=best_row,
                          timings=timings, cached_features=cached)


def _batch_size(dataset) -> int:
    spec = dataset.element_spec[0]
    size = spec.shape[0]
    if size is not None:
        return int(size)
    for images, _ in dataset.take(1):
        return int(images.shape[0])
    raise UserInputError("The training dataset is empty.")


def _merge(rows: list[dict]) -> dict[str, list]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return {k: [row.get(k) for row in rows] for k in keys}


def _best_row(rows: list[dict], monitor: str) -> dict:
    scored = [r for r in rows if r.get(monitor, r.get("loss")) is not None]
    if not scored:
        return {}
    return dict(min(scored, key=lambda r: r.get(monitor, r.get("loss"))))
