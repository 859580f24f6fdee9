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

import logging
import os
from collections.abc import Sequence

import numpy as np

from kerastl.config import DEFAULT_SEED
from kerastl.data.corpora import FORTUNE_TOPICS, bbc_news_dir, fortunes, fortunes_dir
from kerastl.data.folders import _class_entries, _find_split_dirs
from kerastl.data.splits import check_class_name
from kerastl.data.text_csv import read_text_csv
from kerastl.data.text_files import (
    DEFAULT_MAX_BYTES,
    check_encoding,
    check_max_bytes,
    no_usable_file,
    read_split_folder,
)
from kerastl.data.text_labels import class_indices, cut_splits
from kerastl.data.text_splits import (
    TextSplits,
    build_splits,
    check_options,
    from_lists,
    from_texts,
    log_skipped,
)
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

__all__ = ["FORTUNE_TOPICS", "TextSplits", "bbc_news_dir", "fortunes", "fortunes_dir",
           "from_texts", "text_csv", "text_folder"]

_SPLITS = ("train", "val", "test")


def _check_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not exts:
        raise UserInputError("extensions must name at least one file extension, e.g. ('.txt',)")
    return exts


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
    fraction, test_fraction = check_options(validation_split, test_split, batch_size,
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
    log_skipped(skipped, sum(len(t) for t, _ in parts.values()) + len(skipped))
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
    return build_splits(parts, class_names, skipped, batch_size=batch_size, shuffle=shuffle, seed=seed,
                  validation_split=None if "val" in split_dirs else fraction,
                  max_chars=max_chars)


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
    fraction, test_fraction = check_options(validation_split, test_split, batch_size,
                                             max_per_class, max_chars)
    file = os.fspath(path)
    rows, skipped = read_text_csv(file, text_column, label_column,
                                  encoding=check_encoding(encoding), delimiter=delimiter)
    log_skipped(skipped, len(rows) + len(skipped))
    if not rows:
        raise DataError(f"No usable row in {file!r} ({len(skipped)} skipped"
                        + (f", e.g. {skipped[0][1]}" if skipped else "") + ").")
    indices, names = class_indices([label for _, label in rows], class_names)
    return from_lists([text.strip() for text, _ in rows], indices, names, skipped,
                       validation_split=fraction, test_split=test_fraction, seed=seed,
                       batch_size=batch_size, max_per_class=max_per_class,
                       max_chars=max_chars, shuffle=shuffle)
