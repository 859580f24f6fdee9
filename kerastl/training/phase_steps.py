"""Helpers of :mod:`kerastl.training.phases`: when phase 1 may train on cached
features (and the head model it then trains), steps and batch sizes of a
dataset, and merging the phases' history rows."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from kerastl._compat import flatten_layers
from kerastl.data.info import is_augmented
from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

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
    for layer in flatten_layers(model, include_self=False):
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
    if is_augmented(train):
        return False, "the training data is augmented (each epoch must see new images)"
    aug = _augmentation_layers(model)
    if aug:
        return False, f"the model has augmentation layers ({', '.join(aug[:3])})"
    if cache_features == "auto" and head_epochs < 2:
        return False, "a single head epoch costs no more than extracting features"
    return True, ""


def _steps_per_epoch(dataset) -> int:
    steps = int(dataset.cardinality())
    if steps > 0:
        return steps
    if steps == int(tf.data.INFINITE_CARDINALITY):
        raise UserInputError(
            "The training dataset repeats forever, so an epoch has no end for the learning-rate "
            "schedule. Pass a finite dataset (no .repeat()), or schedule='constant'.")
    return sum(1 for _ in dataset)  # unknown cardinality: count the batches once


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
