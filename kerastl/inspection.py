"""``ktl.inspect``: look at a dataset before training on it.

One pass of a frozen pretrained backbone gives every image a feature vector;
from those features (numpy and scikit-learn only, in seconds):

- likely **label errors**: k-fold logistic regression gives each image class
  probabilities from a model that never saw it; images ranked by the
  probability of their given label, lowest first (confident learning's
  self-confidence), each with its suggested label;
- **duplicates**: identical files (sha256 of the file, or of the pixels for
  arrays) and near-duplicates (cosine similarity of L2-normalised features
  >= ``duplicate_threshold``); a pair across train/val/test is a **leak**;
- **class imbalance**: counts per class and split, and balanced class weights.

The functions behind it are in :mod:`kerastl.data.quality`; the thumbnails in
:mod:`kerastl.reports.inspection`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib

import numpy as np

from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "val", "test")


@dataclasses.dataclass
class InspectionReport:
    """What :func:`inspect` found.

    Attributes:
        class_names: class names by label.
        splits: ``{split: number of images}``.
        label_errors: suspects, most likely mislabelled first: dicts with
            ``index`` (into the pooled images), ``split``, ``split_index``, ``path``,
            ``given``, ``suggested`` (class indices), ``self_confidence`` (out-of-fold
            probability of the given label), ``suggested_probability`` and
            ``flagged`` (confident learning's label issue). Every image whose
            suggested label differs from its given one is listed.
        ranking: every pooled image index, lowest self-confidence first.
        probabilities: ``(N, classes)`` out-of-fold probabilities.
        duplicates: pairs ``{"a", "b", "similarity", "exact", "leak"}``, each side
            ``{"index", "split", "split_index", "path"}``; exact ones first.
        leaks: the pairs of ``duplicates`` whose images are in different splits.
        imbalance: ``{"counts": {split: [per class]}, "ratio": largest / smallest
            training class, "class_weights": {class: weight}}``.
        C: the logistic regression's inverse regularisation (chosen by CV).
        files: ``{"report": ..., "label_errors": ..., "duplicates": ...}`` written.
        skipped: ``(path, reason)`` of unreadable files.
    """

    class_names: list[str]
    splits: dict[str, int]
    label_errors: list[dict]
    ranking: np.ndarray
    probabilities: np.ndarray
    duplicates: list[dict]
    leaks: list[dict]
    imbalance: dict
    C: float
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready summary (what ``report.json`` holds)."""
        return {"class_names": self.class_names, "splits": self.splits, "C": self.C,
                "label_errors": self.label_errors, "duplicates": self.duplicates,
                "leaks": self.leaks, "imbalance": self.imbalance, "files": self.files,
                "skipped": [list(s) for s in self.skipped]}


@dataclasses.dataclass
class _Pool:
    """Every image of every split, pooled: uint8 images, labels and where each came from."""

    images: np.ndarray
    labels: np.ndarray
    split: list[str]
    split_index: list[int]
    paths: list[str | None]
    digests: list[str]
    class_names: list[str]
    skipped: list[tuple[str, str]]


def _read_folder(root: pathlib.Path, size: int) -> _Pool:
    import tensorflow as tf

    from kerastl.data.decode import decode_bytes, resize_image
    from kerastl.data.folders import _class_dirs, _find_split_dirs, _list_class_folder

    dirs = _find_split_dirs(os.fspath(root)) or {"train": os.fspath(root)}
    class_names = _class_dirs(dirs["train"])
    if len(class_names) < 2:
        raise DataError(f"{root} needs 2 or more class subfolders (or train/<class>/ ...); "
                        f"found {class_names}")
    images, labels, split, split_index, paths, digests, skipped = [], [], [], [], [], [], []
    for name in SPLIT_ORDER:
        if name not in dirs:
            continue
        files, classes = _list_class_folder(dirs[name], class_names, False, skipped)
        first = len(split)
        for path, label in zip(files, classes, strict=True):
            data = pathlib.Path(path).read_bytes()
            try:
                image = resize_image(decode_bytes(tf.constant(data)), (size, size), "stretch")
            except (tf.errors.InvalidArgumentError, ValueError) as err:
                skipped.append((path, f"cannot decode ({type(err).__name__})"))
                continue
            images.append(np.asarray(image, dtype=np.uint8))
            labels.append(label)
            split_index.append(len(split) - first)
            split.append(name)
            paths.append(path)
            digests.append(hashlib.sha256(data).hexdigest())
    if not images:
        raise DataError(f"No readable image in {root}")
    return _Pool(np.stack(images), np.asarray(labels), split, split_index, paths, digests,
                 class_names, skipped)


def _from_arrays(data, class_names) -> _Pool:
    """``{split: (images, labels)}`` arrays or datasets, or a :class:`kerastl.data.Splits`."""
    from kerastl.data.splits import Splits

    if isinstance(data, Splits):
        class_names = class_names or list(data.class_names)
        data = {k: getattr(data, k) for k in SPLIT_ORDER if getattr(data, k) is not None}
    if not isinstance(data, dict) or "train" not in data:
        raise UserInputError("inspect needs a folder, a kerastl.data.Splits or a dict "
                             "{'train': (images, labels), 'val': ..., 'test': ...}. Received: "
                             f"{type(data).__name__}")
    images, labels, split, split_index = [], [], [], []
    for name, value in data.items():
        x, y = _arrays(value)
        images.append(x)
        labels.append(y)
        split += [name] * len(y)
        split_index += list(range(len(y)))
    x = np.concatenate(images)
    if x.ndim == 3:  # greyscale
        x = np.repeat(x[..., None], 3, axis=-1)
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    y = np.concatenate(labels).astype(np.int64)
    names = list(class_names) if class_names else [str(i) for i in range(int(y.max()) + 1)]
    digests = [hashlib.sha256(image.tobytes()).hexdigest() for image in x]
    return _Pool(x, y, split, split_index, [None] * len(y), digests, names, [])


def _arrays(value) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    if isinstance(value, tf.data.Dataset):
        xs, ys = zip(*[(np.asarray(a), np.asarray(b)) for a, b in value], strict=True)
        x, y = np.concatenate(xs), np.concatenate(ys)
    else:
        x, y = np.asarray(value[0]), np.asarray(value[1])
    if y.ndim == 2:
        y = y.argmax(axis=1)
    return x, y


def _side(pool: _Pool, i: int) -> dict:
    return {"index": int(i), "split": pool.split[i], "split_index": int(pool.split_index[i]),
            "path": pool.paths[i]}


def _duplicates(pool: _Pool, features: np.ndarray, threshold: float) -> list[dict]:
    from kerastl.data.quality import exact_duplicates, near_duplicates

    exact = set(exact_duplicates(pool.digests))
    pairs = [(i, j, 1.0, True) for i, j in sorted(exact)]
    pairs += [(i, j, s, False) for i, j, s in near_duplicates(features, threshold)
              if (i, j) not in exact]
    return [{"a": _side(pool, i), "b": _side(pool, j), "similarity": round(float(s), 6),
             "exact": exact_pair, "leak": pool.split[i] != pool.split[j]}
            for i, j, s, exact_pair in pairs]


def _label_errors(pool: _Pool, probabilities: np.ndarray) -> tuple[list[dict], np.ndarray]:
    from kerastl.data.quality import rank_label_errors

    ranking = rank_label_errors(probabilities, pool.labels)
    suspects = [{**_side(pool, i), "given": int(pool.labels[i]),
                 "suggested": int(ranking.suggested[i]),
                 "self_confidence": round(float(ranking.self_confidence[i]), 6),
                 "suggested_probability": round(float(probabilities[i, ranking.suggested[i]]), 6),
                 "flagged": bool(ranking.flagged[i])}
                for i in ranking.order if ranking.suggested[i] != pool.labels[i]]
    return suspects, ranking.order


def _imbalance(pool: _Pool) -> dict:
    from kerastl.data.augment import class_weights

    k = len(pool.class_names)
    counts = {name: np.bincount(pool.labels[[s == name for s in pool.split]],
                                minlength=k).tolist()
              for name in dict.fromkeys(pool.split)}
    train = np.asarray(counts["train"])
    ratio = float(train.max() / train.min()) if train.min() > 0 else float("inf")
    weights = class_weights(dict(enumerate(train.tolist())))
    return {"counts": counts, "ratio": round(ratio, 4),
            "class_weights": {str(c): round(float(w), 6) for c, w in weights.items()}}


def inspect(data, backbone: str = "efficientnet_lite0", *, image_size: int | None = None,
            folds: int = 5, duplicate_threshold: float = 0.98, output=None, cache=None,
            class_names=None, batch_size: int = 32, seed: int = 0,
            verbose="auto") -> InspectionReport:
    """Find likely label errors, duplicates, train/val/test leaks and class imbalance.

    Args:
        data: an image folder (``DIR/<class>/...`` or ``DIR/train|val|test/<class>/...``),
            a :class:`kerastl.data.Splits`, or ``{"train": (images, labels), "val": ...,
            "test": ...}`` with arrays (``(N, H, W[, 3])`` in [0, 255]) or datasets.
        backbone: registry name of the frozen backbone (ImageNet weights).
        image_size: side in px the images are resized to; default the
            backbone's native size (folders) or the arrays' own size.
        folds: k of the out-of-fold logistic regression (each class needs k images).
        duplicate_threshold: cosine similarity from which two images are near-duplicates.
        output: folder for ``report.json``, ``label_errors.png`` and ``duplicates.png``
            (created; ``None`` writes nothing).
        cache: folder caching the backbone features (see :func:`kerastl.extract_features`).
        class_names: names by label for array input (default ``"0"``, ``"1"``...).
        batch_size: images per forward pass.
        seed: seed of the folds.
        verbose: progress bar of the feature extraction (``0`` silent).

    Returns:
        An :class:`InspectionReport`.

    Raises:
        ValueError: bad input, fewer than 2 classes, or a class with fewer than ``folds`` images.
        ImportError: scikit-learn is missing (``pip install 'kerastl[sklearn]'``).

    Example:
        >>> report = ktl.inspect("photos/", output="inspection")
        >>> report.label_errors[0]["path"], report.leaks[:3]
    """
    from kerastl.backbones import backbone_spec
    from kerastl.data.quality import out_of_fold_probabilities
    from kerastl.errors import require
    from kerastl.transfer.features import extract_features

    require("sklearn", "sklearn", "kerastl inspect")
    if not (isinstance(duplicate_threshold, (int, float)) and 0 < duplicate_threshold <= 1):
        raise UserInputError("duplicate_threshold must be a cosine similarity in (0, 1]. "
                             f"Received: {duplicate_threshold!r}")
    if isinstance(data, (str, os.PathLike)):
        root = pathlib.Path(data)
        if not root.is_dir():
            raise UserInputError(f"{root} is not a folder")
        size = image_size or backbone_spec(backbone).default_image_size
        pool = _read_folder(root, size)
    else:
        pool = _from_arrays(data, class_names)
        if image_size is not None and pool.images.shape[1:3] != (image_size, image_size):
            import tensorflow as tf

            pool.images = np.asarray(tf.cast(tf.image.resize(pool.images, (
                image_size, image_size)), tf.uint8))
    log.info("inspect: %d images in %s; extracting %s features", len(pool.labels),
             ", ".join(dict.fromkeys(pool.split)), backbone)
    features, _ = extract_features(backbone, (pool.images.astype("float32"), pool.labels),
                                   cache=cache, batch_size=batch_size, verbose=verbose)
    probabilities, C = out_of_fold_probabilities(features, pool.labels, folds=folds,
                                                 num_classes=len(pool.class_names), seed=seed)
    suspects, order = _label_errors(pool, probabilities)
    duplicates = _duplicates(pool, features, duplicate_threshold)
    report = InspectionReport(
        class_names=pool.class_names,
        splits={k: pool.split.count(k) for k in dict.fromkeys(pool.split)},
        label_errors=suspects, ranking=order, probabilities=probabilities,
        duplicates=duplicates, leaks=[d for d in duplicates if d["leak"]],
        imbalance=_imbalance(pool), C=C, skipped=pool.skipped)
    log.info("inspect: %d suspected label errors (%d flagged), %d duplicate pairs, %d leaks",
             len(suspects), sum(s["flagged"] for s in suspects), len(duplicates),
             len(report.leaks))
    if output is not None:
        _write(report, pool, pathlib.Path(output))
    return report


def _write(report: InspectionReport, pool: _Pool, folder: pathlib.Path) -> None:
    from kerastl.atomic import atomic_write_json
    from kerastl.reports.inspection import plot_duplicates, plot_label_errors

    folder.mkdir(parents=True, exist_ok=True)
    report.files = {
        "report": os.fspath(folder / "report.json"),
        "label_errors": plot_label_errors(pool.images, report.label_errors,
                                          report.class_names, folder / "label_errors.png"),
        "duplicates": plot_duplicates(pool.images, report.duplicates,
                                      folder / "duplicates.png"),
    }
    atomic_write_json(folder / "report.json", report.to_dict(), indent=2)
