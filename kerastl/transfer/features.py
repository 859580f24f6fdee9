"""``extract_features``: frozen-backbone features, optionally cached on disk.

Builds on the in-memory :func:`kerastl.data.features.extract_features`; this
module adds what a user running feature extraction again and again needs:
accepting a name, a backbone or a whole classifier, numpy arrays as well as
datasets, and an on-disk cache whose key covers everything the features
depend on (backbone name, the weights' values, image size, output shape and
the images and labels themselves), so a changed input never reads stale
features.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from kerastl.atomic import atomic_write
from kerastl.data import features as features_lib
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

#: Version of the cache file layout; bump when the format or the key changes.
_CACHE_FORMAT = 1
#: Default bound of a features cache folder: beyond it the least recently used
#: ``features-*.npz`` files are deleted (a file read from the cache counts as used).
CACHE_MAX_BYTES = 2 * 1024**3


def resolve_backbone(backbone_or_model, image_size=None) -> keras.Model:
    """The kerastl backbone of a name, a backbone, or a model that contains one.

    Args:
        backbone_or_model: a registry name (built frozen with ImageNet weights
            at ``image_size``), a model from ``build_backbone``, or a model that
            contains one (e.g. from ``build_classifier``).
        image_size: ``(height, width)`` used when a name is given.

    Raises:
        ValueError: not a name or a model holding a kerastl backbone.
    """
    from kerastl.backbones.builder import build_backbone
    from kerastl.freezing import find_backbone

    if isinstance(backbone_or_model, str):
        return build_backbone(backbone_or_model, image_size=image_size)
    if not isinstance(backbone_or_model, keras.Model):
        raise UserInputError(
            "extract_features needs a backbone name, a model from ktl.build_backbone or a "
            f"model containing one. Received: {type(backbone_or_model).__name__}"
        )
    backbone, _spec = find_backbone(backbone_or_model)
    if len(backbone.output.shape) != 2:
        raise UserInputError(
            f"Backbone '{backbone.name}' outputs a {len(backbone.output.shape) - 1}-D feature "
            "map; build it with pooling='avg' or 'max' to get one vector per image."
        )
    return backbone


def as_dataset(data, *, batch_size: int = 32) -> tf.data.Dataset:
    """``data`` as batches of ``(images, labels)``.

    Args:
        data: a ``tf.data.Dataset`` of ``(images, labels)`` batches, or a pair
            ``(images, labels)`` of arrays (images ``(N, H, W, 3)`` in [0, 255]).
        batch_size: batch size for arrays.
    """
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = np.asarray(data[0]), np.asarray(data[1])
        if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
            raise UserInputError(
                "Arrays must be (images, labels) with images of shape (N, H, W, 3) and N "
                f"labels. Received shapes {images.shape} and {labels.shape}."
            )
        return tf.data.Dataset.from_tensor_slices(
            (images.astype("float32"), labels)).batch(batch_size)
    raise UserInputError(
        "data must be a tf.data.Dataset of (images, labels) batches or a pair of arrays "
        f"(images, labels). Received: {type(data).__name__}"
    )


def weights_fingerprint(model: keras.Model) -> str:
    """SHA-1 of the model's variable values (trainable or not), in order."""
    digest = hashlib.sha1()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{variable.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def data_fingerprint(dataset: tf.data.Dataset) -> str:
    """Order-independent SHA-1 of every ``(image, label)`` example in ``dataset``.

    Each example is hashed on its own and the sorted digests are hashed
    together, so a dataset that reshuffles each epoch keeps one fingerprint.
    """
    digests = []
    for images, labels in dataset:
        images = np.ascontiguousarray(np.asarray(images))
        labels = np.asarray(labels)
        for image, label in zip(images, labels, strict=True):
            example = hashlib.sha1(image.tobytes())
            example.update(np.ascontiguousarray(label).tobytes())
            digests.append(example.digest())
    if not digests:
        raise DataError("extract_features: the dataset is empty.")
    combined = hashlib.sha1(f"{len(digests)}:".encode())
    for d in sorted(digests):
        combined.update(d)
    return combined.hexdigest()


def cache_key(backbone: keras.Model, dataset: tf.data.Dataset) -> str:
    """The key of a features cache: backbone, weights, image size, output and data."""
    from kerastl.freezing import find_backbone

    try:
        name = find_backbone(backbone)[1].name
    except ValueError:
        name = backbone.name
    parts = [
        f"format={_CACHE_FORMAT}",
        f"backbone={name}",
        f"input={tuple(backbone.input.shape[1:])}",
        f"output={tuple(backbone.output.shape[1:])}",
        f"weights={weights_fingerprint(backbone)}",
        f"data={data_fingerprint(dataset)}",
    ]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def check_max_bytes(max_bytes) -> int | None:
    """``max_bytes`` if it is ``None`` or an int > 0, else one clear error."""
    if max_bytes is None or (isinstance(max_bytes, (int, np.integer))
                             and not isinstance(max_bytes, bool) and max_bytes > 0):
        return None if max_bytes is None else int(max_bytes)
    raise UserInputError("cache_max_bytes must be a number of bytes > 0 (or None for no "
                         f"bound). Received: {max_bytes!r}")


def prune_cache(cache: str | os.PathLike, max_bytes: int, *,
                keep: tuple[str | os.PathLike, ...] = ()) -> list[pathlib.Path]:
    """Delete the least recently used feature files of ``cache`` beyond ``max_bytes``.

    Only files named ``features-*.npz`` (the ones :func:`extract_features`
    writes) are counted and deleted; anything else in the folder is left
    alone. A file's last use is its modification time, which a cache hit
    refreshes. Files in ``keep`` (the one just written or read) stay even if
    they alone exceed the bound.

    Returns:
        The deleted files, oldest first.
    """
    max_bytes = check_max_bytes(max_bytes)
    folder = pathlib.Path(cache)
    keep_names = {pathlib.Path(k).name for k in keep}
    entries = []
    for path in folder.glob("features-*.npz"):
        try:
            st = path.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        if path.is_file():
            entries.append((st.st_mtime_ns, path.name, st.st_size, path))
    total = sum(size for _, _, size, _ in entries)
    removed = []
    for _, name, size, path in sorted(entries):
        if max_bytes is None or total <= max_bytes:
            break
        if name in keep_names:
            continue
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    if removed:
        log.info("Features cache %s: removed %d least recently used file(s) to stay under "
                 "%.1f MiB", folder, len(removed), max_bytes / 2**20)
    return removed


def _touch(path: pathlib.Path) -> None:
    """Mark a cache file as just used (its mtime orders the pruning)."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache stays usable
        pass


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("_") or "model"


def extract_features(backbone_or_model, data, *, cache: str | os.PathLike | None = None,
                     batch_size: int = 32, image_size=None, verbose="auto",
                     cache_max_bytes: int | None = CACHE_MAX_BYTES
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Features of a frozen backbone (inference mode) for every image in ``data``.

    Args:
        backbone_or_model: a registry name (built with ImageNet weights at
            ``image_size``, or the size of the images in ``data``), a model from
            :func:`kerastl.build_backbone` with pooling, or a model containing one
            (its backbone is used; the head is ignored).
        data: a ``tf.data.Dataset`` of ``(images, labels)`` batches (float32
            [0, 255]) or a pair of arrays ``(images, labels)``.
        cache: a folder. Features are stored there as ``.npz`` files named by a
            key over the backbone name, the weights' values, the image size, the
            output shape and a hash of every image and label; a later call with
            the same inputs loads them instead of running the backbone, and any
            change (other weights, size or data) computes and stores new ones.
            Hashing reads the data once more (cheap next to the backbone).
            The folder is kept (it is yours) but bounded by ``cache_max_bytes``.
        batch_size: batch size when ``data`` are arrays.
        image_size: ``(height, width)`` for a backbone given by name; default
            the size of the images in ``data``.
        verbose: ``0``/``False`` silent; otherwise a progress bar.
        cache_max_bytes: bound of the ``features-*.npz`` files in ``cache``
            (default :data:`CACHE_MAX_BYTES`, 2 GiB): after each call the least
            recently used ones are deleted until the rest fit (the file of this
            call always stays). ``None``: no bound.

    Returns:
        ``(features, labels)``: arrays ``(N, feature_dim)`` and ``(N, ...)``. For a
        dataset that reshuffles, rows follow the order of the pass that computed
        them (features and labels always stay aligned).

    Raises:
        ValueError: bad data or backbone, or an empty dataset.

    Example:
        >>> feats, labels = ktl.extract_features(backbone, splits.train, cache="features")
    """
    cache_max_bytes = check_max_bytes(cache_max_bytes)
    dataset = as_dataset(data, batch_size=batch_size)
    if isinstance(backbone_or_model, str) and image_size is None:
        spec = dataset.element_spec
        shape = spec[0].shape if isinstance(spec, tuple) and len(spec) == 2 else None
        if shape is None or len(shape) != 4 or None in tuple(shape[1:3]):
            raise UserInputError(
                "Pass image_size= to build a backbone by name: the data's image size is "
                "not static."
            )
        image_size = (int(shape[1]), int(shape[2]))
    backbone = resolve_backbone(backbone_or_model, image_size)
    if cache is None:
        return features_lib.extract_features(backbone, dataset, verbose=verbose)
    folder = pathlib.Path(cache)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"cache={folder} exists and is not a folder")
    path = folder / f"features-{_safe(backbone.name)}-{cache_key(backbone, dataset)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                features, labels = stored["features"], stored["labels"]
        except (OSError, ValueError, KeyError) as err:
            log.warning("Ignoring unreadable features cache %s (%s); recomputing", path, err)
        else:
            log.info("Features loaded from cache %s", path)
            _touch(path)
            if cache_max_bytes is not None:
                prune_cache(folder, cache_max_bytes, keep=(path,))
            return features, labels
    features, labels = features_lib.extract_features(backbone, dataset, verbose=verbose)
    # atomic: a killed run never leaves half a cache file
    atomic_write(path, lambda fh: np.savez(fh, features=features, labels=labels))
    log.info("Features cached in %s", path)
    if cache_max_bytes is not None:
        prune_cache(folder, cache_max_bytes, keep=(path,))
    return features, labels
