"""Frozen-feature caching: run a frozen backbone once, train the head on its outputs.

While the backbone is frozen and the training data is not randomly augmented,
every epoch would push the same images through the same function; computing
the features once turns each later epoch into a few matrix products.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from kerastl.data.pipeline import keep_pass_counter, reshuffled
from kerastl.data.splits import check_batch_size
from kerastl.errors import DataError, UserInputError

# Feature arrays larger than this stream from Python instead of becoming a
# graph constant (which is limited to 2 GiB).
_MAX_CONSTANT_BYTES = 1024**3


def inference_function(model, image_spec):
    """``model(images, training=False)`` as one traced ``tf.function`` for every batch size.

    One trace for every batch (the last, smaller one included): tracing a
    backbone costs about as much as running it over a thousand small images,
    and calling it eagerly batch after batch grows the process (see
    :func:`kerastl.reports.report.predict_dataset`).

    Args:
        model: any Keras model or layer.
        image_spec: the ``tf.TensorSpec`` of a batch of inputs (its batch
            dimension is left free); another spec traces once per shape.
    """
    signature = None
    if isinstance(image_spec, tf.TensorSpec) and image_spec.shape.rank is not None:
        signature = [tf.TensorSpec((None,) + tuple(image_spec.shape[1:]), image_spec.dtype)]

    @tf.function(input_signature=signature, reduce_retracing=signature is None)
    def forward(images):
        return model(images, training=False)

    return forward


def extract_features(backbone: keras.Model, dataset: tf.data.Dataset, *,
                     verbose="auto") -> tuple[np.ndarray, np.ndarray]:
    """Run ``backbone`` (in inference mode) once over ``dataset``.

    Args:
        backbone: a Keras model (typically frozen, from ``build_backbone``).
        dataset: batches of ``(images, labels)`` (extra elements such as sample
            weights are refused). Each batch is read once, so labels stay
            aligned even when the dataset shuffles.
        verbose: ``0``/``False`` silent; ``1``/``True``/``"auto"``: a progress bar.

    Returns:
        ``(features, labels)`` as numpy arrays with the same first dimension.

    Raises:
        ValueError: the dataset yields something other than ``(images, labels)``
            pairs, or nothing at all.

    Example:
        >>> feats, labels = extract_features(backbone, splits.train.map(...))
    """
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise UserInputError(
            "extract_features needs a dataset of (images, labels) batches. "
            f"Received element_spec={spec!r}"
        )

    forward = inference_function(backbone, spec[0])
    steps = int(dataset.cardinality())
    show = verbose not in (0, False, None)
    bar = keras.utils.Progbar(steps if steps > 0 else None, unit_name="batch") if show else None
    feats, labels = [], []
    for i, (images, batch_labels) in enumerate(dataset):
        feats.append(np.asarray(forward(images)))
        labels.append(np.asarray(batch_labels))
        if bar is not None:
            bar.update(i + 1)
    if not feats:
        raise DataError("extract_features: the dataset is empty.")
    return np.concatenate(feats), np.concatenate(labels)


def features_dataset(features: np.ndarray, labels: np.ndarray, *, batch_size: int,
                     shuffle: bool = True, seed: int | None = None,
                     buffer_size: int | None = None) -> tf.data.Dataset:
    """Batches of ``(features, labels)``, reshuffled each epoch when ``shuffle``.

    Args:
        features: ``(N, ...)`` array from :func:`extract_features`.
        labels: ``(N, ...)`` labels aligned with ``features``.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch.
        seed: seed of the shuffle.
        buffer_size: shuffle buffer (default: all examples). With the
            ``seed`` and ``buffer_size`` of a kerastl image pipeline and
            features in its unshuffled order, the batches are the pipeline's.

    Returns:
        A prefetched ``tf.data.Dataset`` with known cardinality.

    Raises:
        ValueError: mismatched lengths, empty arrays or a bad batch size.
    """
    features = np.asarray(features)
    labels = np.asarray(labels)
    n = features.shape[0] if features.ndim else 0
    if n == 0 or labels.shape[:1] != (n,):
        raise UserInputError(
            "features_dataset needs non-empty features and labels of the same length. "
            f"Received features {features.shape} and labels {labels.shape}."
        )
    check_batch_size(batch_size)
    if features.nbytes + labels.nbytes <= _MAX_CONSTANT_BYTES:
        ds = tf.data.Dataset.from_tensor_slices((features, labels))
        if shuffle:
            ds = reshuffled(ds, buffer_size=buffer_size or n, seed=seed, cardinality=n)
        ds = keep_pass_counter(ds.batch(batch_size), ds)
    else:
        rng = np.random.default_rng(seed)

        def batches():
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_size):
                idx = np.sort(order[start:start + batch_size])
                yield features[idx], labels[idx]

        signature = (tf.TensorSpec((None,) + features.shape[1:], tf.as_dtype(features.dtype)),
                     tf.TensorSpec((None,) + labels.shape[1:], tf.as_dtype(labels.dtype)))
        ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
        ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(n / batch_size)))
    return keep_pass_counter(ds.prefetch(tf.data.AUTOTUNE), ds)
