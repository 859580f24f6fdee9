"""``kerastl export``: a .keras model to a TF Serving SavedModel (and TFLite), verified.

Example::

    kerastl export flowers.keras --name flowers --labels labels.txt \\
        --tflite float,int8 --verify
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kerastl.cli.summary import add_json_flag, json_summary
from kerastl.defaults import RESIZE_MODES
from kerastl.errors import UserInputError
from kerastl.loading import load_keras_model

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a .keras model for TF Serving (and TFLite)",
        description="Write SavedModels/<name>/<version>/ with a raw-image-bytes "
                    "serving_default signature, a float predict_images signature, labels, "
                    "warmup requests and models.config; optionally TFLite models and a "
                    "verification in a fresh TensorFlow-only process.")
    parser.add_argument("model", help="the .keras model file")
    parser.add_argument("--name", required=True, help="model name (folder and TF Serving name)")
    parser.add_argument("--base-dir", default="SavedModels", help="export root (default: %(default)s)")
    parser.add_argument("--version", type=int, help="version number (default: next free one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--labels", help="text file with one class name per line, in label "
                                         "order (default: the class names the model keeps, "
                                         "else <model>.labels.txt or labels.txt next to it)")
    parser.add_argument("--class-names", help="comma-separated class names, in label order")
    parser.add_argument("--top-k", type=int, default=5, help="classes in top_k outputs (default: 5)")
    parser.add_argument("--resize", choices=RESIZE_MODES, default=None,
                        help="how serving_default resizes images (default: the resize the "
                             "model was trained with, which kerastl models keep; stretch for "
                             "other models)")
    parser.add_argument("--examples", help="folder of real images for the warmup requests, "
                                           "the TFLite comparison and --verify")
    parser.add_argument("--no-warmup", action="store_true",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    parser.add_argument("--serving-base-path", default="/models",
                        help="where the server sees --base-dir, for models.config "
                             "(default: %(default)s, the tensorflow/serving container)")
    parser.add_argument("--tflite", help="also write TFLite models: comma-separated among "
                                         "float,dynamic,float16,int8")
    parser.add_argument("--verify", action="store_true",
                        help="load the export in a fresh TensorFlow-only process and compare "
                             "it with the Keras model")
    parser.add_argument("--verify-images", type=int, default=32,
                        help="number of images for --verify and --tflite (default: 32)")
    add_json_flag(parser, "export path and version, TFLite files, verification")
    parser.set_defaults(func=run)


def read_labels(path: str | os.PathLike) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    labels = [line for line in lines if line]
    if not labels:
        raise UserInputError(f"The labels file {path} is empty.")
    return labels


def resolve_class_names(model_path: Path, labels: str | None, class_names: str | None,
                        model=None):
    """Class names from --class-names, --labels, the model itself (a kerastl task
    model keeps them) or a labels file next to the model."""
    if labels and class_names:
        raise UserInputError("Give either --labels or --class-names, not both.")
    if class_names:
        return [c.strip() for c in class_names.split(",")]
    if labels:
        if not Path(labels).is_file():
            raise FileNotFoundError(f"Labels file not found: {labels}")
        return read_labels(labels)
    if model is not None:
        from kerastl.models import contract_of

        contract = contract_of(model)
        if contract["class_names"] and contract["task"] != "regression":
            return contract["class_names"]
    for candidate in (model_path.with_suffix(".labels.txt"), model_path.parent / "labels.txt"):
        if candidate.is_file():
            log.debug("Class names from %s", candidate)
            return read_labels(candidate)
    return None


def _example_images(folder: str, size, limit: int, resize: str = "stretch"):
    """Up to ``limit`` images of ``folder``: files, native-size arrays, model-size arrays."""
    import tensorflow as tf

    from kerastl.data.header import image_files, read_images
    from kerastl.errors import tf_error_cause
    from kerastl.export.signatures import decode_images

    files = image_files([folder])[:limit]
    data = read_images(files)
    originals = []
    for f, d in zip(files, data, strict=True):
        try:
            originals.append(tf.io.decode_image(d, channels=3, expand_animations=False).numpy())
        except tf.errors.InvalidArgumentError as err:
            raise UserInputError(f"Could not decode the example image {f}: "
                                 f"{tf_error_cause(err)}") from err
    decode = tf.function(lambda d: decode_images(d, size, resize), autograph=False)
    return files, originals, decode(tf.constant(data)).numpy()


def run(args: argparse.Namespace) -> int:
    with json_summary(args.json) as summary:
        return _export(args, summary)


def _export(args: argparse.Namespace, summary: dict) -> int:
    from kerastl.export import export_saved_model
    from kerastl.export.signatures import model_image_size

    model_path = Path(args.model)
    model = load_keras_model(model_path)
    from kerastl.models import contract_of

    names = resolve_class_names(model_path, args.labels, args.class_names, model)
    if contract_of(model)["kind"] == "text":
        return _export_text(model, model_path, names, args, summary)
    size = model_image_size(model)
    resize = args.resize or contract_of(model)["resize"] or "stretch"
    files, originals, images = None, None, None
    if args.examples:
        files, originals, images = _example_images(args.examples, size,
                                                   max(args.verify_images, 1), resize)
    path = export_saved_model(
        model, args.base_dir, name=args.name, version=args.version, class_names=names,
        warmup=not args.no_warmup, overwrite=args.overwrite, top_k=args.top_k,
        example_images=files[:8] if files else None, resize=resize,
        serving_base_path=args.serving_base_path)
    summary.update(command="export", model=str(model_path), name=args.name,
                   version=int(path.name), path=str(path), class_names=names)
    status = 0
    if args.tflite:
        from kerastl.export.tflite import export_tflite

        out_dir = path.parent / "tflite" / path.name
        results = export_tflite(model, out_dir, variants=args.tflite, images=images,
                                class_names=names, name=args.name)
        log.info("TFLite models (%s) and tflite_report.json in %s",
                 ", ".join(r.variant for r in results), out_dir)
        summary["tflite"] = {r.variant: str(r.path) for r in results}
    if args.verify:
        status = _verify(path, model, originals, args, summary)
    return status


def _export_text(model, model_path: Path, names, args, summary: dict) -> int:
    """``kerastl export`` of a text model: raw strings in; --examples is a folder of .txt."""
    from kerastl.export import export_saved_model

    if args.tflite:
        raise UserInputError("--tflite exports image models only; a text model's tokenizer "
                             "runs in the SavedModel graph.")
    if args.resize:
        raise UserInputError("--resize applies to image models; this is a text model.")
    texts = None
    if args.examples:
        folder = Path(args.examples)
        found = sorted(folder.rglob("*.txt")) if folder.is_dir() else []
        if not found:
            raise UserInputError(f"--examples {folder}: no .txt files there (a text model's "
                                 "examples are texts).")
        texts = [f.read_text(encoding="utf-8", errors="replace")
                 for f in found[:max(args.verify_images, 1)]]
    path = export_saved_model(
        model, args.base_dir, name=args.name, version=args.version, class_names=names,
        warmup=not args.no_warmup, overwrite=args.overwrite, top_k=args.top_k,
        example_images=texts[:8] if texts else None,
        serving_base_path=args.serving_base_path)
    summary.update(command="export", model=str(model_path), name=args.name,
                   version=int(path.name), path=str(path), class_names=names)
    return _verify(path, model, texts, args, summary) if args.verify else 0


def _verify(path: Path, model, originals, args: argparse.Namespace, summary: dict) -> int:
    """Run every consumer of the export; a version that fails is withdrawn from serving."""
    from kerastl.atomic import atomic_write_json
    from kerastl.export.saved_model import write_models_config
    from kerastl.export.verify import verify

    report = verify(path, model, images=originals, num_images=args.verify_images)
    print(report.signatures)
    print(report.summary())
    verify_json = atomic_write_json(path.parent / f"verify-{path.name}.json",
                                    {"ok": report.ok, "metrics": report.metrics,
                                     "checks": [vars(c) for c in report.checks]}, indent=2)
    summary["verify"] = {"ok": report.ok, "report": str(verify_json)}
    if report.ok:
        return 0
    # Keep the files for inspection, under a name TF Serving's version poller ignores.
    rejected = path.parent / f"rejected-{path.name}"
    count = 1
    while rejected.exists():  # never replace an earlier rejected export
        count += 1
        rejected = path.parent / f"rejected-{path.name}.{count}"
    os.rename(path, rejected)
    write_models_config(args.base_dir, args.serving_base_path)
    failure = " ".join(report.failure().split())
    summary["verify"].update(failure=failure, moved_to=str(rejected))
    summary["path"] = str(rejected)
    print(f"kerastl: verification failed: {failure} (the export was moved to {rejected}, "
          "where TF Serving does not load it)", file=sys.stderr)
    return 1

