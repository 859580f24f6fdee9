"""Verify an export: does a fresh TensorFlow-only process answer like the Keras model?

:func:`verify` loads the SavedModel with plain ``tf.saved_model.load`` in a
new Python process that never imports kerastl (``fresh_check.py``), sends it
real images as float arrays, PNG bytes, JPEG bytes and larger PNGs (to check
the in-graph resize), an empty batch and garbage bytes, replays the warmup
requests, and compares everything with the Keras model in this process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerastl.errors import UserInputError, require
from kerastl.export import warmup as warmup_lib
from kerastl.export.saved_model import MODELS_CONFIG, resolve_version_dir
from kerastl.export.signatures import BYTES_INPUT, IMAGES_SIGNATURE, SERVING_SIGNATURE

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
           "immunohistochemistry", "stereo_motorcycle", "colorwheel", "camera", "coins")


@dataclasses.dataclass
class Check:
    """One verified property: ``passed`` against a threshold, explained in ``detail``."""

    name: str
    passed: bool
    detail: str
    required: bool = True


@dataclasses.dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` is True when every required check passed."""

    path: Path
    checks: list[Check]
    signatures: str
    metrics: dict

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks if c.required)

    def summary(self) -> str:
        """A human-readable table of the checks."""
        lines = [f"Verification of {self.path}:"]
        for c in self.checks:
            mark = "PASS" if c.passed else ("FAIL" if c.required else "warn")
            lines.append(f"  [{mark}] {c.name}: {c.detail}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def show_signatures(path: str | os.PathLike) -> str:
    """List the SignatureDefs of a SavedModel the way ``saved_model_cli show --all`` does."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = resolve_version_dir(path)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    meta = proto.meta_graphs[0]
    lines = ["MetaGraphDef with tag-set: '" + ", ".join(meta.meta_info_def.tags)
             + "' contains the following SignatureDefs:", ""]

    def tensor(kind, key, info):
        dims = info.tensor_shape
        shape = ("unknown_rank" if dims.unknown_rank else
                 "(" + ", ".join(str(d.size) for d in dims.dim) + ("," if len(dims.dim) == 1
                                                                    else "") + ")")
        return [f"    {kind}['{key}'] tensor_info:",
                f"        dtype: {types_pb2.DataType.Name(info.dtype)}",
                f"        shape: {shape}", f"        name: {info.name}"]

    for key in sorted(meta.signature_def):
        if key == "__saved_model_init_op":
            continue
        sig = meta.signature_def[key]
        lines.append(f"signature_def['{key}']:")
        lines.append("  The given SavedModel SignatureDef contains the following input(s):")
        for name in sorted(sig.inputs):
            lines += tensor("inputs", name, sig.inputs[name])
        lines.append("  The given SavedModel SignatureDef contains the following output(s):")
        for name in sorted(sig.outputs):
            lines += tensor("outputs", name, sig.outputs[name])
        lines.append(f"  Method name is: {sig.method_name}")
        lines.append("")
    return "\n".join(lines)


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize rounded to integers: the data layer's default ("stretch")."""
    out = tf.image.resize(tf.convert_to_tensor(images, tf.float32), size, method="bilinear")
    return tf.clip_by_value(tf.round(out), 0, 255).numpy().astype(np.float32)


def _training_view(photo: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """What kerastl's data layer makes of a decoded photo (float32, the model's size)."""
    from kerastl.data import decode

    image = decode.resize_image(tf.convert_to_tensor(photo, tf.uint8), size, resize)
    if resize == "random_crop":
        image = decode.central_crop_batch(image[None], size)[0]
    return tf.cast(image, tf.float32).numpy()


def sample_photos() -> list[np.ndarray]:
    """scikit-image's sample photos as ``uint8`` RGB arrays (greyscale repeated)."""
    data = require("skimage.data", "dev", "Sampling verification images")
    photos = []
    for name in _PHOTOS:
        photo = getattr(data, name)()
        photo = np.asarray(photo[0] if isinstance(photo, tuple) else photo)  # stereo pair
        photos.append(np.repeat(photo[..., None], 3, -1) if photo.ndim == 2 else photo[..., :3])
    return photos


def random_crops(photos: list[np.ndarray], count: int, min_side: int, *,
                 seed: int = 0) -> list[np.ndarray]:
    """``count`` square crops, cycling through ``photos``, at their native resolution.

    Sides are drawn between ``min_side`` and the photo's short side, so the
    crops are downscaled to the model's size, as client photos usually are.
    """
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        low = min(min_side, h, w)
        side = int(rng.integers(low, min(h, w) + 1))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crops.append(photo[top:top + side, left:left + side])
    return crops


def sample_images(count: int, size: tuple[int, int], *, seed: int = 0,
                  return_crops: bool = False):
    """Random crops of scikit-image's sample photos, resized to ``size`` like the data layer.

    Returns:
        float32 ``(count, H, W, 3)`` integer-valued images in ``[0, 255]``
        (and the native-resolution ``uint8`` crops when ``return_crops``).
    """
    crops = random_crops(sample_photos(), count, max(size), seed=seed)
    images = np.stack([_resize(c[None], size)[0] for c in crops])
    return (images, crops) if return_crops else images


def _pack(arrays: dict, key: str, items: list[bytes]) -> None:
    offsets = np.cumsum([0] + [len(b) for b in items]).astype(np.int64)
    arrays[f"{key}__data"] = np.frombuffer(b"".join(items), dtype=np.uint8)
    arrays[f"{key}__offsets"] = offsets


def _encode(images: np.ndarray, fmt: str, quality: int = 95) -> list[bytes]:
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    if fmt == "png":
        return [tf.io.encode_png(p).numpy() for p in pixels]
    return [tf.io.encode_jpeg(p, quality=quality).numpy() for p in pixels]


def _run_fresh_process(path: Path, arrays: dict, timeout: float):
    script = Path(__file__).with_name("fresh_check.py")
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH",
                    "CUDA_VISIBLE_DEVICES")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryDirectory(prefix="kerastl-verify-") as tmp:
        inputs, outputs, report = (os.path.join(tmp, n) for n in ("in.npz", "out.npz",
                                                                  "report.json"))
        np.savez(inputs, **arrays)
        command = [sys.executable, "-I", str(script), str(path.resolve()), inputs, outputs,
                   report]
        proc = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=tmp)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise UserInputError(f"The SavedModel at {path} failed in a fresh TensorFlow "
                                 f"process (exit {proc.returncode}):\n{tail}")
        with np.load(outputs) as out:
            results = {k: out[k] for k in out.files}
        return results, json.loads(Path(report).read_text())


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind in "USO" or b.dtype.kind in "USO":
        return 0.0 if np.array_equal(a, b) else float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0


def _score_key(results: dict) -> str:
    return "probabilities" if "images/probabilities" in results else "predictions"


def _warmup_arrays(path: Path, arrays: dict, checks: list[Check]) -> None:
    file = path / "assets.extra" / warmup_lib.WARMUP_FILE
    if not file.is_file():
        checks.append(Check("warmup file", False, f"{file} is missing", required=False))
        return
    try:
        logs = warmup_lib.read_warmup_requests(file)
    except Exception as err:  # noqa: BLE001 - any parse failure is the finding
        checks.append(Check("warmup file", False, f"does not parse: {err}"))
        return
    ok = 0 < len(logs) <= warmup_lib.MAX_WARMUP_RECORDS
    checks.append(Check("warmup file", ok, f"{len(logs)} PredictionLog records parsed "
                        f"(limit {warmup_lib.MAX_WARMUP_RECORDS})"))
    for i, entry in enumerate(logs):
        request = entry.predict_log.request
        for input_name, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            key = f"warmup:{i}:{request.model_spec.signature_name}:{input_name}"
            if value.dtype == object:
                _pack(arrays, key, [bytes(v) for v in value.reshape(-1)])
            else:
                arrays[key] = value


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


def verify(path: str | os.PathLike, model: keras.Model | None = None, *, images=None,
           num_images: int = 32, atol: float = 1e-5, jpeg_min_agreement: float | None = 0.97,
           jpeg_quality: int = 95, seed: int = 0, timeout: float = 600) -> VerifyReport:
    """Check that an exported SavedModel answers like the Keras model, in a fresh process.

    Args:
        path: a version folder (or a model folder: its latest version).
        model: the Keras model that was exported; ``None`` checks only that
            the two signatures agree with each other.
        images: float ``[0, 255]`` images ``(N, H, W, 3)`` of the model's size,
            or a list of RGB photos of any size (sent as their own PNG/JPEG
            bytes and resized in the graph, as a client would); default:
            ``num_images`` native-size crops of scikit-image's sample photos.
        num_images: how many sample images to use when ``images`` is None.
        atol: largest allowed absolute difference of scores.
        jpeg_min_agreement: least fraction of JPEG-encoded images whose top-1
            class must match the lossless answer. Required only for ``images``
            you pass (in-domain images): on the default sample photos a
            fine-tuned model is often undecided, and near-ties flip under any
            lossy coding, so there it is reported only. ``None``: report only.
        jpeg_quality: JPEG quality of the encoded images.
        seed: seed of the sample crops.
        timeout: seconds the fresh process may take.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` tells whether all required checks passed.
    """
    path = resolve_version_dir(path)
    meta_file = path / "assets.extra" / "kerastl.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    listing = show_signatures(path)
    size = tuple(meta.get("image_size", ())) or _size_from_signature(path)
    resize = meta.get("resize", "stretch")
    user_images = images is not None
    originals = None
    if images is None:
        _, originals = sample_images(num_images, size, seed=seed, return_crops=True)
    elif not isinstance(images, np.ndarray | tf.Tensor):  # native-size photos
        originals = [np.clip(np.round(np.asarray(i, np.float32)), 0, 255).astype(np.uint8)
                     for i in images]
        if not originals or any(o.ndim != 3 or o.shape[-1] != 3 for o in originals):
            raise UserInputError("images must be an array (N, H, W, 3) of the model's size or "
                                 "a non-empty list of RGB images (height, width, 3).")
        images = None
    if originals is not None:  # the model-size images are what training would have made
        images = np.stack([_training_view(o, size, resize) for o in originals])
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (*size, 3) or not len(images):
        raise UserInputError(f"images must have shape (N, {size[0]}, {size[1]}, 3). "
                             f"Received: {images.shape}")
    images = np.clip(np.round(images), 0, 255)  # PNG holds integers
    arrays = {"images": images}
    _pack(arrays, "png", _encode(images, "png"))
    if originals is not None:
        # what a client sends: the photo's own bytes, decoded and resized in the graph
        _pack(arrays, "large_png", [tf.io.encode_png(o).numpy() for o in originals])
        _pack(arrays, "jpeg", [tf.io.encode_jpeg(o, quality=jpeg_quality).numpy()
                               for o in originals])
    else:
        _pack(arrays, "jpeg", _encode(images, "jpeg", jpeg_quality))
    checks: list[Check] = []
    _warmup_arrays(path, arrays, checks)
    results, report = _run_fresh_process(path, arrays, timeout)
    checks.append(Check("fresh process without kerastl", not report["kerastl_imported"],
                        f"signatures {report['signatures']}, loaded in "
                        f"{report['load_seconds']:.1f} s with tf.saved_model.load"))
    key = _score_key(results)
    reference = results[f"images/{key}"]
    metrics = {"num_images": len(images), "load_seconds": report["load_seconds"]}
    if model is not None:
        expected = keras.ops.convert_to_numpy(model(images, training=False))
        diff = _max_diff(reference, expected)
        metrics["keras_max_abs_diff"] = diff
        checks.append(Check(f"{IMAGES_SIGNATURE} vs Keras", diff <= atol,
                            f"max |diff| {diff:.2e} on {len(images)} images (atol {atol})"))
    diff = max(_max_diff(results[f"png/{k.split('/', 1)[1]}"], v)
               for k, v in results.items() if k.startswith("images/"))
    metrics["png_max_abs_diff"] = diff
    checks.append(Check(f"{SERVING_SIGNATURE} PNG bytes vs {IMAGES_SIGNATURE}", diff <= atol,
                        f"max |diff| {diff:.2e} over all outputs (atol {atol})"))
    if "large_png/" + key in results:
        diff = _max_diff(results[f"large_png/{key}"], reference)
        metrics["resize_max_abs_diff"] = diff
        checks.append(Check(f"{SERVING_SIGNATURE} native-size PNG photos", diff <= atol,
                            f"max |diff| {diff:.2e} vs {IMAGES_SIGNATURE} on the photos "
                            f"prepared by kerastl's data layer (resize={resize!r})"))
    if key == "probabilities":
        lossless = results.get(f"large_png/{key}", reference)
        required = (jpeg_min_agreement is not None) and user_images
        _classifier_checks(results, lossless, path, checks, metrics,
                           jpeg_min_agreement or 0.0, required, jpeg_quality)
    empty = results.get(f"empty/{key}")
    checks.append(Check("empty batch", empty is not None and empty.shape[0] == 0,
                        f"{key} shape {None if empty is None else empty.shape}"))
    error = report["garbage_error"]
    named = bool(error) and BYTES_INPUT in error["message"] and "item 1" in error["message"]
    detail = "no error raised"
    if error:
        line = next((ln for ln in error["message"].splitlines() if BYTES_INPUT in ln),
                    error["message"])
        detail = f"{error['type']}: {line.strip()[:220]}"
    checks.append(Check("garbage bytes rejected", named, detail))
    replays = report["warmup_replay"]
    if replays:
        failed = [r for r in replays if not r["ok"]]
        checks.append(Check("warmup requests replay", not failed,
                            f"{len(replays) - len(failed)}/{len(replays)} answered"
                            + (f"; first failure: {failed[0]['error']}" if failed else "")))
    config_check = _models_config_check(path)
    if config_check:
        checks.append(config_check)
    return VerifyReport(path=path, checks=checks, signatures=listing, metrics=metrics)


def _classifier_checks(results, lossless, path, checks, metrics, jpeg_min_agreement,
                       required, jpeg_quality) -> None:
    top1 = results["images/probabilities"].argmax(-1)
    labels_file = path / "assets" / "labels.txt"
    labels = labels_file.read_text().splitlines() if labels_file.is_file() else None
    names = [str(n) for n in results["images/class_names"]]
    consistent = bool(np.all(results["images/classes"] == top1)) and (
        labels is None or names == [labels[i] for i in top1])
    checks.append(Check("classes / class_names / labels.txt", consistent,
                        "top-1 index and name agree with probabilities and assets/labels.txt"))
    agreement = float(np.mean(results["jpeg/probabilities"].argmax(-1) == lossless.argmax(-1)))
    metrics["jpeg_top1_agreement"] = agreement
    note = "" if required else ("; informational: sample photos are not this model's "
                                "domain, pass your own images to make it a requirement")
    checks.append(Check("JPEG bytes top-1 vs lossless", agreement >= jpeg_min_agreement,
                        f"{agreement:.1%} same top-1 (quality {jpeg_quality}; want "
                        f"{jpeg_min_agreement:.0%}{note})", required=required))


def _size_from_signature(path: Path) -> tuple[int, int]:
    from tensorflow.core.protobuf import saved_model_pb2

    loaded_shape = None
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = proto.meta_graphs[0].signature_def.get(IMAGES_SIGNATURE)
    if sig is not None and sig.inputs:
        loaded_shape = [d.size for d in next(iter(sig.inputs.values())).tensor_shape.dim]
    if not loaded_shape or len(loaded_shape) != 4 or min(loaded_shape[1:3]) < 1:
        raise UserInputError(f"{path} has no '{IMAGES_SIGNATURE}' signature with a fixed "
                             "image size; was it exported by kerastl?")
    return int(loaded_shape[1]), int(loaded_shape[2])
