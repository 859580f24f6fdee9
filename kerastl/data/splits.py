"""The :class:`Splits` container returned by every data source, and the split rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kerastl.data.info import describe
from kerastl.errors import DataError, UserInputError


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
        augmented: True when ``train`` applies random augmentation (also
            recorded for the dataset: :func:`kerastl.data.info.is_augmented`).
        label_mode: ``"int"`` (int32 class index), ``"multi_hot"`` (int32
            vector, multi-label) or ``"one_hot"`` (float32 soft labels, after
            MixUp/CutMix in the training pipeline; val/test stay ``"int"``).
        class_counts: examples per class in ``train`` (index = label).
        augmentation: with ``augment_on="model"``, the ``keras.Sequential`` of
            augmentation layers to put at the start of the model; else None.
        resize: how the images were resized to ``image_size`` (the source's
            ``resize``); a model trained on these splits is served the same way.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    augmented: bool = False
    label_mode: str = "int"
    class_counts: list[int] = dataclasses.field(default_factory=list)
    augmentation: Any = None
    resize: str = "stretch"

    def __post_init__(self):
        # Recorded beside the dataset (kerastl.data.info), so fine_tune(model,
        # splits.train, cache_features="auto") can tell that caching backbone
        # features would freeze the augmentation.
        if self.augmented and self.train is not None:
            try:
                describe(self.train, augmented=True)
            except TypeError:  # pragma: no cover - not weak-referenceable
                pass

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_batch_size(batch_size) -> int:
    """``batch_size`` if it is a positive int, else one clear error."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch_size must be a positive int. Received: {batch_size!r}")
    return batch_size


_BAD_NAME_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")  # control, undecodable, line breaks


def check_class_name(name: str, where: str = "class name") -> str:
    """``name`` if it is one printable line (it becomes a line of labels.txt), else a clear error.

    Raises:
        DataError: the name is empty, holds a newline, a control character or
            bytes that are not text, or starts or ends with white space.
    """
    import unicodedata

    bad = [c for c in name if unicodedata.category(c) in _BAD_NAME_CATEGORIES]
    if not name or bad or name != name.strip():
        why = (f"holds {', '.join(sorted({repr(c) for c in bad}))}" if bad
               else "is empty" if not name else "starts or ends with white space")
        raise DataError(f"The {where} {name!r} {why}; a class name must be one printable line "
                        "(it becomes a line of labels.txt). Rename it.")
    return name


def check_source_options(image_size, resize: str, validation_split: float, batch_size):
    """The checks every image source shares; returns ``(size, validation fraction)``."""
    from kerastl.data import decode

    size = decode.check_image_size(image_size)
    decode.check_resize_mode(resize)
    fraction = check_fraction(validation_split)
    check_batch_size(batch_size)
    return size, fraction


def check_fraction(validation_split: float) -> float:
    """Return ``validation_split`` as a float in ``[0, 1)`` or raise a clear error."""
    try:
        value = float(validation_split)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise UserInputError(
            "validation_split must be a number in [0, 1). "
            f"Received: validation_split={validation_split!r}"
        )
    return value


def stratified_split(keys: Sequence[Hashable], fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into train and validation, class by class.

    Each stratum (examples sharing a key, e.g. a class label) is shuffled by a
    generator seeded with ``seed`` and cut; the per-stratum validation counts
    are apportioned by largest remainder so the total is ``round(n * fraction)``
    and every stratum keeps at least one training example. The result depends
    only on ``keys`` (in order), ``fraction`` and ``seed``.

    Args:
        keys: one stratum key per example.
        fraction: share of examples that go to validation, in ``[0, 1)``.
        seed: seed of the shuffle.

    Returns:
        ``(train_indices, val_indices)``, each sorted ascending, disjoint.
    """
    n = len(keys)
    if fraction <= 0 or n == 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    strata: dict = {}
    for i, key in enumerate(keys):
        strata.setdefault(key, []).append(i)
    order = sorted(strata, key=repr)
    sizes = np.array([len(strata[k]) for k in order])
    ideal = sizes * fraction
    take = np.floor(ideal).astype(int)
    caps = np.maximum(sizes - 1, 0)
    take = np.minimum(take, caps)
    remaining = int(round(n * fraction)) - int(take.sum())
    # Largest fractional part first; ties go to the earlier stratum.
    for j in sorted(range(len(order)), key=lambda j: (-(ideal[j] - np.floor(ideal[j])), j)):
        if remaining <= 0:
            break
        if take[j] < caps[j]:
            take[j] += 1
            remaining -= 1
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for key, count in zip(order, take, strict=True):
        members = np.array(strata[key])
        val.extend(rng.permutation(members)[:count].tolist())
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx
