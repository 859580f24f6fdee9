"""``image_folder``: a folder of images on disk to train/val/test datasets."""

from __future__ import annotations

import logging
import os
import stat

import numpy as np

from kerastl.config import DEFAULT_SEED
from kerastl.data import augment as augment_lib
from kerastl.data import decode, header, pipeline, validate
from kerastl.data.labels_csv import read_labels_csv
from kerastl.data.splits import Splits, check_class_name, check_source_options, stratified_split
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

_SPLIT_DIRS = {"train": ("train", "training"), "val": ("val", "valid", "validation"),
               "test": ("test", "testing")}
_AUTO_PROGRESS_FILES = 5000


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _contains(folder: str, path: str) -> bool:
    """True if real path ``path`` is real path ``folder`` or inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _points_above(path: str) -> bool:
    """True for a symbolic link to the folder holding it or to one of that folder's ancestors."""
    return os.path.islink(path) and _contains(os.path.realpath(path),
                                              os.path.realpath(os.path.dirname(path)))


def _warn_link(path: str) -> None:
    log.warning("Skipping %s: a symbolic link to %s, which contains it (a loop); not "
                "followed", path, os.path.realpath(path))


def _regular_or_reason(path: str) -> str | None:
    """None for a regular file (links followed), else why it is skipped; never opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return f"cannot read file: {err.strerror or err}"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({header.file_kind(mode)}); never opened"


def _walk(folder: str, follow_links: bool, skipped: list) -> list[str]:
    """All non-hidden regular files under ``folder``, sorted; FIFOs, devices... go to ``skipped``.

    With ``follow_links``, a linked folder that holds ``folder`` (a loop) or
    was already walked (a duplicate) is skipped with a warning.
    """
    found = []
    top = os.path.realpath(folder)
    seen = {top}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=follow_links):
        kept = []
        for d in sorted(d for d in dirnames if not _hidden(d)):
            path = os.path.join(dirpath, d)
            real = os.path.realpath(path)
            if follow_links and os.path.islink(path) and (real in seen or _contains(real, top)):
                _warn_link(path)
                continue
            seen.add(real)
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(f for f in filenames if not _hidden(f)):
            path = os.path.join(dirpath, name)
            reason = _regular_or_reason(path)
            if reason is None:
                found.append(path)
            else:
                skipped.append((path, reason))
    return found


def _is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in header.FOLDER_EXTENSIONS


def _class_entries(folder: str, warn: bool) -> list[os.DirEntry]:
    """Non-hidden subfolders of ``folder`` (links to an enclosing folder left out), by name."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _hidden(entry.name) or not entry.is_dir():
            continue
        if _points_above(entry.path):
            if warn:
                _warn_link(entry.path)
            continue
        out.append(entry)
    return out


def _class_dirs(folder: str) -> list[str]:
    names = [e.name for e in _class_entries(folder, warn=False)]
    for name in names:
        check_class_name(name, f"class folder in {folder!r}")
    return names


def _find_split_dirs(root: str) -> dict[str, str]:
    entries = {e.name.lower(): e.path for e in os.scandir(root) if e.is_dir()}
    found = {}
    for split, names in _SPLIT_DIRS.items():
        for name in names:
            if name in entries:
                found[split] = entries[name]
                break
    return found if "train" in found else {}


def _list_class_folder(folder: str, class_names: list[str], follow_links: bool,
                       skipped: list) -> tuple[list[str], list[int]]:
    """``(paths, labels)`` of image-named files under ``folder/<class>/``."""
    index = {c: i for i, c in enumerate(class_names)}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not _hidden(entry.name) and not entry.is_dir():
            skipped.append((entry.path, _regular_or_reason(entry.path)
                            or "not inside a class subfolder"))
    paths, labels = [], []
    for entry in _class_entries(folder, warn=True):
        if entry.name not in index:
            raise DataError(
                f"Class folder {entry.path!r} is not among the training classes "
                f"{class_names}. Every split needs the same class subfolders."
            )
        for path in _walk(entry.path, follow_links, skipped):
            if _is_image_name(path):
                paths.append(path)
                labels.append(index[entry.name])
            else:
                skipped.append((path, _unsupported(path)))
    return paths, labels


def _unsupported(path: str) -> str:
    ext = os.path.splitext(path)[1] or "(no extension)"
    return (f"unsupported file type {ext!r} (images must be one of "
            f"{', '.join(header.FOLDER_EXTENSIONS)})")


def _from_csv(root, labels_csv, follow_links, skipped):
    rows, class_names = read_labels_csv(labels_csv, root)
    index = {c: i for i, c in enumerate(class_names)}
    listed = set()
    table = {"train": ([], []), "val": ([], []), "test": ([], [])}
    has_split = any(split for _, _, split in rows)
    for path, tags, split in rows:
        listed.add(path)
        if not os.path.exists(path):
            skipped.append((path, "listed in labels_csv but the file does not exist"))
            continue
        reason = _regular_or_reason(path)
        if reason is not None:
            skipped.append((path, reason))
            continue
        hot = np.zeros(len(class_names), dtype=np.int32)
        hot[[index[t] for t in tags]] = 1
        table[split or "train"][0].append(path)
        table[split or "train"][1].append(hot)
    csv_abs = os.path.abspath(labels_csv if os.path.isabs(labels_csv)
                              else os.path.join(root, labels_csv))
    for path in _walk(root, follow_links, []):
        norm = os.path.normpath(path)
        if norm not in listed and os.path.abspath(path) != csv_abs and _is_image_name(path):
            skipped.append((path, "image not listed in labels_csv"))
    return table, class_names, has_split


def _validated(paths, labels, skipped, max_pixels, verbose):
    checked, bad = validate.check_files(paths, max_pixels=max_pixels, verbose=verbose)
    skipped.extend(bad)
    keep = [i for i, c in enumerate(checked) if c is not None]
    return [checked[i] for i in keep], [labels[i] for i in keep]


def image_folder(path: str | os.PathLike, *, image_size, batch_size: int = 32,
                 validation_split: float = 0.2, seed: int = DEFAULT_SEED, augment=None,
                 resize: str = "stretch", cache="auto", labels_csv: str | None = None,
                 shuffle: bool = True, deterministic: bool = False,
                 augment_on: str = "data", max_pixels: int | None = None,
                 follow_links: bool = False, verbose="auto") -> Splits:
    """Load a folder of images as train/val/test datasets, skipping bad files.

    Layouts: ``path/<class>/<image>`` (a seeded stratified validation split is
    cut from it); or ``path/train/<class>/...`` with optional ``val/`` (or
    ``valid/``, ``validation/``) and ``test/``; or any files listed in a
    ``labels_csv`` (multi-label). Class names are the sorted folder names.

    Only regular files are read: FIFOs, devices and sockets are skipped with
    a reason, never opened. A class folder name must be one printable line.
    Every file is checked up front, in parallel: a cheap header check first
    (a file declaring more than ``max_pixels`` is refused without decoding it),
    then one decode. Unreadable files are logged and listed in
    ``Splits.skipped`` with the reason; greyscale, RGBA, CMYK, palette, 16-bit
    and animated (first frame) images are converted to RGB and kept.

    Args:
        path: the root folder.
        image_size: int or ``(height, width)`` of the output images.
        batch_size: examples per batch.
        validation_split: fraction of the training files used for validation
            when the folder has no ``val/``; 0 for none.
        seed: seed of the split, the shuffle and the augmentation.
        augment: ``None``, a policy (``"light"``, ``"default"``, ``"strong"``) or a
            dict of options (see :mod:`kerastl.data.augment`); training only.
        resize: ``"stretch"``, ``"crop"`` (central), ``"pad"`` or ``"random_crop"``
            (random window in training, central in val/test).
        cache: ``"auto"`` (memory when a split's decoded images fit in 128 MiB,
            else a temporary file cache removed when the process ends; see
            :func:`kerastl.data.pipeline.resolve_cache`), ``True``, ``False`` or a
            file prefix for an on-disk cache (kept).
        labels_csv: CSV of ``filename,labels`` (or one 0/1 column per class) for
            multi-label data; labels become int32 multi-hot vectors.
        shuffle: shuffle the training set each epoch.
        deterministic: keep a reproducible element order (slower); the split
            itself is always reproducible.
        augment_on: ``"data"`` (in tf.data, on the CPU) or ``"model"`` (no
            augmentation in the pipeline; ``Splits.augmentation`` holds the
            Keras layers to put in the model).
        max_pixels: refuse images whose header declares more pixels
            (decompression bombs); None: ``$KERASTL_MAX_PIXELS`` or 89,478,485
            (Pillow's default).
        follow_links: follow symbolic links to folders inside class folders
            (a link to a folder that contains it is never followed).
        verbose: progress bar for the file check; ``"auto"`` shows it above
            5000 files.

    Returns:
        :class:`Splits`; ``test`` is None unless the folder has ``test/``.

    Raises:
        ValueError: bad arguments, no class folders, or no readable image.

    Example:
        >>> splits = ktl.data.image_folder("flowers/", image_size=224, augment="light")
        >>> splits.class_names, splits.counts, splits.skipped
    """
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise UserInputError(f"Image folder not found or not a folder: {root!r}")
    size, fraction = check_source_options(image_size, resize, validation_split, batch_size)
    max_pixels = header.resolve_max_pixels(max_pixels)
    augment, model_augmentation = augment_lib.place_augmentation(augment, augment_on, seed)

    skipped: list[tuple[str, str]] = []
    if labels_csv is not None:
        table, class_names, has_split = _from_csv(root, labels_csv, follow_links, skipped)
        label_mode = "multi_hot"
        cut_val = not has_split or not table["val"][0]
    else:
        split_dirs = _find_split_dirs(root)
        class_root = split_dirs.get("train", root)
        class_names = _class_dirs(class_root)
        if not class_names:
            raise DataError(
                f"No class subfolders in {class_root!r}. Expected {root}/<class>/<image> "
                f"or {root}/train/<class>/<image>, or pass labels_csv= for multi-label data."
            )
        table = {}
        for split in ("train", "val", "test"):
            folder = split_dirs.get(split, root if split == "train" else None)
            if folder is None:
                table[split] = ([], [])
                continue
            table[split] = _list_class_folder(folder, class_names, follow_links, skipped)
        label_mode = "int"
        cut_val = "val" not in split_dirs

    total = sum(len(p) for p, _ in table.values()) + len(skipped)
    show = total > _AUTO_PROGRESS_FILES if verbose == "auto" else bool(verbose)
    files = {}
    for split, (paths, labels) in table.items():
        files[split] = _validated(paths, labels, skipped, max_pixels, show)
    validate.log_skipped(skipped, total)

    train_files, train_labels = files["train"]
    if not train_files:
        raise DataError(
            f"No readable training image in {root!r} ({len(skipped)} file(s) skipped; "
            "see the log for reasons)."
        )
    if cut_val and fraction > 0:
        keys = ([tuple(np.flatnonzero(y)) for y in train_labels] if label_mode == "multi_hot"
                else train_labels)
        tr, va = stratified_split(keys, fraction, seed)
        files["val"] = ([train_files[i] for i in va], [train_labels[i] for i in va])
        files["train"] = ([train_files[i] for i in tr], [train_labels[i] for i in tr])
    splits = _make_splits(files, class_names, skipped, size, batch_size, seed, augment, resize,
                          cache, shuffle, deterministic, label_mode)
    splits.augmentation = model_augmentation
    return splits


def _on_disk(cache) -> bool:
    return isinstance(cache, (str, os.PathLike)) and cache not in ("auto", "memory")


def _make_splits(files, class_names, skipped, size, batch_size, seed, augment, resize, cache,
                 shuffle, deterministic, label_mode) -> Splits:
    datasets, counts = {}, {}
    augmented = False
    num_classes = len(class_names)
    for split in ("train", "val", "test"):
        checked, labels = files[split]
        paths = [c.path for c in checked]
        inline = [c.inline for c in checked]
        scales = [decode.jpeg_scale(c.fmt if not c.inline else "", c.size, size, resize)
                  for c in checked]
        if not paths:
            datasets[split] = None
            continue
        training = split == "train"
        # Evaluation splits keep their order, so predictions line up with
        # the images (error grids, evaluation reports).
        ordered = deterministic or not training
        if label_mode == "int":
            label_array = np.asarray(labels, dtype=np.int32)
        else:
            label_array = np.stack(labels).astype(np.int32)
        ds = pipeline.files_dataset(paths, inline, label_array, image_size=size, resize=resize,
                                    training=training, shuffle=shuffle, seed=seed,
                                    deterministic=ordered, scales=scales)
        ds, aug = pipeline.finish(
            ds, num_examples=len(paths), image_size=size, resize=resize, batch_size=batch_size,
            training=training, cache=cache, split=split, shuffle=shuffle, seed=seed,
            deterministic=ordered, augment=augment,
            num_classes=num_classes,
            source_id=pipeline.files_fingerprint(paths, inline) if _on_disk(cache) else "")
        datasets[split] = ds
        counts[split] = len(paths)
        augmented = augmented or aug
        if training:
            if label_mode == "int":
                class_counts = np.bincount(label_array, minlength=num_classes).tolist()
            else:
                class_counts = label_array.sum(axis=0).astype(int).tolist()
    empty = [c for c, n in zip(class_names, class_counts, strict=True) if n == 0]
    if empty:
        log.warning("No training image for class(es) %s.", empty)
    splits = Splits(train=datasets["train"], val=datasets["val"], test=datasets["test"],
                    class_names=list(class_names), skipped=skipped, counts=counts,
                    image_size=size, augmented=augmented, label_mode=label_mode,
                    class_counts=class_counts, resize=resize)
    if augment_lib.mixes_labels(augment):
        splits.label_mode = "one_hot"
    return splits
