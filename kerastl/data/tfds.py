"""``from_tfds``: a TensorFlow Datasets builder (by name, or a local folder) to Splits."""

from __future__ import annotations

import logging
import os
import re
import stat

import numpy as np
import tensorflow as tf

from kerastl.config import DEFAULT_SEED
from kerastl.data import augment as augment_lib
from kerastl.data import decode, header, pipeline
from kerastl.data.splits import Splits, check_class_name, check_source_options, stratified_split
from kerastl.errors import DataError, UserInputError, close_matches, require

log = logging.getLogger(__name__)

_NAMES = ("train", "val", "test")


def _how_to_provide(name: str, data_dir) -> str:
    where = data_dir or "~/tensorflow_datasets"
    return (
        f"To use it offline, prepare it on a machine with internet access "
        f"(`tfds build {name} --data_dir DIR` or `tfds.load('{name}', data_dir=DIR)`), copy "
        f"DIR here and pass data_dir=DIR (looked in {where!r}); or pass the path of a local "
        "image folder laid out as root/<split>/<class>/<image> (read with tfds.ImageFolder), "
        "or use ktl.data.image_folder for a plain folder of images."
    )


def _builder(tfds, name, data_dir, download):
    if isinstance(name, tfds.core.DatasetBuilder):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise UserInputError(f"from_tfds: name must be a TFDS name, a folder or a builder. "
                             f"Received: {name!r}")
    if os.path.isdir(os.fspath(name)):
        return tfds.ImageFolder(os.fspath(name))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        hint = close_matches(str(name), tfds.list_builders())
        raise UserInputError(
            f"Unknown TFDS dataset {name!r}."
            + (f" Did you mean: {', '.join(hint)}?" if hint else "")
            + " Or pass the path of a local image folder."
        ) from err
    if not builder.is_prepared():
        if not download:
            raise DataError(f"TFDS dataset {name!r} is not prepared in data_dir and "
                            "download=False. " + _how_to_provide(str(name), data_dir))
        try:
            builder.download_and_prepare()
        except Exception as err:  # network, disk or checksum failures all end here
            raise DataError(
                f"TFDS dataset {name!r} is not prepared locally and could not be downloaded "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). "
                + _how_to_provide(str(name), data_dir)
            ) from err
    return builder


def _check_local_folder(root: str, max_pixels: int) -> None:
    """Refuse, up front, a file ``tfds.ImageFolder`` would hang on or that is a bomb.

    ImageFolder reads every file it lists and cannot skip one, so a FIFO
    (blocks forever) or an image over the pixel budget is an error here.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue  # a broken link: ImageFolder reports it
            if not stat.S_ISREG(mode):
                raise UserInputError(
                    f"{path}: not a regular file ({header.file_kind(mode)}); tfds.ImageFolder "
                    "would block reading it. Remove it, or use ktl.data.image_folder, which "
                    "skips such files.")
            if os.path.splitext(name)[1].lower() in header.IMAGE_EXTENSIONS:
                header.check_pixels(path, max_pixels)


def _pick_keys(features, image_key, label_key):
    keys = list(features.keys())
    if image_key not in keys:
        raise DataError(f"TFDS dataset has no {image_key!r} feature; features: {keys}. "
                        "Pass image_key=.")
    if label_key not in keys:
        raise DataError(f"TFDS dataset has no {label_key!r} feature; features: {keys}. "
                        "Pass label_key=.")
    label = features[label_key]
    names = list(getattr(label, "names", None) or [])
    if not names:
        num = getattr(label, "num_classes", None)
        if not num:
            raise DataError(f"TFDS feature {label_key!r} is not a class label.")
        names = [str(i) for i in range(num)]
    return names


def _read_labels(tfds, builder, split_name, image_key, label_key) -> np.ndarray:
    """All labels of a split, in order, without decoding the images."""
    ds = builder.as_dataset(split=split_name, shuffle_files=False,
                            decoders={image_key: tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: ex[label_key]).batch(4096)
    parts = [batch for batch in ds.as_numpy_iterator()]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _to_rgb(image):
    channels = image.shape[-1]
    if channels == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif channels == 4:
        image = image[..., :3]
    return tf.cast(image, tf.float32)


def from_tfds(name, *, image_size, batch_size: int = 32, data_dir: str | None = None,
              split=("train", "validation", "test"), validation_split: float = 0.2,
              seed: int = DEFAULT_SEED, augment=None, resize: str = "stretch", cache="auto",
              shuffle: bool = True, deterministic: bool = False, image_key: str = "image",
              label_key: str = "label", download: bool = True,
              augment_on: str = "data", max_pixels: int | None = None) -> Splits:
    """Datasets from TensorFlow Datasets.

    Args:
        name: a TFDS name (``"tf_flowers"``), the path of a local folder laid
            out as ``root/<split>/<class>/<image>`` (read with
            ``tfds.ImageFolder``), or a ``tfds`` builder instance.
        image_size: int or ``(height, width)``.
        batch_size: examples per batch.
        data_dir: where TFDS data lives (default ``~/tensorflow_datasets``).
        split: names of the (train, validation, test) splits, TFDS slices
            allowed (``"train[:80%]"``); a missing or ``None`` validation split
            is cut from train (stratified, seeded, ``validation_split``); a
            missing test split gives ``test=None``.
        validation_split: fraction cut from train when there is no validation split.
        seed: seed of the split, the shuffle and the augmentation.
        augment: ``None``, a policy name or an options dict (training only).
        resize: ``"stretch"``, ``"crop"``, ``"pad"`` or ``"random_crop"``.
        cache: ``"auto"``, ``True``, ``False`` or a file prefix.
        shuffle: shuffle the training set each epoch.
        deterministic: keep a reproducible element order.
        image_key: name of the image feature.
        label_key: name of the label feature.
        download: download and prepare the dataset when it is not in
            ``data_dir``; ``False`` fails at once instead (useful offline, where
            the download's retries take minutes to give up).
        augment_on: ``"data"`` (tf.data) or ``"model"`` (``Splits.augmentation``
            holds the layers to put in the model).
        max_pixels: refuse an image whose header declares more pixels (a
            decompression bomb); None: ``$KERASTL_MAX_PIXELS`` or 89,478,485.
            A local folder is checked up front; a dataset's encoded images are
            checked in the graph, before decoding, and fail the iteration.

    Returns:
        :class:`Splits`.

    Raises:
        ValueError: unknown dataset or split; or the data is not available
            offline (the message says how to provide it).
    """
    tfds = require("tensorflow_datasets", "tfds", "from_tfds")
    size, fraction = check_source_options(image_size, resize, validation_split, batch_size)
    if isinstance(split, str):
        split = (split,)
    wanted = list(split) + [None] * (3 - len(split))
    if len(wanted) != 3:
        raise UserInputError(f"split must name up to 3 splits (train, validation, test). "
                             f"Received: {split!r}")
    augment, model_augmentation = augment_lib.place_augmentation(augment, augment_on, seed)
    max_pixels = header.resolve_max_pixels(max_pixels)
    local = isinstance(name, (str, os.PathLike)) and os.path.isdir(os.fspath(name))
    if local:
        _check_local_folder(os.fspath(name), max_pixels)
    builder = _builder(tfds, name, data_dir, download)
    class_names = _pick_keys(builder.info.features, image_key, label_key)
    if local:
        for class_name in class_names:
            check_class_name(class_name, f"class folder in {os.fspath(name)!r}")
    feature = builder.info.features[image_key]
    # Encoded images are decoded here, after the header check, not by tfds.
    encoded = (isinstance(feature, tfds.features.Image)
               and tf.as_dtype(feature.dtype) == tf.uint8)
    decoders = {image_key: tfds.decode.SkipDecoding()} if encoded else None
    available = dict(builder.info.splits.items()) if builder.info.splits else {}

    def size_of(split_name):
        """Examples in a split (TFDS slices like "train[:80%]" allowed), or None if absent."""
        if not split_name or re.split(r"[\[+]", str(split_name))[0] not in available:
            return None
        try:
            return int(builder.info.splits[split_name].num_examples)
        except (KeyError, ValueError, TypeError) as err:
            raise UserInputError(f"Bad TFDS split {split_name!r}: {err}") from err

    if size_of(wanted[0]) is None:
        raise DataError(f"TFDS dataset {builder.name!r} has no split {wanted[0]!r}; "
                        f"it has {sorted(available)}.")

    def pick(example):
        image = example[image_key]
        if encoded:
            check = decode.assert_pixels(image, max_pixels, name=f"{builder.name} image")
            with tf.control_dependencies([check]):
                image = decode.decode_bytes(image)
        return image, tf.cast(example[label_key], tf.int32)

    def load(split_name):
        ds = builder.as_dataset(split=split_name, shuffle_files=False, decoders=decoders)
        return ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    sources, counts = {}, {}
    sources["train"] = load(wanted[0])
    counts["train"] = size_of(wanted[0])
    for key, split_name in (("val", wanted[1]), ("test", wanted[2])):
        if size_of(split_name) is not None:
            sources[key] = load(split_name)
            counts[key] = size_of(split_name)
    labels = _read_labels(tfds, builder, wanted[0], image_key, label_key)
    class_counts = np.bincount(labels, minlength=len(class_names)).tolist()
    if "val" not in sources and fraction > 0:
        class_counts = _cut_validation(sources, counts, labels, fraction, seed,
                                       len(class_names))
    datasets, augmented = _finish_splits(
        sources, counts, size=size, resize=resize, batch_size=batch_size, cache=cache,
        shuffle=shuffle, seed=seed, deterministic=deterministic, augment=augment,
        num_classes=len(class_names),
        source_id=f"{builder.name}:{builder.info.version}:{wanted}:{fraction}:{seed}")
    return Splits(train=datasets["train"], val=datasets["val"], test=datasets["test"],
                  class_names=class_names, counts=counts, image_size=size,
                  augmented=augmented, class_counts=class_counts,
                  augmentation=model_augmentation, resize=resize,
                  label_mode="one_hot" if augment_lib.mixes_labels(augment) else "int")


def _cut_validation(sources: dict, counts: dict, labels: np.ndarray, fraction: float,
                    seed: int, num_classes: int) -> list[int]:
    """Cut a stratified, seeded validation split out of ``sources["train"]`` (in place);
    return the class counts of what stays in train."""
    _, val_idx = stratified_split(labels.tolist(), fraction, seed)
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[val_idx] = True
    table = tf.constant(is_val)
    indexed = sources["train"].enumerate()

    def in_val(i, example):
        return table[i]

    def in_train(i, example):
        return tf.logical_not(table[i])

    def drop_index(i, example):
        return example

    counts["val"], counts["train"] = int(is_val.sum()), int((~is_val).sum())
    # filter() loses the cardinality; restore it so Keras knows the steps.
    sources["val"] = indexed.filter(in_val).map(drop_index).apply(
        tf.data.experimental.assert_cardinality(counts["val"]))
    sources["train"] = indexed.filter(in_train).map(drop_index).apply(
        tf.data.experimental.assert_cardinality(counts["train"]))
    return np.bincount(labels[~is_val], minlength=num_classes).tolist()


def _finish_splits(sources: dict, counts: dict, *, size, resize, batch_size, cache, shuffle,
                   seed, deterministic, augment, num_classes, source_id):
    """Resize, cache, shuffle, batch and augment each split: ``(datasets, augmented)``."""
    datasets = {"val": None, "test": None}
    augmented = False
    for key, ds in sources.items():
        training = key == "train"
        # Evaluation splits keep their order, so predictions line up with
        # the images (error grids, evaluation reports).
        ordered = deterministic or not training
        ds = ds.map(lambda image, label: (decode.resize_image(_to_rgb(image), size, resize),
                                          label),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
        datasets[key], aug = pipeline.finish(
            ds, num_examples=counts[key], image_size=size, resize=resize,
            batch_size=batch_size, training=training, cache=cache, split=key,
            shuffle=shuffle, seed=seed, deterministic=ordered, augment=augment,
            num_classes=num_classes, source_id=source_id)
        augmented = augmented or aug
    return datasets, augmented
