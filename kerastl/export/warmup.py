"""TF Serving warmup requests: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays these PredictRequests when it loads a version, before the
version takes traffic, so the first real request does not pay for graph
initialisation. The file is a TFRecord of ``PredictionLog`` protos built with
``tensorflow-serving-api`` (the ``kerastl[serving]`` extra).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerastl.data import header
from kerastl.errors import UserInputError, require
from kerastl.export.signatures import (
    BYTES_INPUT,
    IMAGES_INPUT,
    IMAGES_SIGNATURE,
    SERVING_SIGNATURE,
    decode_images,
)

log = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to replay more than this


def _serving_protos():
    purpose = "Writing or reading TF Serving warmup requests"
    prediction_log_pb2 = require("tensorflow_serving.apis.prediction_log_pb2", "serving", purpose)
    predict_pb2 = require("tensorflow_serving.apis.predict_pb2", "serving", purpose)
    return prediction_log_pb2, predict_pb2


def _encode(image: np.ndarray, fmt: str) -> bytes:
    pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    if fmt == "png":
        return tf.io.encode_png(pixels).numpy()
    return tf.io.encode_jpeg(pixels, quality=95).numpy()


def synthetic_examples(size: tuple[int, int], count: int = 4, seed: int = 0) -> list[bytes]:
    """Smooth colour images with shapes, as JPEG and PNG files (at and above ``size``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        scale = 1 if i % 2 == 0 else 2  # also exercise the in-graph resize
        h, w = size[0] * scale, size[1] * scale
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        image = np.stack([255 * xx / max(w - 1, 1), 255 * yy / max(h - 1, 1),
                          np.full((h, w), rng.uniform(0, 255))], axis=-1)
        cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, 0.25 * min(h, w)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        out.append(_encode(image, "png" if i % 2 else "jpeg"))
    return out


def example_bytes(example_images, size: tuple[int, int], *, limit: int = 8,
                  max_pixels: int | None = None) -> list[bytes]:
    """Turn what the user gave as examples into at most ``limit`` encoded image files.

    Args:
        example_images: ``None`` (synthetic images), an array of ``[0, 255]``
            images ``(N, H, W, 3)``, a ``tf.data.Dataset`` of images or
            ``(images, labels)`` batches, or a list of file paths / encoded bytes.
        size: the model's ``(height, width)`` (for the synthetic images).
        limit: most examples to keep.
        max_pixels: most pixels an example file may declare (its header is read
            before anything is decoded; default: see :mod:`kerastl.data.header`).
    """
    if example_images is None:
        log.info("No example_images given: the warmup requests use synthetic JPEG/PNG "
                 "images; pass real ones (e.g. a validation dataset) to warm up on real data.")
        return synthetic_examples(size)[:limit]
    if isinstance(example_images, tf.data.Dataset):
        dataset = example_images.unbatch() if _is_batched(example_images) else example_images
        arrays = [np.asarray(item[0] if isinstance(item, tuple) else item)
                  for item in dataset.take(limit)]
        example_images = np.stack(arrays) if arrays else np.zeros((0, 1, 1, 3))
    if isinstance(example_images, np.ndarray | tf.Tensor):
        images = np.asarray(example_images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
            raise UserInputError(
                "example_images must be RGB images of shape (N, height, width, 3) in [0, 255]. "
                f"Received an array of shape {images.shape}")
        return [_encode(image, "jpeg") for image in images[:limit]]
    out = []
    for i, item in enumerate(list(example_images)[:limit]):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            if not path.exists():
                raise UserInputError(f"Example image not found: {path}")
            item = header.read_image(path, max_pixels)  # regular files only, size checked
        elif isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[-1] == 3:
            item = _encode(item.astype(np.float32), "jpeg")  # a photo of any size
        if not isinstance(item, bytes) or header.sniff_format(item) is None:
            raise UserInputError(
                "example_images entries must be paths to (or bytes of) JPEG, PNG, GIF, BMP "
                f"or WebP files, or (height, width, 3) arrays. Received: {str(item)[:60]!r}")
        header.check_pixels(item, max_pixels, name=f"example_images[{i}]")
        out.append(item)
    if not out:
        raise UserInputError("example_images is empty; give at least one image or None.")
    return out


def _is_batched(dataset: tf.data.Dataset) -> bool:
    spec = dataset.element_spec
    spec = spec[0] if isinstance(spec, tuple) else spec
    return len(spec.shape) == 4


def build_requests(model_name: str, examples: Sequence[bytes], size: tuple[int, int],
                   *, task: str, resize: str = "stretch") -> list:
    """``PredictionLog`` protos: each example alone, all of them batched, and float images.

    Both signatures are warmed up: ``serving_default`` with the encoded bytes
    and ``predict_images`` with the same images decoded in the same way.
    """
    prediction_log_pb2, predict_pb2 = _serving_protos()
    del task  # the requests are the same for classifiers and regressors

    def request(signature, key, tensor):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model_name
        req.model_spec.signature_name = signature
        req.inputs[key].CopyFrom(tensor)
        return prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=req))

    logs = [request(SERVING_SIGNATURE, BYTES_INPUT, tf.make_tensor_proto([b], dtype=tf.string))
            for b in examples]
    if len(examples) > 1:
        logs.append(request(SERVING_SIGNATURE, BYTES_INPUT,
                            tf.make_tensor_proto(list(examples), dtype=tf.string)))
    decode = tf.function(lambda data: decode_images(data, size, resize), autograph=False)
    images = decode(tf.constant(list(examples))).numpy()
    logs.append(request(IMAGES_SIGNATURE, IMAGES_INPUT, tf.make_tensor_proto(images[:1])))
    if len(images) > 1:
        logs.append(request(IMAGES_SIGNATURE, IMAGES_INPUT, tf.make_tensor_proto(images)))
    return logs[:MAX_WARMUP_RECORDS]


def write_warmup_requests(path: str | os.PathLike, logs: Sequence) -> int:
    """Write ``PredictionLog`` protos as a TFRecord file; returns the number written."""
    if len(logs) > MAX_WARMUP_RECORDS:
        raise UserInputError(f"TF Serving replays at most {MAX_WARMUP_RECORDS} warmup "
                             f"records. Received: {len(logs)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())
    return len(logs)


def read_warmup_requests(path: str | os.PathLike) -> list:
    """Parse a warmup file back into ``PredictionLog`` protos (raises on a corrupt file)."""
    prediction_log_pb2, _ = _serving_protos()
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"No warmup file at {path}")
    out = []
    for record in tf.data.TFRecordDataset(str(path)):
        entry = prediction_log_pb2.PredictionLog()
        entry.ParseFromString(record.numpy())
        out.append(entry)
    return out
