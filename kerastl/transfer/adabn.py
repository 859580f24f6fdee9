"""AdaBN: adapt BatchNormalization statistics to a new domain without labels.

Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation"
(2016): a network's domain knowledge sits in its weights, the domain's
low-level statistics in its BatchNorm moving mean and variance. Replacing
those statistics with the target domain's (computed on unlabelled target
images) adapts the network; every other weight stays as it was.
"""

from __future__ import annotations

import contextlib
import logging

import keras
import numpy as np
import tensorflow as tf

from kerastl._compat import flatten_layers
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer in ``model``, nested models included, in order."""
    return [layer for layer in flatten_layers(model, include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


class _Moments:
    """Running per-channel sums of one BN layer's inputs, in float64."""

    def __init__(self, layer: keras.layers.BatchNormalization):
        self.layer = layer
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, inputs) -> None:
        x = np.asarray(inputs, dtype=np.float64)
        axis = self.layer.axis if isinstance(self.layer.axis, int) else self.layer.axis[0]
        x = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        self.count += x.shape[0]
        self.total = self.total + x.sum(axis=0)
        self.total_sq = self.total_sq + np.square(x).sum(axis=0)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / self.count
        return mean, np.maximum(self.total_sq / self.count - np.square(mean), 0.0)


@contextlib.contextmanager
def _recording(layers: list, moments: dict):
    """Make each BN layer normalise with its batch statistics and record its inputs.

    Only the BN layers change behaviour: the model is still called with
    ``training=False``, so dropout, augmentation and the like stay off.
    """

    def recorder(layer):
        def call(inputs, training=None, mask=None):
            moments[id(layer)].add(inputs)
            mean, variance = keras.ops.moments(
                keras.ops.cast(inputs, "float32"),
                [i for i in range(len(inputs.shape)) if i != layer.axis % len(inputs.shape)])
            outputs = keras.ops.batch_normalization(
                keras.ops.cast(inputs, "float32"), mean, variance, axis=layer.axis,
                offset=layer.beta if layer.center else None,
                scale=layer.gamma if layer.scale else None, epsilon=layer.epsilon)
            return keras.ops.cast(outputs, layer.compute_dtype)
        return call

    try:
        for layer in layers:
            layer.call = recorder(layer)  # instance attribute shadows the class method
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("call", None)


def adapt_batchnorm(model: keras.Model, target_data, *, max_batches: int | None = None,
                    batch_size: int = 64) -> keras.Model:
    """Re-estimate every BatchNorm layer's statistics on unlabelled target images (AdaBN).

    One pass over ``target_data`` in inference mode, except that each
    BatchNormalization layer normalises with the statistics of the current
    batch (as in training) while its inputs are accumulated; at the end each
    layer's ``moving_mean`` / ``moving_variance`` become the mean and
    variance of its inputs over all target images. Nothing else changes: not
    the BN scale/offset, not any other weight. Dropout and augmentation stay
    off. Use batches of at least 32 images so per-batch statistics are stable.

    The layers after the BatchNorm layers (e.g. a head) must have been
    trained on activations normalised with statistics of their own training
    domain: adapt a model fine-tuned with BatchNorm in training mode, or
    re-estimate the backbone on the *source* images first, fit the head, then
    adapt to the target. A head fitted on frozen ImageNet-statistics features
    gets worse after AdaBN (measured in ``docs/modes.md``).

    Args:
        model: a Keras model (a kerastl classifier, a backbone, any model)
            with BatchNormalization layers; adapted in place.
        target_data: target-domain images: a ``tf.data.Dataset`` of image
            batches or of ``(images, labels)`` batches (labels are ignored), or
            an array ``(N, H, W, C)``.
        max_batches: use at most this many batches.
        batch_size: batch size when ``target_data`` is an array.

    Returns:
        ``model``, adapted in place.

    Raises:
        ValueError: the model has no BatchNormalization layer, or the data is empty.

    Example:
        >>> ktl.adapt_batchnorm(model, unlabelled_target.batch(64))
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise UserInputError(
            f"Model '{model.name}' has no BatchNormalization layer; AdaBN has nothing to adapt."
        )
    if isinstance(target_data, tf.data.Dataset):
        dataset = target_data
    else:
        images = np.asarray(target_data)
        if images.ndim < 2 or len(images) == 0:
            raise UserInputError(
                "target_data must be a non-empty array of images (N, H, W, C) or a "
                f"tf.data.Dataset. Received shape {images.shape}"
            )
        dataset = tf.data.Dataset.from_tensor_slices(images.astype("float32")).batch(batch_size)
    moments = {id(layer): _Moments(layer) for layer in layers}
    batches = 0
    with _recording(layers, moments):
        for batch in dataset:
            if max_batches is not None and batches >= max_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(images, training=False)
            batches += 1
    if batches == 0:
        raise DataError("adapt_batchnorm: target_data is empty.")
    for layer in layers:
        stats = moments[id(layer)]
        if stats.count == 0:
            log.warning("BatchNorm layer %s saw no inputs; its statistics are unchanged",
                        layer.name)
            continue
        mean, variance = stats.result()
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    log.info("AdaBN: re-estimated %d BatchNorm layers on %d target batches", len(layers),
             batches)
    return model
