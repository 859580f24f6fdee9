"""The :class:`TextSplits` container every text source returns, and :func:`from_texts`.

Shared by the sources of :mod:`kerastl.data.text` and :mod:`kerastl.data.corpora`:
the argument checks, the seeded sample and split (:mod:`kerastl.data.text_labels`)
and the ``(tf.string [B], int32 [B])`` datasets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kerastl.config import DEFAULT_SEED
from kerastl.data.splits import check_batch_size, check_fraction
from kerastl.data.text_files import decode_text
from kerastl.data.text_labels import class_indices, cut_splits, sample_per_class
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

_SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class TextSplits:
    """Datasets of ``(tf.string [B], int32 [B])`` batches, the texts, and their metadata.

    Attributes:
        train: training dataset (batched, prefetched; reshuffled each epoch
            when the source's ``shuffle``), or None.
        val: validation dataset or ``None``.
        test: test dataset or ``None``.
        class_names: class names; label ``i`` is ``class_names[i]``.
        skipped: ``(path, reason)`` for every file, row or text not used.
        counts: texts per split, e.g. ``{"train": 80, "val": 20}`` (empty splits left out).
        class_counts: texts per class in ``train`` (index = label).
        train_texts, train_labels, val_texts, val_labels, test_texts, test_labels:
            the texts and int labels of each split, in the order the val and
            test datasets yield them (``train`` is shuffled).
        validation_split: the fraction cut for validation (None: not cut here).
        seed: seed of the split, the sampling and the shuffle.
        label_mode: ``"int"``.
        task: ``"text"``.
    """

    train: tf.data.Dataset | None
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    class_counts: list[int] = dataclasses.field(default_factory=list)
    train_texts: list[str] = dataclasses.field(default_factory=list, repr=False)
    train_labels: list[int] = dataclasses.field(default_factory=list, repr=False)
    val_texts: list[str] = dataclasses.field(default_factory=list, repr=False)
    val_labels: list[int] = dataclasses.field(default_factory=list, repr=False)
    test_texts: list[str] = dataclasses.field(default_factory=list, repr=False)
    test_labels: list[int] = dataclasses.field(default_factory=list, repr=False)
    validation_split: float | None = None
    seed: int | None = None
    label_mode: str = "int"
    task: str = "text"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_limit(value, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserInputError(f"{name} must be a positive int or None. Received: {name}={value!r}")
    return value


def check_options(validation_split, test_split, batch_size, max_per_class, max_chars):
    """The checks every text source shares; returns ``(validation, test)`` fractions."""
    val = check_fraction(validation_split)
    try:
        test = check_fraction(test_split)
    except UserInputError:
        raise UserInputError("test_split must be a number in [0, 1). "
                             f"Received: test_split={test_split!r}") from None
    if val + test >= 1:
        raise UserInputError("validation_split + test_split must be below 1 (some texts must "
                             f"be left to train on). Received: {val} + {test}")
    check_batch_size(batch_size)
    check_limit(max_per_class, "max_per_class")
    check_limit(max_chars, "max_chars")
    return val, test


def text_dataset(texts: list[str], labels: list[int], *, training: bool, batch_size: int,
             shuffle: bool, seed: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(texts, dtype=tf.string),
                                             tf.constant(labels, dtype=tf.int32)))
    if training and shuffle:
        ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def log_skipped(skipped, total: int) -> None:
    for path, reason in skipped:
        log.warning("Skipping %s: %s", path, reason)
    if skipped:
        log.warning("Skipped %d of %d texts or files (see TextSplits.skipped).",
                    len(skipped), total)


def build_splits(parts: dict, class_names: list[str], skipped: list, *, batch_size: int,
           shuffle: bool, seed: int, validation_split, max_chars: int | None) -> TextSplits:
    """A :class:`TextSplits` of ``{split: (texts, labels)}``."""
    fields, datasets, counts = {}, {}, {}
    for split in _SPLITS:
        texts, labels = parts.get(split, ([], []))
        texts = [t[:max_chars] if max_chars else t for t in texts]
        labels = [int(y) for y in labels]
        fields[f"{split}_texts"], fields[f"{split}_labels"] = texts, labels
        datasets[split] = (text_dataset(texts, labels, training=split == "train",
                                    batch_size=batch_size, shuffle=shuffle, seed=seed)
                           if texts else None)
        if texts:
            counts[split] = len(texts)
    class_counts = np.bincount(np.asarray(fields["train_labels"], dtype=np.int64),
                               minlength=len(class_names)).tolist()
    empty = [c for c, n in zip(class_names, class_counts, strict=True) if n == 0]
    if empty:
        log.warning("No training text for class(es) %s.", empty)
    return TextSplits(train=datasets["train"], val=datasets["val"], test=datasets["test"],
                      class_names=list(class_names), skipped=skipped, counts=counts,
                      class_counts=class_counts, validation_split=validation_split, seed=seed,
                      **fields)


def from_lists(texts, labels, class_names, skipped, *, validation_split, test_split, seed,
                batch_size, max_per_class, max_chars, shuffle) -> TextSplits:
    """Sample, cut and build: the common end of from_texts, text_csv and fortunes."""
    keep = sample_per_class(labels, max_per_class, seed)
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    idx = cut_splits(labels, validation_split, test_split, seed)
    parts = {s: ([texts[i] for i in idx[s]], [labels[i] for i in idx[s]]) for s in _SPLITS}
    return build_splits(parts, class_names, skipped, batch_size=batch_size, shuffle=shuffle,
                  seed=seed, validation_split=validation_split, max_chars=max_chars)


def _as_list(values, name: str) -> list:
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise UserInputError(f"{name} must be a list (or array) with one entry per text. "
                             f"Received: {type(values).__name__}")
    return values.tolist() if hasattr(values, "tolist") else list(values)


def from_texts(texts: Sequence[str], labels: Sequence, *,
               class_names: Sequence[str] | None = None, validation_split: float = 0.2,
               test_split: float = 0.0, seed: int = DEFAULT_SEED, batch_size: int = 32,
               max_per_class: int | None = None, max_chars: int | None = None,
               shuffle: bool = True) -> TextSplits:
    """Make :class:`TextSplits` from Python lists of texts and labels.

    Empty and white-space-only texts are skipped (``("texts[i]", "empty
    text")`` in ``skipped``); ``bytes`` are decoded as UTF-8 (or skipped with
    the reason).

    Args:
        texts: the texts (``str``, or UTF-8 ``bytes``).
        labels: one per text: all ints (class indices) or all strings (class names).
        class_names: the classes in label order. Default: ints ``i`` are
            named ``str(i)`` (``0 ... max``); strings are sorted (numerically
            when every label is an integer, so ``"2"`` comes before ``"10"``).
        validation_split, test_split, seed, batch_size, max_per_class,
            max_chars, shuffle: as in :func:`text_folder`.

    Returns:
        :class:`TextSplits`.

    Raises:
        UserInputError: lengths differ, a text is not a string, labels mix
            kinds, a label is not in ``class_names``, or a bad argument.
        DataError: fewer than two classes, or no usable text.

    Example:
        >>> splits = ktl.data.from_texts(["great film", "dull", ...], ["pos", "neg", ...])
    """
    texts, labels = _as_list(texts, "texts"), _as_list(labels, "labels")
    if len(texts) != len(labels):
        raise UserInputError(f"texts and labels must have the same length. Received: "
                             f"{len(texts)} texts, {len(labels)} labels")
    if not texts:
        raise DataError("texts is empty: from_texts needs texts of at least two classes.")
    fraction, test_fraction = check_options(validation_split, test_split, batch_size,
                                             max_per_class, max_chars)
    indices, names = class_indices(labels, class_names)
    skipped, kept, kept_labels = [], [], []
    for i, text in enumerate(texts):
        reason = None
        if isinstance(text, bytes):
            text, reason = decode_text(text)
        elif not isinstance(text, str):
            raise UserInputError(f"texts[{i}] is {type(text).__name__}, not a string. "
                                 f"Received: {text!r:.80}")
        if text is not None and not text.strip():
            reason = "empty text"
        if reason is not None:
            skipped.append((f"texts[{i}]", reason))
            continue
        kept.append(text.strip())
        kept_labels.append(indices[i])
    log_skipped(skipped, len(texts))
    if not kept:
        raise DataError(f"No usable text: all {len(texts)} texts were skipped "
                        f"({skipped[0][1]}, ...).")
    return from_lists(kept, kept_labels, names, skipped, validation_split=fraction,
                       test_split=test_fraction, seed=seed, batch_size=batch_size,
                       max_per_class=max_per_class, max_chars=max_chars, shuffle=shuffle)
