"""Text data sources: class folders of ``.txt`` files, Python lists and CSV files.

Every source returns a :class:`TextSplits` of ``tf.data`` datasets yielding
``(tf.string [B], int32 [B])`` batches, the raw Python lists they were made
from (text training caches embeddings from them; reports quote them) and the
metadata of :class:`kerastl.data.Splits`: class names, counts, class counts
and the ``(path, reason)`` of everything skipped.

Splits are cut as for images: a seeded stratified split
(:func:`kerastl.data.stratified_split`) that depends only on the examples, in
order, and ``seed``. Texts lose their surrounding white space; nothing else
about them changes.

Example:
    >>> splits = ktl.data.text_folder("news/", validation_split=0.2)  # news/<class>/*.txt
    >>> splits.class_names, splits.counts
    >>> for path, reason in splits.skipped:   # binary, empty, not UTF-8, too large
    ...     print(path, reason)
    >>> splits = ktl.data.text_csv("reviews.csv", text_column="review", label_column="stars")
    >>> splits = ktl.data.from_texts(["great", "awful", ...], ["pos", "neg", ...])

Offline corpora for demos and tests (:mod:`kerastl.data.corpora`):
:func:`bbc_news_dir` (a class folder of BBC News articles) and :func:`fortunes`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kerastl.config import DEFAULT_SEED
from kerastl.data.corpora import FORTUNE_TOPICS, bbc_news_dir, fortunes, fortunes_dir
from kerastl.data.folders import _class_entries, _find_split_dirs
from kerastl.data.splits import check_batch_size, check_class_name, check_fraction
from kerastl.data.text_csv import read_text_csv
from kerastl.data.text_files import (
    DEFAULT_MAX_BYTES,
    check_encoding,
    check_max_bytes,
    decode_text,
    no_usable_file,
    read_split_folder,
)
from kerastl.data.text_labels import class_indices, cut_splits, sample_per_class
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

__all__ = ["FORTUNE_TOPICS", "TextSplits", "bbc_news_dir", "fortunes", "fortunes_dir",
           "from_texts", "text_csv", "text_folder"]

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


def _check_limit(value, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserInputError(f"{name} must be a positive int or None. Received: {name}={value!r}")
    return value


def _check_options(validation_split, test_split, batch_size, max_per_class, max_chars):
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
    _check_limit(max_per_class, "max_per_class")
    _check_limit(max_chars, "max_chars")
    return val, test


def _check_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not exts:
        raise UserInputError("extensions must name at least one file extension, e.g. ('.txt',)")
    return exts


def _dataset(texts: list[str], labels: list[int], *, training: bool, batch_size: int,
             shuffle: bool, seed: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(texts, dtype=tf.string),
                                             tf.constant(labels, dtype=tf.int32)))
    if training and shuffle:
        ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _log_skipped(skipped, total: int) -> None:
    for path, reason in skipped:
        log.warning("Skipping %s: %s", path, reason)
    if skipped:
        log.warning("Skipped %d of %d texts or files (see TextSplits.skipped).",
                    len(skipped), total)


def _build(parts: dict, class_names: list[str], skipped: list, *, batch_size: int,
           shuffle: bool, seed: int, validation_split, max_chars: int | None) -> TextSplits:
    """A :class:`TextSplits` of ``{split: (texts, labels)}``."""
    fields, datasets, counts = {}, {}, {}
    for split in _SPLITS:
        texts, labels = parts.get(split, ([], []))
        texts = [t[:max_chars] if max_chars else t for t in texts]
        labels = [int(y) for y in labels]
        fields[f"{split}_texts"], fields[f"{split}_labels"] = texts, labels
        datasets[split] = (_dataset(texts, labels, training=split == "train",
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


def _from_lists(texts, labels, class_names, skipped, *, validation_split, test_split, seed,
                batch_size, max_per_class, max_chars, shuffle) -> TextSplits:
    """Sample, cut and build: the common end of from_texts, text_csv and fortunes."""
    keep = sample_per_class(labels, max_per_class, seed)
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    idx = cut_splits(labels, validation_split, test_split, seed)
    parts = {s: ([texts[i] for i in idx[s]], [labels[i] for i in idx[s]]) for s in _SPLITS}
    return _build(parts, class_names, skipped, batch_size=batch_size, shuffle=shuffle,
                  seed=seed, validation_split=validation_split, max_chars=max_chars)


def text_folder(path: str | os.PathLike, *, validation_split: float = 0.2,
                test_split: float = 0.0, seed: int = DEFAULT_SEED, batch_size: int = 32,
                max_per_class: int | None = None, max_chars: int | None = None,
                encoding: str = "utf-8", shuffle: bool = True,
                extensions: Sequence[str] = (".txt",),
                max_bytes: int = DEFAULT_MAX_BYTES) -> TextSplits:
    """Load a folder with one subfolder of ``.txt`` files per class, skipping bad files.

    Layouts, as :func:`kerastl.data.image_folder`: ``path/<class>/<name>.txt``
    (seeded stratified validation and test splits are cut from it), or
    ``path/train/<class>/...`` with optional ``val/`` (``valid/``,
    ``validation/``) and ``test/``. Class names are the sorted folder names.
    Only ``.txt`` files are read by default (``extensions`` widens that);
    hidden files and folders are ignored.

    Nothing is dropped silently and no bad file stops the load: each of these
    is listed in ``TextSplits.skipped`` with the reason, and logged —
    files of another extension (``"not a .txt file"``), binary files (a NUL
    byte, or the header of a PNG, JPEG, GIF, PDF, ZIP, gzip... file), UTF-16
    files, files that are not valid text in ``encoding`` (``"not UTF-8 text
    (byte 0xe9 at offset 4)"``; nothing is decoded with a guessed encoding),
    empty or white-space-only files, files over ``max_bytes``, unreadable
    files, broken links and link loops, FIFOs and devices (never opened).

    Args:
        path: the root folder.
        validation_split: fraction of the texts cut for validation when the
            folder has no ``val/``; 0 for none.
        test_split: fraction cut for test when the folder has no ``test/``.
        seed: seed of the splits, the ``max_per_class`` sample and the shuffle.
        batch_size: texts per batch.
        max_per_class: at most this many texts per class (in each split
            folder): a seeded random sample; the files not drawn are not read.
        max_chars: keep the first ``max_chars`` characters of each text
            (None: all of it).
        encoding: the files' encoding; with ``"utf-8"`` (the default) a
            leading byte-order mark is dropped.
        shuffle: shuffle the training set each epoch.
        extensions: file extensions read (case-insensitive).
        max_bytes: the largest file read (default 10 MB).

    Returns:
        :class:`TextSplits`.

    Raises:
        UserInputError: ``path`` is missing or not a folder; a bad argument.
        DataError: no class subfolder, a single class, or a class folder
            without one usable text file (named).

    Example:
        >>> splits = ktl.data.text_folder(ktl.data.text.bbc_news_dir(), max_per_class=20)
        >>> splits.class_names, splits.counts
        (['business', 'entertainment', 'politics', 'sports', 'tech'], {'train': 80, 'val': 20})
    """
    root = os.fspath(path)
    if not os.path.exists(root):
        raise UserInputError(f"Text folder not found: {root!r}. Expected a folder with one "
                             "subfolder of .txt files per class.")
    if not os.path.isdir(root):
        raise UserInputError(f"{root!r} is a file, not a folder. text_folder reads "
                             "<folder>/<class>/<name>.txt (for a CSV file use ktl.data.text_csv).")
    fraction, test_fraction = _check_options(validation_split, test_split, batch_size,
                                             max_per_class, max_chars)
    read = {"encoding": check_encoding(encoding), "max_bytes": check_max_bytes(max_bytes),
            "max_per_class": max_per_class}
    exts = _check_extensions(extensions)

    split_dirs = _find_split_dirs(root)
    class_root = split_dirs.get("train", root)
    class_names = [e.name for e in _class_entries(class_root, warn=False)]
    for name in class_names:
        check_class_name(name, f"class folder in {class_root!r}")
    if not class_names:
        raise DataError(f"No class subfolders in {class_root!r}. Expected "
                        f"{root}/<class>/<name>.txt, one subfolder per class.")
    if len(class_names) == 1:
        raise DataError(f"Only one class subfolder ({class_names[0]!r}) in {class_root!r}; a "
                        "classifier needs at least two. Add one subfolder per class.")
    rng = np.random.default_rng(seed)
    skipped: list[tuple[str, str]] = []
    parts = {}
    for split in _SPLITS:
        folder = split_dirs.get(split, root if split == "train" else None)
        parts[split] = (([], []) if folder is None
                        else read_split_folder(folder, class_names, exts, rng, skipped, **read))
    _log_skipped(skipped, sum(len(t) for t, _ in parts.values()) + len(skipped))
    present = set(parts["train"][1])
    for i, name in enumerate(class_names):
        if i not in present:
            raise no_usable_file(os.path.join(class_root, name), skipped, exts)

    texts, labels = parts["train"]
    idx = cut_splits(labels, 0.0 if "val" in split_dirs else fraction,
                     0.0 if "test" in split_dirs else test_fraction, seed)
    for split in ("val", "test"):
        if len(idx[split]):
            parts[split] = ([texts[i] for i in idx[split]], [labels[i] for i in idx[split]])
    parts["train"] = ([texts[i] for i in idx["train"]], [labels[i] for i in idx["train"]])
    return _build(parts, class_names, skipped, batch_size=batch_size, shuffle=shuffle, seed=seed,
                  validation_split=None if "val" in split_dirs else fraction,
                  max_chars=max_chars)


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
    fraction, test_fraction = _check_options(validation_split, test_split, batch_size,
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
    _log_skipped(skipped, len(texts))
    if not kept:
        raise DataError(f"No usable text: all {len(texts)} texts were skipped "
                        f"({skipped[0][1]}, ...).")
    return _from_lists(kept, kept_labels, names, skipped, validation_split=fraction,
                       test_split=test_fraction, seed=seed, batch_size=batch_size,
                       max_per_class=max_per_class, max_chars=max_chars, shuffle=shuffle)


def text_csv(path: str | os.PathLike, *, text_column: str = "text", label_column: str = "label",
             class_names: Sequence[str] | None = None, validation_split: float = 0.2,
             test_split: float = 0.0, seed: int = DEFAULT_SEED, batch_size: int = 32,
             max_per_class: int | None = None, max_chars: int | None = None,
             encoding: str = "utf-8", delimiter: str = ",", shuffle: bool = True) -> TextSplits:
    """Load a CSV file with a text column and a label column.

    Read with Python's ``csv`` module: quoted fields may hold commas, quotes
    (doubled) and line breaks. Rows are numbered as a spreadsheet shows them
    (the header is row 1; a multi-line row counts once). A row with an empty
    text or label, or with another number of fields than the header, is
    skipped: ``(path, "row 7: empty text")`` in ``skipped``. Blank lines are
    ignored.

    Args:
        path: the CSV file (header row first).
        text_column, label_column: the header names of the two columns.
        class_names: the classes in label order (default: the labels found,
            sorted as in :func:`from_texts`).
        encoding: the file's encoding (UTF-8 by default, with or without a BOM).
        delimiter: the field separator (``"\\t"`` for TSV).
        validation_split, test_split, seed, batch_size, max_per_class,
            max_chars, shuffle: as in :func:`text_folder`.

    Returns:
        :class:`TextSplits`; ``skipped`` paths are the CSV file.

    Raises:
        UserInputError: the file is missing or a folder; a bad argument.
        DataError: not text in ``encoding``, no header, a column is missing
            (the message lists the columns found), fewer than two classes.

    Example:
        >>> splits = ktl.data.text_csv("reviews.csv", text_column="review",
        ...                            label_column="sentiment")
    """
    fraction, test_fraction = _check_options(validation_split, test_split, batch_size,
                                             max_per_class, max_chars)
    file = os.fspath(path)
    rows, skipped = read_text_csv(file, text_column, label_column,
                                  encoding=check_encoding(encoding), delimiter=delimiter)
    _log_skipped(skipped, len(rows) + len(skipped))
    if not rows:
        raise DataError(f"No usable row in {file!r} ({len(skipped)} skipped"
                        + (f", e.g. {skipped[0][1]}" if skipped else "") + ").")
    indices, names = class_indices([label for _, label in rows], class_names)
    return _from_lists([text.strip() for text, _ in rows], indices, names, skipped,
                       validation_split=fraction, test_split=test_fraction, seed=seed,
                       batch_size=batch_size, max_per_class=max_per_class,
                       max_chars=max_chars, shuffle=shuffle)
