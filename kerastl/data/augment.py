"""Augmentation built from Keras preprocessing layers, and class weights.

The same layers run either in ``tf.data`` on the CPU (:func:`apply_augmentation`,
always after ``cache()`` so every epoch sees fresh randomness) or inside the
model on the accelerator (:func:`augmentation_layers`).

Policies (``augment=`` of every data source):

- ``"none"``: nothing.
- ``"light"``: horizontal flip, rotation 0.05, zoom 0.1.
- ``"default"``: flip, rotation 0.1, zoom 0.15, translation 0.1, contrast 0.2,
  brightness 0.2.
- ``"strong"``: flip, random resized crop (scale 0.35-1), RandAugment (2 ops).

Explicit options are a dict, optionally on top of a policy:
``{"policy": "light", "contrast": 0.1, "mixup": 0.2}``. Keys: ``flip``
(``True``/``"horizontal"``/``"vertical"``/``"horizontal_and_vertical"``),
``rotation``, ``zoom``, ``translation``, ``contrast``, ``brightness`` (factors
as in Keras), ``random_resized_crop`` (``True`` or ``(min_scale, max_scale)``),
``rand_augment`` (``True`` or number of ops), ``mixup`` (alpha), ``cutmix``
(factor). MixUp and CutMix need the labels, so they run in ``tf.data`` only and
turn the training labels into float32 one-hot vectors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from kerastl.data.info import describe
from kerastl.defaults import AUGMENT_POLICIES as POLICIES
from kerastl.errors import UserInputError

OPTION_KEYS = ("flip", "rotation", "zoom", "translation", "contrast", "brightness",
               "random_resized_crop", "rand_augment", "mixup", "cutmix")
_MIXING = ("mixup", "cutmix")


class RandomResizedCrop(keras.layers.Layer):
    """Inception-style random resized crop, per image, output size unchanged.

    Samples an area fraction in ``scale`` and an aspect ratio in ``ratio`` for
    each image and maps that window onto the whole frame with
    ``keras.ops.image.affine_transform`` (the op RandomZoom uses). Inactive
    when ``training=False``.

    Args:
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height).
        seed: random seed.
    """

    def __init__(self, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        ops = keras.ops
        shape = ops.shape(images)
        n = shape[0]
        height = ops.cast(shape[1], "float32")
        width = ops.cast(shape[2], "float32")
        area = keras.random.uniform((n,), self.scale[0], self.scale[1],
                                    seed=self.seed_generator)
        log_r = keras.random.uniform((n,), math.log(self.ratio[0]), math.log(self.ratio[1]),
                                     seed=self.seed_generator)
        r = ops.exp(log_r)
        w_frac = ops.minimum(ops.sqrt(area * r), 1.0)
        h_frac = ops.minimum(ops.sqrt(area / r), 1.0)
        offsets = keras.random.uniform((n, 2), 0.0, 1.0, seed=self.seed_generator)
        top = offsets[:, 0] * (1.0 - h_frac) * height
        left = offsets[:, 1] * (1.0 - w_frac) * width
        zeros = ops.zeros_like(area)
        # Output pixel (x, y) samples input (w_frac * x + left, h_frac * y + top).
        transform = ops.stack([w_frac, zeros, left, zeros, h_frac, top, zeros, zeros], axis=1)
        out = ops.image.affine_transform(ops.cast(images, "float32"), transform,
                                         interpolation="bilinear", fill_mode="reflect")
        return ops.cast(out, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, ratio=self.ratio, seed=self.seed)
        return config


def resolve_options(augment) -> dict:
    """Turn ``None``/``False``/a policy name/an options dict into an options dict."""
    if augment is None or augment is False:
        return {}
    if augment is True:
        augment = "default"
    if isinstance(augment, str):
        if augment not in POLICIES:
            raise UserInputError(
                f"Unknown augmentation policy {augment!r}. Known: {', '.join(POLICIES)}. "
                "Or pass a dict of options, e.g. {'flip': True, 'rotation': 0.1}."
            )
        return dict(POLICIES[augment])
    if isinstance(augment, Mapping):
        options = dict(augment)
        policy = options.pop("policy", "none")
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise UserInputError(
                f"Unknown augmentation option(s) {unknown}. Known: {', '.join(OPTION_KEYS)}."
            )
        merged = resolve_options(policy)
        merged.update(options)
        return {k: v for k, v in merged.items() if v not in (None, False, 0, 0.0)}
    raise UserInputError(
        "augment must be None, a policy name (none, light, default, strong) or a dict "
        f"of options. Received: augment={augment!r}"
    )


def _factor(options: dict, key: str) -> float:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise UserInputError(
            f"Augmentation option {key!r} must be a non-negative number. Received: {value!r}"
        )
    return float(value)


def _seeds(seed: int | None):
    """A distinct seed per layer: layers sharing one seed would draw correlated values."""
    k = 0
    while True:
        yield None if seed is None else seed + k
        k += 1


def _image_layers(options: dict, seed: int | None) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = []
    seeds = _seeds(seed)
    if "random_resized_crop" in options:
        scale = options["random_resized_crop"]
        scale = (0.35, 1.0) if scale is True else tuple(scale)
        layers.append(RandomResizedCrop(scale=scale, seed=next(seeds),
                                        name="random_resized_crop"))
    if "flip" in options:
        mode = options["flip"]
        mode = "horizontal" if mode is True else mode
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise UserInputError(
                "flip must be True, 'horizontal', 'vertical' or 'horizontal_and_vertical'. "
                f"Received: {mode!r}"
            )
        layers.append(keras.layers.RandomFlip(mode, seed=next(seeds), name="random_flip"))
    if "rotation" in options:
        layers.append(keras.layers.RandomRotation(_factor(options, "rotation"),
                                                  seed=next(seeds), name="random_rotation"))
    if "zoom" in options:
        layers.append(keras.layers.RandomZoom(_factor(options, "zoom"), seed=next(seeds),
                                              name="random_zoom"))
    if "translation" in options:
        f = _factor(options, "translation")
        layers.append(keras.layers.RandomTranslation(f, f, seed=next(seeds),
                                                     name="random_translation"))
    if "contrast" in options:
        layers.append(keras.layers.RandomContrast(_factor(options, "contrast"),
                                                  value_range=(0, 255), seed=next(seeds),
                                                  name="random_contrast"))
    if "brightness" in options:
        layers.append(keras.layers.RandomBrightness(_factor(options, "brightness"),
                                                    value_range=(0, 255), seed=next(seeds),
                                                    name="random_brightness"))
    if "rand_augment" in options:
        ops = options["rand_augment"]
        ops = 2 if ops is True else int(ops)
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=ops,
                                               seed=next(seeds), name="rand_augment"))
    return layers


def augmentation_layers(policy_or_options="default", *, seed: int | None = None,
                        name: str = "augmentation") -> keras.Sequential:
    """Keras layers for augmentation inside a model (runs on the accelerator).

    Args:
        policy_or_options: a policy name or an options dict (see module doc).
            MixUp/CutMix are refused here: they need labels, use the data source's
            ``augment=`` instead.
        seed: random seed for the layers.
        name: name of the returned ``keras.Sequential``.

    Returns:
        A ``keras.Sequential`` of random preprocessing layers (identity at
        inference); empty for ``"none"``.

    Raises:
        ValueError: unknown policy or option, or MixUp/CutMix requested.

    Example:
        >>> aug = ktl.data.augmentation_layers("light")
        >>> x = aug(images, training=True)
    """
    options = resolve_options(policy_or_options)
    mixing = [k for k in _MIXING if k in options]
    if mixing:
        raise UserInputError(
            f"{', '.join(mixing)} mix labels too, so they cannot run as model layers. "
            "Pass them to the data source instead, e.g. image_folder(..., augment={'mixup': 0.2})."
        )
    return keras.Sequential(_image_layers(options, seed), name=name)


def apply_augmentation(ds: tf.data.Dataset, augment, *, num_classes: int | None = None,
                       seed: int | None = None,
                       deterministic: bool | None = None) -> tuple[tf.data.Dataset, bool]:
    """Map random augmentation over a dataset of ``(images, labels)`` batches.

    Call it after ``cache()`` and ``batch()``: the layers see a fresh random
    draw per batch, per epoch.

    Args:
        ds: batched dataset of float32 ``[0, 255]`` images and labels.
        augment: a policy name, an options dict, or ``None``.
        num_classes: needed for MixUp/CutMix (int labels become one-hot).
        seed: random seed for the layers.
        deterministic: passed to the parallel ``map`` (``False``: faster, any order).

    Returns:
        ``(dataset, augmented)``; ``augmented`` is False when nothing applies
        (when True, it is also recorded: :func:`kerastl.data.info.is_augmented`).
    """
    options = resolve_options(augment)
    if not options:
        return ds, False
    layers = _image_layers(options, seed)
    seeds = _seeds(None if seed is None else seed + 1000)
    mixers = []
    if "mixup" in options:
        mixers.append(keras.layers.MixUp(alpha=_factor(options, "mixup"), seed=next(seeds)))
    if "cutmix" in options:
        mixers.append(keras.layers.CutMix(factor=_factor(options, "cutmix"), seed=next(seeds)))
    if mixers and not num_classes:
        raise UserInputError("MixUp/CutMix need num_classes to one-hot the labels.")
    pipeline = keras.Sequential(layers) if layers else None

    def augment_batch(images, labels):
        if pipeline is not None:
            images = pipeline(images, training=True)
        if mixers:
            if labels.shape.rank == 1:
                labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
            labels = tf.cast(labels, tf.float32)
            for mixer in mixers:
                out = mixer({"images": images, "labels": labels}, training=True)
                images, labels = out["images"], out["labels"]
        return tf.cast(images, tf.float32), labels

    augmented = ds.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)
    return describe(augmented, augmented=True), True


def place_augmentation(augment, augment_on: str, seed: int | None = None):
    """Decide where augmentation runs for a data source.

    Args:
        augment: ``None``, a policy name or an options dict.
        augment_on: ``"data"`` (tf.data, CPU) or ``"model"`` (Keras layers that
            the caller puts at the start of the model, on the accelerator).
        seed: random seed for the layers.

    Returns:
        ``(augment for the pipeline or None, keras.Sequential for the model or None)``.

    Raises:
        ValueError: a bad ``augment_on``, policy or option.
    """
    if augment_on not in ("data", "model"):
        raise UserInputError(f"augment_on must be 'data' or 'model'. Received: {augment_on!r}")
    options = resolve_options(augment)
    if augment_on == "data" or not options:
        return augment, None
    return None, augmentation_layers(augment, seed=seed)


def mixes_labels(augment) -> bool:
    """True when ``augment`` includes MixUp or CutMix (labels become one-hot floats)."""
    return any(k in resolve_options(augment) for k in _MIXING)


def class_weights(labels_or_counts) -> dict[int, float]:
    """Balanced class weights ``n / (num_classes * count)`` for ``model.fit(class_weight=)``.

    Args:
        labels_or_counts: a :class:`~kerastl.data.Splits` (uses its
            ``class_counts``), a dict ``{class_index: count}``, or a 1-D array of
            integer labels, one per example.

    Returns:
        ``{class_index: weight}``; a class with no examples gets weight 0.

    Raises:
        ValueError: empty input, negative counts, or non-integer labels.

    Example:
        >>> model.fit(splits.train, class_weight=ktl.data.class_weights(splits))
    """
    from kerastl.data.splits import Splits

    if isinstance(labels_or_counts, Splits):
        counts = dict(enumerate(labels_or_counts.class_counts))
    elif isinstance(labels_or_counts, Mapping):
        counts = {int(k): int(v) for k, v in labels_or_counts.items()}
    elif isinstance(labels_or_counts, (Sequence, np.ndarray, tf.Tensor)):
        labels = np.asarray(labels_or_counts)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise UserInputError(
                "class_weights needs a 1-D array of integer labels, a {class: count} dict or "
                f"a Splits. Received an array of shape {labels.shape} and dtype {labels.dtype}."
            )
        if labels.size and labels.min() < 0:
            raise UserInputError("class_weights: labels must be non-negative class indices.")
        counts = dict(enumerate(np.bincount(labels).tolist())) if labels.size else {}
    else:
        raise UserInputError(
            "class_weights needs labels, a {class: count} dict or a Splits. "
            f"Received: {type(labels_or_counts).__name__}"
        )
    if not counts or sum(counts.values()) == 0:
        raise UserInputError("class_weights: no examples to count.")
    if min(counts.values()) < 0:
        raise UserInputError("class_weights: counts must be non-negative.")
    total = sum(counts.values())
    present = sum(1 for c in counts.values() if c > 0)
    return {k: (total / (present * c) if c > 0 else 0.0) for k, c in sorted(counts.items())}
