"""The :class:`Splits` container returned by every data source."""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass
class Splits:
    """Datasets of ``(float32 [0, 255] images, labels)`` batches, and their metadata.

    Attributes:
        train: training dataset (batched, prefetched).
        val: validation dataset or ``None``.
        test: test dataset or ``None``.
        class_names: sorted class names; label ``i`` is ``class_names[i]``.
        skipped: ``(path, reason)`` for every file that could not be used.
        counts: number of examples per split, e.g. ``{"train": 800, "val": 200}``.
        image_size: ``(height, width)`` of the images.
        augmented: True when ``train`` applies random augmentation.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    augmented: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
