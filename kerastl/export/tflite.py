"""TFLite export: float, dynamic-range, float16 and int8 models, compared with Keras.

Each ``.tflite`` takes float32 ``[0, 255]`` RGB images of the model's size
(preprocessing is inside, as in Keras) and returns the model's outputs. The
int8 model is calibrated on a representative dataset of real images and
keeps float32 input and output so clients feed the same pixels.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerastl._quiet import quiet_loggers
from kerastl.errors import UserInputError, require
from kerastl.export.signatures import model_image_size

log = logging.getLogger(__name__)

TFLITE_VARIANTS = ("float", "dynamic", "float16", "int8")


@dataclasses.dataclass
class TFLiteResult:
    """One converted model and how closely it answers like Keras on the check images."""

    variant: str
    path: Path
    size_bytes: int
    top1_agreement: float
    max_abs_diff: float
    num_images: int

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        return out


def check_variants(variants) -> tuple[str, ...]:
    """Normalise ``"float,int8"`` or a list to a tuple of known variant names."""
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    variants = tuple(variants)
    unknown = [v for v in variants if v not in TFLITE_VARIANTS]
    if unknown or not variants:
        raise UserInputError(f"TFLite variants must be among {', '.join(TFLITE_VARIANTS)}. "
                             f"Received: {', '.join(map(str, variants)) or 'nothing'}")
    return variants


def convert(model: keras.Model, variant: str = "float",
            representative_images: np.ndarray | None = None) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer.

    Args:
        model: a Keras model from float32 ``[0, 255]`` images.
        variant: ``"float"`` (no quantisation), ``"dynamic"`` (int8 weights,
            float activations), ``"float16"`` (float16 weights) or ``"int8"``
            (int8 weights and activations, calibrated on ``representative_images``).
        representative_images: float ``[0, 255]`` images ``(N, H, W, 3)``; needed for int8.

    Returns:
        The ``.tflite`` file's bytes.
    """
    check_variants([variant])
    height, width = model_image_size(model)
    if variant == "int8" and (representative_images is None or not len(representative_images)):
        raise UserInputError("int8 TFLite needs representative images to calibrate "
                             "activation ranges (e.g. 100 training images).")
    # Keras' own ExportArchive tracks the variables the function uses, so the converter can
    # freeze them (a bare tf.function over a Keras 3 model leaves them uninitialised).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda images: model(images, training=False),
                         input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32)])
    with tempfile.TemporaryDirectory(prefix="kerastl-tflite-") as tmp:
        with quiet_loggers("absl", "tensorflow"):
            archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        _configure(converter, variant, representative_images)
        return converter.convert()


def _configure(converter, variant: str, representative_images) -> None:
    if variant != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        images = np.asarray(representative_images, dtype=np.float32)

        def representative():
            for image in images:
                yield [image[None]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def run_tflite(model_content: bytes, images: np.ndarray) -> np.ndarray:
    """Run a ``.tflite`` model (bytes) image by image in LiteRT; returns the stacked outputs.

    Uses ``ai_edge_litert``'s Interpreter, the maintained TFLite runtime
    (``tf.lite.Interpreter`` is deprecated and scheduled for removal).
    """
    interpreter_lib = require("ai_edge_litert.interpreter", "serving", "Running TFLite models")
    interpreter = interpreter_lib.Interpreter(model_content=model_content)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in np.asarray(images, dtype=np.float32):
        interpreter.set_tensor(input_index, image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index)[0].copy())
    return np.stack(outputs)


def export_tflite(model: keras.Model, out_dir: str | os.PathLike, *,
                  variants: Sequence[str] | str = ("float",), images: np.ndarray | None = None,
                  representative_images: np.ndarray | None = None,
                  class_names: Sequence[str] | None = None,
                  name: str = "model") -> list[TFLiteResult]:
    """Write TFLite variants of ``model`` to ``out_dir`` and compare each with Keras.

    Writes ``<name>_<variant>.tflite`` for each variant, ``labels.txt`` (when
    ``class_names``) and ``tflite_report.json`` (the agreement figures).

    Args:
        model: the Keras model.
        out_dir: output folder (created).
        variants: any of ``"float"``, ``"dynamic"``, ``"float16"``, ``"int8"``.
        images: float ``[0, 255]`` images to compare on; default: 32 crops of
            scikit-image sample photos.
        representative_images: calibration images for int8 (default: ``images``).
        class_names: written to ``labels.txt`` next to the models.
        name: file name prefix.

    Returns:
        One :class:`TFLiteResult` per variant (top-1 agreement with Keras,
        max absolute difference of outputs, file size).
    """
    variants = check_variants(variants)
    size = model_image_size(model)
    if images is None:
        from kerastl.export.samples import sample_images

        images = sample_images(32, size, seed=1)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (*size, 3) or not len(images):
        raise UserInputError(f"images must have shape (N, {size[0]}, {size[1]}, 3). "
                             f"Received: {images.shape}")
    representative = images if representative_images is None else representative_images
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    results = []
    for variant in variants:
        content = convert(model, variant, representative)
        path = out_dir / f"{name}_{variant}.tflite"
        tmp = path.with_suffix(".tflite.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        got = run_tflite(content, images)
        agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
        result = TFLiteResult(variant, path, len(content), agreement,
                              float(np.max(np.abs(got - expected))), len(images))
        log.info("TFLite %-8s %8.1f KB  top-1 agreement with Keras %.1f%%  max |diff| %.2e",
                 variant, len(content) / 1024, 100 * agreement, result.max_abs_diff)
        results.append(result)
    if class_names is not None:
        (out_dir / "labels.txt").write_text("\n".join(map(str, class_names)) + "\n")
    (out_dir / "tflite_report.json").write_text(
        json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    return results
