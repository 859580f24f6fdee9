"""The shared ``tf.data`` recipe: decode -> cache -> shuffle -> batch -> augment -> prefetch."""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from kerastl.data import augment as augment_lib
from kerastl.data import decode
from kerastl.data.info import carry_order, dataset_info, describe
from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

# cache="auto" keeps a split's decoded uint8 images in memory up to this size
# (and a quarter of the memory available). A larger split goes to a file cache
# in this process's temporary folder (removed when the process ends) up to
# AUTO_DISK_CACHE_BYTES (and half the free disk space there); beyond that it is
# decoded again every epoch. A file cache is read back from the page cache
# (outside the process's RSS): 5,000 images at 224 px (0.75 GB) in memory would
# take more than a third of a 2 GB budget, and their 1,000 validation images at
# 150 MB still grew phase 2 from one epoch to the next (benchmarks/train_memory.py).
AUTO_CACHE_BYTES = 128 * 1024**2
AUTO_DISK_CACHE_BYTES = 32 * 1024**3
# The training shuffle buffer holds at most this many images, and at most
# SHUFFLE_BYTES of them (2048 images at 224 px would be 0.3 GB; 64 MiB is 445 of
# them, drawn from files whose order was shuffled once before decoding).
SHUFFLE_BUFFER = 2048
SHUFFLE_BYTES = 64 * 1024**2
# File caches of cache="auto" live in <temp>/kerastl-cache-<pid>-*/ of this process.
_AUTO_DIR_PREFIX = "kerastl-cache-"
_auto_dir: str | None = None


def reshuffled(ds: tf.data.Dataset, *, buffer_size: int, seed: int | None,
               cardinality: int | None = None) -> tf.data.Dataset:
    """``ds.shuffle(...)`` with a new order each pass, keyed by a pass counter that can be set.

    The order of pass ``k`` depends only on ``(seed, k)``. The counter counts
    passes that really read data (an iterator created and never read does not
    count) and is exposed through :func:`pass_counter`, so a resumed run sets
    it from its checkpoint and its next epoch sees the order the uninterrupted
    run would have seen, instead of starting the sequence of orders again.

    Args:
        ds: the (cached) dataset to shuffle, elements not batched.
        buffer_size: shuffle buffer.
        seed: base seed; ``None`` draws one from NumPy's global generator
            (seeded by ``keras.utils.set_random_seed``).
        cardinality: number of elements, kept on the result when given.
    """
    if tf.distribute.has_strategy():
        # Inside a strategy scope a variable would be mirrored: keep the plain
        # reshuffle (its order sequence restarts after a restart).
        return ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    base = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
    with tf.init_scope(), tf.device("/cpu:0"):
        counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="kerastl_data_passes")

    def next_pass(_):
        return counter.assign_add(1) - 1

    def one_pass(k):
        # The order depends on (base, k) only, not on the global seed: the
        # function's graph gets no global seed, so TF pairs its fixed default
        # with this per-pass op seed (a global seed of 0 would also make TF
        # compare the seed tensor in Python and fail).
        tf.compat.v1.get_default_graph().seed = None
        pass_seed = (tf.constant(base, tf.int64) * 1_000_003 + k) % (2**31 - 1)
        return ds.shuffle(buffer_size, seed=pass_seed, reshuffle_each_iteration=False)

    out = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).map(next_pass).flat_map(one_pass)
    if cardinality is not None and cardinality >= 0:
        out = out.apply(tf.data.experimental.assert_cardinality(cardinality))
    return describe(out, pass_counter=counter,
                    shuffle={"buffer_size": int(buffer_size), "seed": base})


def pass_counter(dataset) -> tf.Variable | None:
    """The pass counter of a kerastl training dataset (see :func:`reshuffled`), or ``None``.

    ``None`` for user-built pipelines and for kerastl datasets transformed
    further, whose order then starts its sequence again after a restart
    (:mod:`kerastl.data.info`).
    """
    return dataset_info(dataset).pass_counter


def keep_pass_counter(result: tf.data.Dataset, source: tf.data.Dataset) -> tf.data.Dataset:
    """Carry ``source``'s pass counter over to ``result`` (a dataset built on top of it)."""
    return carry_order(result, source)


def epoch_order(dataset) -> dict | None:
    """How a kerastl training dataset orders its epochs, for the frozen-feature cache.

    ``None`` unless the dataset is a kerastl one without augmentation or random
    crops. Otherwise ``{"unshuffled": ds, "buffer_size": b, "seed": s,
    "batch_size": n, "counter": v}``: the same batches before the per-pass
    shuffle, and the shuffle's parameters, so that features extracted from
    ``unshuffled`` and reshuffled with ``(b, s)`` and the same pass counter
    form exactly the batches the image pipeline would give.
    """
    return dataset_info(dataset).epoch_order


def fingerprint(*parts) -> str:
    """A short hash naming an on-disk cache, so a changed source never reads a stale one."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def files_fingerprint(paths: list[str], inline: list[bytes]) -> str:
    """Hash of file names, sizes and modification times (and inline bytes)."""
    stats = []
    for path, data in zip(paths, inline, strict=True):
        try:
            st = os.stat(path)
            stats.append((path, st.st_size, st.st_mtime_ns, len(data)))
        except OSError:
            stats.append((path, -1, -1, len(data)))
    return fingerprint(stats)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_auto_dirs(parent: str) -> list[str]:
    """Remove the automatic cache folders of processes that are gone (e.g. killed)."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(_AUTO_DIR_PREFIX):
            continue
        pid = name[len(_AUTO_DIR_PREFIX):].split("-", 1)[0]
        path = os.path.join(parent, name)
        try:
            if not pid.isdigit() or _pid_alive(int(pid)) or os.stat(path).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def auto_cache_dir() -> str:
    """This process's folder for the file caches of ``cache="auto"``.

    Created on first use under the temporary folder (``$TMPDIR``), removed
    when the process exits; folders left by killed processes are removed the
    next time one is created.
    """
    global _auto_dir
    if _auto_dir is None or not os.path.isdir(_auto_dir):
        parent = tempfile.gettempdir()
        _remove_stale_auto_dirs(parent)
        _auto_dir = tempfile.mkdtemp(prefix=f"{_AUTO_DIR_PREFIX}{os.getpid()}-", dir=parent)
    return _auto_dir


def remove_auto_caches() -> None:
    """Delete the file caches ``cache="auto"`` made in this process (also run at exit).

    Datasets built before keep working but decode their images again.
    """
    global _auto_dir
    path, _auto_dir = _auto_dir, None
    # A forked child inherits the name but not the folder: only its maker removes it.
    if path is not None and os.path.basename(path).startswith(
            f"{_AUTO_DIR_PREFIX}{os.getpid()}-"):
        shutil.rmtree(path, ignore_errors=True)


atexit.register(remove_auto_caches)


def _auto_cache(need: int, split: str) -> str | None:
    memory = available_memory()
    budget = AUTO_CACHE_BYTES if memory is None else min(AUTO_CACHE_BYTES, memory // 4)
    if need <= budget:
        return ""
    folder = auto_cache_dir()
    disk = min(AUTO_DISK_CACHE_BYTES, shutil.disk_usage(folder).free // 2)
    if need > disk:
        log.info("Not caching the %s split (%.1f GiB of images, over the memory and disk "
                 "budgets); pass cache='<file prefix>' to cache it on disk.",
                 split, need / 1024**3)
        return None
    path = os.path.join(tempfile.mkdtemp(prefix=f"{split}-", dir=folder), "images")
    log.info("Caching the %s split on disk (%.2f GiB of images, over the %.1f MiB memory "
             "budget) in %s, removed when the process ends.", split, need / 1024**3,
             budget / 2**20, os.path.dirname(path))
    return path


def resolve_cache(cache, num_examples: int, image_size: tuple[int, int], resize: str,
                  split: str, source_id: str = "") -> str | None:
    """Return ``""`` (memory), a file prefix, or ``None`` (no cache).

    On-disk caches are named ``<prefix>_<split>_<hash>`` where the hash covers
    the source (``source_id``), the image size and the resize mode; they are
    the user's and are kept. ``"auto"``: memory up to :data:`AUTO_CACHE_BYTES`,
    else a file cache in :func:`auto_cache_dir` (removed at exit) up to
    :data:`AUTO_DISK_CACHE_BYTES`, else none.
    """
    if cache is False or cache is None:
        return None
    if isinstance(cache, str) and cache == "auto":
        h, w = decode.cache_size(image_size, resize)
        return _auto_cache(num_examples * h * w * 3, split)
    if cache is True or cache == "memory":
        return ""
    if isinstance(cache, (str, os.PathLike)):
        prefix = os.fspath(cache)
        parent = os.path.dirname(prefix)
        if parent:
            os.makedirs(parent, exist_ok=True)
        return f"{prefix}_{split}_{fingerprint(source_id, image_size, resize)}"
    raise UserInputError(
        "cache must be True/'memory', False, 'auto' or a file path prefix. "
        f"Received: cache={cache!r}"
    )


def shuffle_buffer(num_examples: int, image_size: tuple[int, int], resize: str) -> int:
    """Training shuffle buffer: all examples, at most :data:`SHUFFLE_BUFFER` and ``SHUFFLE_BYTES``."""
    h, w = decode.cache_size(image_size, resize)
    by_bytes = max(SHUFFLE_BYTES // max(h * w * 3, 1), 1)
    return max(min(num_examples, SHUFFLE_BUFFER, by_bytes), 1)


def finish(ds: tf.data.Dataset, *, num_examples: int, image_size: tuple[int, int],
           resize: str, batch_size: int, training: bool, cache, split: str,
           shuffle: bool, seed: int | None, deterministic: bool, augment=None,
           num_classes: int | None = None, label_dtype=tf.int32, source_id: str = ""):
    """Cache, shuffle, batch, cast, crop and augment a dataset of ``(uint8 image, label)``.

    Returns:
        ``(dataset, augmented)``.
    """
    cache_to = resolve_cache(cache, num_examples, image_size, resize, split, source_id)
    if cache_to is not None:
        ds = ds.cache(cache_to)
    shuffled = None
    unshuffled = ds
    if training and shuffle:
        ds = shuffled = reshuffled(ds, buffer_size=shuffle_buffer(num_examples, image_size,
                                                                  resize),
                                   seed=seed, cardinality=int(ds.cardinality()))
    if resize == "random_crop":
        # After the cache, per image: a new random window every epoch in
        # training (Keras RandomCrop keeps its seed state across epochs), the
        # central window otherwise.
        if training:
            cropper = keras.layers.RandomCrop(*image_size, seed=seed)

            def crop(image, label):
                return tf.cast(cropper(image, training=True), tf.uint8), label
        else:
            def crop(image, label):
                return decode.central_crop(image, image_size), label

        ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)

    def to_float(images, labels):
        return tf.cast(images, tf.float32), tf.cast(labels, label_dtype)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    augmented = False
    if training:
        ds, augmented = augment_lib.apply_augmentation(ds, augment, num_classes=num_classes,
                                                       seed=seed, deterministic=deterministic)
    augmented = augmented or (training and resize == "random_crop")
    # ``deterministic`` is passed to our own parallel maps only: a global
    # tf.data option would also reorder upstream sources (e.g. TFDS readers).
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if shuffled is not None:
        ds = keep_pass_counter(ds, shuffled)
        if not augmented and pass_counter(shuffled) is not None:
            twin = unshuffled.batch(batch_size).map(to_float).prefetch(tf.data.AUTOTUNE)
            describe(ds, epoch_order=dict(dataset_info(shuffled).shuffle, unshuffled=twin,
                                          batch_size=int(batch_size),
                                          counter=pass_counter(shuffled)))
    if training:
        describe(ds, augmented=augmented)
    return ds, augmented


def files_dataset(paths: list[str], inline: list[bytes], labels: np.ndarray, *,
                  image_size: tuple[int, int], resize: str, training: bool, shuffle: bool,
                  seed: int | None, deterministic: bool,
                  scales: list[int] | None = None) -> tf.data.Dataset:
    """Dataset of ``(uint8 image, label)`` decoded in parallel from files.

    The file order is shuffled once (seeded) before decoding so the cache and
    the shuffle buffer start mixed even when classes are stored in blocks.
    """
    scales = np.ones(len(paths), np.int32) if scales is None else np.asarray(scales, np.int32)
    if training and shuffle and len(paths) > 1:
        order = np.random.default_rng(seed).permutation(len(paths))
        paths = [paths[i] for i in order]
        inline = [inline[i] for i in order]
        labels = labels[order]
        scales = scales[order]
    ds = tf.data.Dataset.from_tensor_slices((
        # fsencode: file names that are not valid UTF-8 still reach read_file intact.
        tf.constant([os.fsencode(p) for p in paths], dtype=tf.string),
        tf.constant(inline, dtype=tf.string),
        tf.constant(scales, dtype=tf.int32),
        tf.constant(labels),
    ))

    def load(path, data, scale, label):
        return decode.load_image(path, data, image_size, resize, scale), label

    # No ignore_errors(): every file was decoded once up front, and keeping the
    # cardinality known gives Keras exact steps per epoch.
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
