"""``from_arrays``: in-memory image arrays to train/val datasets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kerastl.config import DEFAULT_SEED
from kerastl.data import augment as augment_lib
from kerastl.data import decode, pipeline
from kerastl.data.splits import Splits, check_source_options, stratified_split
from kerastl.errors import DataError, UserInputError

# Arrays up to this size go into the graph as constants; larger ones stream
# from Python (a graph constant is limited to 2 GiB).
_MAX_CONSTANT_BYTES = 512 * 1024**2


def _check_images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] not in (1, 3):
        raise UserInputError(
            "from_arrays: x must be (N, H, W), (N, H, W, 1) or (N, H, W, 3). "
            f"Received shape {x.shape}."
        )
    if x.ndim not in (3, 4):
        raise UserInputError(
            "from_arrays: x must be (N, H, W), (N, H, W, 1) or (N, H, W, 3). "
            f"Received shape {x.shape}."
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise UserInputError(f"from_arrays: x must be numeric. Received dtype {x.dtype}.")
    if x.size and np.issubdtype(x.dtype, np.floating):
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 255 or not np.isfinite([lo, hi]).all():
            raise UserInputError(
                f"from_arrays: float images must be in [0, 255]; found [{lo:g}, {hi:g}]. "
                "Scale them first (e.g. x * 255 for [0, 1] data)."
            )
        if hi <= 1.0:
            import logging

            logging.getLogger(__name__).warning(
                "from_arrays: float images are all <= 1; kerastl expects [0, 255] pixels. "
                "Multiply by 255 if they are in [0, 1].")
    if x.ndim == 3:
        x = x[..., None]
    return x


def _check_labels(y, n: int, class_names):
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise UserInputError(
            f"from_arrays: y must be a 1-D array of {n} integer labels (one per image). "
            f"Received shape {y.shape}."
        )
    if n and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise UserInputError(f"from_arrays: labels must be integers. Received {y.dtype}.")
    if n and y.min() < 0:
        raise UserInputError("from_arrays: labels must be non-negative class indices.")
    num = int(y.max()) + 1 if n else 0
    if class_names is None:
        class_names = [str(i) for i in range(num)]
    else:
        class_names = [str(c) for c in class_names]
        if num > len(class_names):
            raise UserInputError(
                f"from_arrays: labels go up to {num - 1} but only {len(class_names)} "
                "class_names were given."
            )
    return y.astype(np.int32), class_names


def _dataset(x: np.ndarray, y: np.ndarray) -> tf.data.Dataset:
    if x.nbytes <= _MAX_CONSTANT_BYTES:
        return tf.data.Dataset.from_tensor_slices((x, y))

    def gen():
        yield from zip(x, y, strict=True)

    spec = (tf.TensorSpec(x.shape[1:], tf.as_dtype(x.dtype)), tf.TensorSpec((), tf.int32))
    ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
    return ds.apply(tf.data.experimental.assert_cardinality(len(x)))


def from_arrays(x, y, *, image_size, batch_size: int = 32, validation_split: float = 0.2,
                class_names: Sequence[str] | None = None, seed: int = DEFAULT_SEED, augment=None,
                resize: str = "stretch", cache="auto", shuffle: bool = True,
                deterministic: bool = False, augment_on: str = "data") -> Splits:
    """Datasets from in-memory images, split into train and val (stratified, seeded).

    Args:
        x: images ``(N, H, W)``, ``(N, H, W, 1)`` or ``(N, H, W, 3)``, uint8 or
            float in ``[0, 255]``; greyscale is repeated to RGB.
        y: ``(N,)`` integer labels.
        image_size: int or ``(height, width)``; images are resized to it.
        batch_size: examples per batch.
        validation_split: fraction for validation, in ``[0, 1)``; 0 for none.
        class_names: names of the classes (default ``"0"``, ``"1"``, ...).
        seed: seed of the split, the shuffle and the augmentation.
        augment: ``None``, a policy name or an options dict (training only).
        resize: ``"stretch"``, ``"crop"``, ``"pad"`` or ``"random_crop"``.
        cache: ``"auto"``, ``True``, ``False`` or a file prefix (resized images).
        shuffle: shuffle the training set each epoch.
        deterministic: keep a reproducible element order.
        augment_on: ``"data"`` (tf.data) or ``"model"`` (``Splits.augmentation``
            holds the layers to put in the model).

    Returns:
        :class:`Splits` with ``test=None``.

    Raises:
        ValueError: bad shapes, dtypes, value range or labels.

    Example:
        >>> (x, y), _ = keras.datasets.fashion_mnist.load_data()
        >>> splits = ktl.data.from_arrays(x, y, image_size=96)
    """
    x = _check_images(x)
    y, class_names = _check_labels(y, x.shape[0], class_names)
    if x.shape[0] == 0:
        raise DataError("from_arrays: no examples (x is empty).")
    size, fraction = check_source_options(image_size, resize, validation_split, batch_size)
    augment, model_augmentation = augment_lib.place_augmentation(augment, augment_on, seed)
    train_idx, val_idx = stratified_split(y.tolist(), fraction, seed)
    datasets, counts = {"val": None}, {}
    augmented = False
    for split, idx in (("train", train_idx), ("val", val_idx)):
        if idx.size == 0:
            continue
        training = split == "train"
        # Evaluation splits keep their order, so predictions line up with
        # the images (error grids, evaluation reports).
        ordered = deterministic or not training
        if training and shuffle:
            idx = np.random.default_rng(seed).permutation(idx)

        def prepare(image, label):
            image = tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image
            image = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0)
            return decode.resize_image(image, size, resize), label

        ds = _dataset(x[idx], y[idx]).map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                                          deterministic=ordered)
        ds, aug = pipeline.finish(
            ds, num_examples=int(idx.size), image_size=size, resize=resize,
            batch_size=batch_size, training=training, cache=cache, split=split,
            shuffle=shuffle, seed=seed, deterministic=ordered, augment=augment,
            num_classes=len(class_names),
            source_id=pipeline.fingerprint(x[idx].tobytes(), y[idx].tobytes())
            if isinstance(cache, str) and cache not in ("auto", "memory") else "")
        datasets[split] = ds
        counts[split] = int(idx.size)
        augmented = augmented or aug
    class_counts = np.bincount(y[train_idx], minlength=len(class_names)).tolist()
    return Splits(train=datasets["train"], val=datasets["val"], test=None,
                  class_names=class_names, counts=counts, image_size=size,
                  augmented=augmented,
                  label_mode="one_hot" if augment_lib.mixes_labels(augment) else "int",
                  class_counts=class_counts, augmentation=model_augmentation, resize=resize)
