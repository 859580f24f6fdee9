"""Verify an export: do the loaders that consume it answer like the Keras model?

:func:`verify` sends real images (as float arrays, PNG bytes, JPEG bytes and
native-size PNG photos, to check the in-graph resize), an empty batch, garbage
bytes and every warmup record to each consumer of the export, each in a fresh
process that never imports kerastl (see :mod:`kerastl.export.consumers`):

- ``tf.saved_model.load`` (object-based);
- the session-based loader of ``saved_model_cli run``;
- TensorFlow's C++ ``LoadSavedModel``, the loader TF Serving links, through the C
  API, which also replays every warmup record as TF Serving does at load time;
- LiteRT's Interpreter for each ``.tflite`` exported next to the version.

Every answer is compared with the Keras model in this process. A consumer that
cannot load or answer fails the verification, named in :meth:`VerifyReport.failure`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerastl.errors import UserInputError, require
from kerastl.export.checks import (
    Check,
    VerifyReport,
    max_diff,
    warmup_arrays,
    warmup_replay_check,
)
from kerastl.export.consumers import (
    SAVED_MODEL_CONSUMERS,
    ConsumerResult,
    pack_bytes,
    run_consumers,
)
from kerastl.export.listing import _size_from_signature, show_signatures  # noqa: F401
from kerastl.export.samples import PHOTOS as _PHOTOS  # noqa: F401  (kept importable)
from kerastl.export.samples import random_crops, sample_images, sample_photos  # noqa: F401
from kerastl.export.samples import resize_rounded as _resize  # noqa: F401
from kerastl.export.saved_model import MODELS_CONFIG, resolve_version_dir
from kerastl.export.signatures import BYTES_INPUT, IMAGES_SIGNATURE, SERVING_SIGNATURE

TFLITE_MIN_AGREEMENT = 0.99  # float TFLite: least top-1 agreement with Keras


def _training_view(photo: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """What kerastl's data layer makes of a decoded photo (float32, the model's size)."""
    from kerastl.data import decode

    image = decode.resize_image(tf.convert_to_tensor(photo, tf.uint8), size, resize)
    if resize == "random_crop":
        image = decode.central_crop_batch(image[None], size)[0]
    return tf.cast(image, tf.float32).numpy()


def _encode(images: np.ndarray, fmt: str, quality: int = 95) -> list[bytes]:
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    if fmt == "png":
        return [tf.io.encode_png(p).numpy() for p in pixels]
    return [tf.io.encode_jpeg(p, quality=quality).numpy() for p in pixels]


def _models_config_check(path: Path) -> Check | None:
    config = path.parent.parent / MODELS_CONFIG
    if not config.is_file():
        return None
    config_pb2 = require("tensorflow_serving.config.model_server_config_pb2", "serving",
                         "Checking models.config")
    from google.protobuf import text_format

    try:
        parsed = text_format.Parse(config.read_text(), config_pb2.ModelServerConfig())
    except text_format.ParseError as err:
        return Check("models.config", False, f"does not parse as ModelServerConfig: {err}")
    names = [c.name for c in parsed.model_config_list.config]
    return Check("models.config", path.parent.name in names,
                 f"ModelServerConfig lists {names}")


def tflite_files(path: Path) -> list[Path]:
    """The ``.tflite`` files exported next to a version (``<model>/tflite/<version>/``)."""
    folder = path.parent / "tflite" / path.name
    return sorted(folder.glob("*.tflite")) if folder.is_dir() else []


def _prepare_images(images, num_images, size, resize, seed):
    """(model-size float images, native-size photos or None, whether the user gave them)."""
    originals = None
    user_images = images is not None
    if images is None:
        _, originals = sample_images(num_images, size, seed=seed, return_crops=True)
    elif not isinstance(images, np.ndarray | tf.Tensor):  # native-size photos
        originals = [np.clip(np.round(np.asarray(i, np.float32)), 0, 255).astype(np.uint8)
                     for i in images]
        if not originals or any(o.ndim != 3 or o.shape[-1] != 3 for o in originals):
            raise UserInputError("images must be an array (N, H, W, 3) of the model's size or "
                                 "a non-empty list of RGB images (height, width, 3).")
    if originals is not None:  # the model-size images are what training would have made
        images = np.stack([_training_view(o, size, resize) for o in originals])
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (*size, 3) or not len(images):
        raise UserInputError(f"images must have shape (N, {size[0]}, {size[1]}, 3). "
                             f"Received: {images.shape}")
    return np.clip(np.round(images), 0, 255), originals, user_images  # PNG holds integers


def requests(images: np.ndarray, originals: list[np.ndarray] | None = None,
             jpeg_quality: int = 95) -> dict:
    """The requests every consumer answers: float ``images`` (model size), their PNG bytes,
    and the native-size ``originals`` as PNG and JPEG bytes (else ``images`` as JPEG)."""
    arrays = {"images": np.asarray(images, np.float32)}
    pack_bytes(arrays, "png", _encode(images, "png"))
    if originals is not None:
        # what a client sends: the photo's own bytes, decoded and resized in the graph
        pack_bytes(arrays, "large_png", [tf.io.encode_png(o).numpy() for o in originals])
        pack_bytes(arrays, "jpeg", [tf.io.encode_jpeg(o, quality=jpeg_quality).numpy()
                                    for o in originals])
    else:
        pack_bytes(arrays, "jpeg", _encode(images, "jpeg", jpeg_quality))
    return arrays


def verify(path: str | os.PathLike, model: keras.Model | None = None, *, images=None,
           num_images: int = 32, atol: float = 1e-5, jpeg_min_agreement: float | None = 0.97,
           jpeg_quality: int = 95, seed: int = 0, timeout: float = 600,
           consumers=SAVED_MODEL_CONSUMERS, tflite: bool = True) -> VerifyReport:
    """Check that every loader that consumes an export answers like the Keras model.

    Each consumer (``tf.saved_model.load``, the session loader of ``saved_model_cli``,
    TensorFlow's C++ loader as TF Serving uses it, and LiteRT for ``.tflite`` files
    exported next to the version) runs in its own fresh process without kerastl.

    Args:
        path: a version folder (or a model folder: its latest version). A text
            export is checked by :func:`kerastl.export.verify_text.verify_text`
            (``images`` then holds the texts to send, or ``None``).
        model: the Keras model that was exported; ``None`` compares the consumers
            with the ``predict_images`` answers of ``tf.saved_model.load``.
        images: float ``[0, 255]`` images ``(N, H, W, 3)`` of the model's size,
            or a list of RGB photos of any size (sent as their own PNG/JPEG
            bytes and resized in the graph, as a client would); default:
            ``num_images`` native-size crops of the sample photos shipped with kerastl.
        num_images: how many sample images to use when ``images`` is None.
        atol: largest allowed absolute difference of scores.
        jpeg_min_agreement: least fraction of JPEG-encoded images whose top-1
            class must match the lossless answer. Required only for ``images``
            you pass (in-domain images): on the sample photos a fine-tuned model
            is often undecided, and near-ties flip under any lossy coding, so
            there it is reported only. ``None``: report only.
        jpeg_quality: JPEG quality of the encoded images.
        seed: seed of the sample crops.
        timeout: seconds each consumer's process may take.
        consumers: which SavedModel consumers to run (default: all three).
        tflite: also run the ``.tflite`` files of this version in LiteRT.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` tells whether all required checks
        passed and ``report.failure()`` names the first consumer and check that failed.
    """
    path = resolve_version_dir(path)
    unknown = [c for c in consumers if c not in SAVED_MODEL_CONSUMERS]
    if unknown or not consumers:
        raise UserInputError(f"consumers must be among {', '.join(SAVED_MODEL_CONSUMERS)}. "
                             f"Received: {consumers!r}")
    meta_file = path / "assets.extra" / "kerastl.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if meta.get("kind") == "text":  # raw strings in: images= may hold the texts
        from kerastl.export.verify_text import verify_text

        return verify_text(path, model, texts=images, atol=atol, timeout=timeout,
                           consumers=consumers)
    listing = show_signatures(path)
    size = tuple(meta.get("image_size", ())) or _size_from_signature(path)
    resize = meta.get("resize", "stretch")
    images, originals, user_images = _prepare_images(images, num_images, size, resize, seed)
    arrays = requests(images, originals, jpeg_quality)
    checks: list[Check] = []
    warmup_arrays(path, arrays, checks)
    targets = {c: path for c in consumers}  # in the order given: C++ first by default
    if tflite:
        targets.update({f"litert@{f.stem}": f for f in tflite_files(path)})
    results = run_consumers(targets, arrays, timeout=timeout)
    clean = [r for r in results.values() if not r.report.get("kerastl_imported", False)]
    checks.append(Check("fresh processes without kerastl", len(clean) == len(results),
                        f"{len(results)} consumers in fresh processes, none imported kerastl"
                        if len(clean) == len(results) else "kerastl was imported"))
    metrics = {"num_images": len(images), "consumers": {}}
    expected = (keras.ops.convert_to_numpy(model(images, training=False))
                if model is not None else None)
    for result in results.values():
        if result.consumer == "litert":
            continue
        ctx = _Context(result, expected, atol, originals is not None)
        checks += _saved_model_checks(ctx, path, metrics, jpeg_min_agreement, user_images,
                                      jpeg_quality)
    for result in results.values():
        if result.consumer == "litert":
            checks.append(_litert_check(result, expected, metrics))
    _headline_metrics(metrics)
    config_check = _models_config_check(path)
    if config_check:
        checks.append(config_check)
    return VerifyReport(path=path, checks=checks, signatures=listing, metrics=metrics)


@dataclasses.dataclass
class _Context:
    result: ConsumerResult
    expected: np.ndarray | None
    atol: float
    has_photos: bool


def _saved_model_checks(ctx: _Context, path, metrics, jpeg_min_agreement, user_images,
                        jpeg_quality) -> list[Check]:
    result, label = ctx.result, ctx.result.label
    if not result.ok:
        return [Check(f"{label}: loads and answers", False, result.error)]
    out = result.outputs
    key = "probabilities" if "images/probabilities" in out else "predictions"
    reference = ctx.expected if ctx.expected is not None else out[f"images/{key}"]
    versus = "Keras" if ctx.expected is not None else IMAGES_SIGNATURE
    report = result.report
    mine = metrics["consumers"][result.consumer] = {"load_seconds": report["load_seconds"],
                                                    "seconds": result.seconds}
    checks = [Check(f"{label}: loads and answers", True,
                    f"signatures {report['signatures']}, loaded in "
                    f"{report['load_seconds']:.1f} s")]
    diff = mine["keras_max_abs_diff"] = max_diff(out[f"images/{key}"], reference)
    checks.append(Check(f"{label}: {IMAGES_SIGNATURE} vs {versus}", diff <= ctx.atol,
                        f"max |diff| {diff:.2e} on {len(reference)} images (atol {ctx.atol})"))
    diff = mine["png_max_abs_diff"] = max_diff(out[f"png/{key}"], reference)
    others = max((max_diff(out[f"png/{k.split('/', 1)[1]}"], v) for k, v in out.items()
                  if k.startswith("images/")), default=0.0)
    checks.append(Check(f"{label}: {SERVING_SIGNATURE} PNG bytes vs {versus}",
                        max(diff, others) <= ctx.atol,
                        f"max |diff| {diff:.2e} (all outputs vs {IMAGES_SIGNATURE}: "
                        f"{others:.2e}; atol {ctx.atol})"))
    if ctx.has_photos:
        diff = mine["resize_max_abs_diff"] = max_diff(out[f"large_png/{key}"], reference)
        checks.append(Check(f"{label}: {SERVING_SIGNATURE} native-size PNG photos",
                            diff <= ctx.atol,
                            f"max |diff| {diff:.2e} vs {versus} on the photos prepared by "
                            "kerastl's data layer"))
    if key == "probabilities":
        lossless = out.get(f"large_png/{key}", out[f"images/{key}"])
        required = (jpeg_min_agreement is not None) and user_images
        checks += _classifier_checks(out, lossless, path, label, mine,
                                     jpeg_min_agreement or 0.0, required, jpeg_quality)
    empty = out.get(f"empty/{key}")
    checks.append(Check(f"{label}: empty batch", empty is not None and empty.shape[0] == 0,
                        f"{key} shape {None if empty is None else empty.shape}"))
    error = report.get("garbage_error")
    named = bool(error) and BYTES_INPUT in error["message"] and "item 1" in error["message"]
    detail = "no error raised"
    if error:
        line = next((ln for ln in error["message"].splitlines() if BYTES_INPUT in ln),
                    error["message"])
        detail = line.strip()[:220]
    checks.append(Check(f"{label}: garbage bytes rejected", named, detail))
    replay = warmup_replay_check(label, report)
    return checks + ([replay] if replay is not None else [])


def _classifier_checks(out, lossless, path, label, mine, jpeg_min_agreement, required,
                       jpeg_quality) -> list[Check]:
    top1 = out["images/probabilities"].argmax(-1)
    labels_file = path / "assets" / "labels.txt"
    labels = labels_file.read_text().splitlines() if labels_file.is_file() else None
    names = [str(n) for n in out["images/class_names"]]
    consistent = bool(np.all(out["images/classes"] == top1)) and (
        labels is None or names == [labels[i] for i in top1])
    agreement = float(np.mean(out["jpeg/probabilities"].argmax(-1) == lossless.argmax(-1)))
    mine["jpeg_top1_agreement"] = agreement
    note = "" if required else ("; informational: sample photos are not this model's "
                                "domain, pass your own images to make it a requirement")
    return [Check(f"{label}: classes / class_names / labels.txt", consistent,
                  "top-1 index and name agree with probabilities and assets/labels.txt"),
            Check(f"{label}: JPEG bytes top-1 vs lossless", agreement >= jpeg_min_agreement,
                  f"{agreement:.1%} same top-1 (quality {jpeg_quality}; want "
                  f"{jpeg_min_agreement:.0%}{note})", required=required)]


def _litert_check(result: ConsumerResult, expected, metrics) -> Check:
    variant = Path(result.target).stem.rsplit("_", 1)[-1]
    float_model = variant == "float"
    name = f"{result.label}: {Path(result.target).name}"
    if not result.ok:
        return Check(f"{name} loads and answers", False, result.error, required=True)
    if expected is None:
        return Check(f"{name} loads and answers", True, "no Keras model to compare with")
    got = result.outputs["images/scores"]
    if got.shape != expected.shape:
        return Check(f"{name} vs Keras", False, f"output shape {got.shape}, Keras "
                     f"{expected.shape}")
    diff = float(np.max(np.abs(got - expected)))
    if expected.shape[-1] > 1:
        agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
        detail = f"top-1 agreement {agreement:.1%}, max |diff| {diff:.2e}"
    else:
        agreement = 1.0
        detail = f"max |diff| {diff:.2e}"
    metrics.setdefault("litert", {})[variant] = {"top1_agreement": agreement,
                                                 "max_abs_diff": diff}
    if float_model:
        detail += f" (want >= {TFLITE_MIN_AGREEMENT:.0%} for float)"
        return Check(f"{name} vs Keras", agreement >= TFLITE_MIN_AGREEMENT, detail)
    return Check(f"{name} vs Keras", True, detail + " (quantised: reported only)",
                 required=False)


def _headline_metrics(metrics: dict) -> None:
    """The worst figure over all consumers, under the names earlier reports used."""
    per = metrics["consumers"].values()
    for name in ("keras_max_abs_diff", "png_max_abs_diff", "resize_max_abs_diff"):
        values = [m[name] for m in per if name in m]
        if values:
            metrics[name] = max(values)
    agreements = [m["jpeg_top1_agreement"] for m in per if "jpeg_top1_agreement" in m]
    if agreements:
        metrics["jpeg_top1_agreement"] = min(agreements)
    loads = [m["load_seconds"] for m in per]
    if loads:
        metrics["load_seconds"] = max(loads)
