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


def save_hub_module(path, size: int = 32, seed: int = 0, variables: bool = True) -> str:
    """A TF2 reusable SavedModel (TF Hub's format) of a tiny CNN, or of a fixed function
    with no variables at all (``variables=False``). Returns its path."""
    import tensorflow as tf

    root = tf.train.Checkpoint()
    if variables:
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(inputs)
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
        x = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu",
                                name="block1_conv")(keras.layers.ReLU()(x))
        x = keras.layers.GlobalAveragePooling2D()(x)
        source = keras.Model(inputs, x)
        bn = source.get_layer("stem_bn")
        rng = np.random.default_rng(seed)
        bn.moving_mean.assign(rng.normal(0, 0.2, 8).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, 8).astype("float32"))
        root.variables = [v.value for v in source.variables]
        root.trainable_variables = [v.value for v in source.trainable_variables]

        def forward(images, training):
            return source(images, training=training)
    else:
        root.variables, root.trainable_variables = [], []

        def forward(images, training):  # colour statistics: mean, max, std per channel
            del training
            return tf.concat([tf.reduce_mean(images, [1, 2]), tf.reduce_max(images, [1, 2]),
                              tf.math.reduce_std(images, [1, 2])], -1)
    root.regularization_losses = []

    @tf.function
    def call(images, training=False):
        return forward(images, training)

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    call.get_concrete_function(spec, True)
    call.get_concrete_function(spec, False)
    root.__call__ = call
    tf.saved_model.save(root, str(path))
    return str(path)


def sharpen_head(model: keras.Model, seed: int = 1, scale: float = 3.0) -> keras.Model:
    """Scale the ``predictions`` kernel so the outputs depend clearly on the image."""
    dense = model.get_layer("predictions")
    rng = np.random.default_rng(seed)
    dense.kernel.assign(rng.normal(0, scale, dense.kernel.shape).astype("float32"))
    return model
