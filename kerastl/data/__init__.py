"""Input pipelines: image folders, TFDS, arrays, text; augmentation; frozen-feature caching.

Every source returns a :class:`Splits` of ``tf.data`` datasets yielding
``(float32 [0, 255] images (B, H, W, 3), int32 labels)`` batches, plus the
metadata a training loop needs (class names, counts, skipped files, whether
the training set is randomly augmented).

Example:
    >>> splits = ktl.data.image_folder("photos/", image_size=224, augment="light")
    >>> splits.class_names, splits.counts
    >>> for path, reason in splits.skipped:   # bad files, never a crash mid-fit
    ...     print(path, reason)
    >>> model.fit(splits.train, validation_data=splits.val,
    ...           class_weight=ktl.data.class_weights(splits))

The training pipeline is ``read -> decode (parallel) -> resize -> cache ->
shuffle -> batch -> augment -> prefetch``: images are cached as uint8 after
resizing, and augmentation (Keras preprocessing layers) runs after the cache
so each epoch draws fresh randomness. ``augment_on="model"`` instead returns
the layers in ``Splits.augmentation`` to run on the accelerator.

Text (:mod:`kerastl.data.text`): :func:`text_folder` (one subfolder of
``.txt`` files per class), :func:`text_csv` (a text column and a label column)
and :func:`from_texts` (Python lists) return a :class:`TextSplits` of
``(tf.string [B], int32 [B])`` batches with the same metadata, plus the texts
themselves (``train_texts``, ``train_labels``, ...); binary, empty,
non-UTF-8 and oversized files are skipped with a reason, never decoded by guess.

Frozen-feature caching (used by ``ktl.fine_tune(cache_features="auto")``):
:func:`extract_features` runs a frozen backbone once over a dataset and
:func:`features_dataset` batches the result for training the head.

What kerastl knows about a dataset it built (augmented? its shuffle's pass
counter?) is a :class:`DatasetInfo` kept beside the dataset, not on it: a
dataset derived by ``.map()`` inherits the augmentation but not the order
(:mod:`kerastl.data.info`); :func:`describe` states it for any dataset.
"""

from kerastl.data.arrays import from_arrays
from kerastl.data.augment import (
    POLICIES,
    RandomResizedCrop,
    apply_augmentation,
    augmentation_layers,
    class_weights,
)
from kerastl.data.features import extract_features, features_dataset
from kerastl.data.folders import image_folder
from kerastl.data.info import DatasetInfo, dataset_info, describe, is_augmented
from kerastl.data.splits import Splits, stratified_split
from kerastl.data.text import TextSplits, from_texts, text_csv, text_folder
from kerastl.data.tfds import from_tfds

__all__ = [
    "DatasetInfo",
    "POLICIES",
    "RandomResizedCrop",
    "Splits",
    "TextSplits",
    "apply_augmentation",
    "augmentation_layers",
    "class_weights",
    "dataset_info",
    "describe",
    "extract_features",
    "features_dataset",
    "from_arrays",
    "from_texts",
    "from_tfds",
    "image_folder",
    "is_augmented",
    "stratified_split",
    "text_csv",
    "text_folder",
]
