"""Tiny models with input-dependent outputs, for export tests (also used by CLI tests)."""

from __future__ import annotations

import keras
import numpy as np

import kerastl as ktl
from kerastl.backbones import Preprocess

CLASS_NAMES = ["cat", "coffee", "rocket"]


def tiny_backbone(size: int = 32, seed: int = 0) -> keras.Model:
    """A kerastl-style backbone (Preprocess inside) small enough to export in seconds.

    Randomly initialised kerastl backbones answer near-uniform probabilities
    (their features vanish), which would make every comparison pass trivially;
    this one has BatchNorm statistics and weights that give confident,
    image-dependent answers.
    """
    rng = np.random.default_rng(seed)
    inputs = keras.Input((size, size, 3))
    x = Preprocess("lite", backbone="tiny")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, x, name="tiny")
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(0, 0.1, 8).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 8).astype("float32"))
    return model


def tiny_classifier(num_classes: int = 3, size: int = 32, seed: int = 0) -> keras.Model:
    model = ktl.build_classifier(tiny_backbone(size, seed), num_classes, name="tiny_classifier")
    dense = model.get_layer("predictions")
    rng = np.random.default_rng(seed + 1)
    dense.kernel.assign(rng.normal(0, 3.0, dense.kernel.shape).astype("float32"))
    return model
