"""Input pipelines: image folders, TFDS, arrays; augmentation; frozen-feature caching.

Every source returns a :class:`Splits` of ``tf.data`` datasets yielding
``(float32 [0, 255] images (B, H, W, 3), int32 labels)`` batches.
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
from kerastl.data.splits import Splits, stratified_split
from kerastl.data.tfds import from_tfds

__all__ = [
    "POLICIES",
    "RandomResizedCrop",
    "Splits",
    "apply_augmentation",
    "augmentation_layers",
    "class_weights",
    "extract_features",
    "features_dataset",
    "from_arrays",
    "from_tfds",
    "image_folder",
    "stratified_split",
]
