"""``kerastl explain MODEL IMAGES... --output DIR``: Grad-CAM overlays of a classifier."""

from __future__ import annotations

import pathlib

from kerastl.cli.options import add_max_pixels
from kerastl.errors import UserInputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="Grad-CAM heatmaps: where a convolutional classifier looks",
        description="For each image, write DIR/<image>.gradcam.png: the image beside its "
                    "Grad-CAM heatmap (the last convolutional feature map of the backbone "
                    "weighted by the gradient of the class's logit) for the predicted class, "
                    "or --class. Images are decoded and resized as in training.")
    p.add_argument("model", metavar="MODEL", help="a .keras file or a run folder")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--class", dest="class_name", default=None, metavar="CLASS",
                   help="explain this class (a name or an index) for every image "
                        "(default: each image's predicted class)")
    add_max_pixels(p)
    p.set_defaults(func=run)


def _class_index(value: str | None, names: list[str]) -> int | None:
    if value is None:
        return None
    if value in names:
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    raise UserInputError(f"--class {value!r} is not one of the model's classes "
                         f"({', '.join(names[:20])}) nor an index below {len(names)}")


def run(args) -> int:
    import numpy as np

    from kerastl.explain import grad_cam, save_overlays
    from kerastl.loading import load_keras_model
    from kerastl.models import contract_of

    path = pathlib.Path(args.model)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise UserInputError(f"MODEL {args.model} is not a .keras file or a run folder")
    output = pathlib.Path(args.output)
    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output} is a file; give a folder")
    model = load_keras_model(path)
    contract = contract_of(model)
    if contract["kind"] != "image" or contract["task"] == "regression":
        raise UserInputError("kerastl explain takes an image classifier")
    names = contract["class_names"] or [str(i) for i in range(int(model.output_shape[-1]))]
    chosen = _class_index(args.class_name, names)
    files, images = read_images(model, args.images, max_pixels=args.max_pixels)
    probs = np.asarray(model.predict(images, verbose=0))
    classes = probs.argmax(axis=1) if chosen is None else np.full(len(images), chosen)
    heatmaps = grad_cam(model, images, classes)
    captions = [f"{pathlib.Path(str(f)).name}: {names[c]} ({p[c]:.2f})"
                for f, c, p in zip(files, classes, probs, strict=True)]
    written = save_overlays(images, heatmaps, files, output, captions=captions)
    for caption, png in zip(captions, written, strict=True):
        print(f"{caption} -> {png}")
    return 0


def read_images(model, images, *, max_pixels: int | None = None):
    """``(names, float32 (N, H, W, 3))``: image files, folders or encoded bytes decoded and
    resized as the model was trained (its own size and resize mode)."""
    import numpy as np
    import tensorflow as tf

    from kerastl.evaluation import _prediction_inputs
    from kerastl.export.signatures import decode_images, model_image_size
    from kerastl.models import contract_of

    size = model_image_size(model)
    mode = contract_of(model)["resize"] or "stretch"
    names, batches = _prediction_inputs(images, size, max_pixels)
    arrays = [decode_images(tf.constant(b), size, mode).numpy() if isinstance(b, list)
              else np.asarray(b, np.float32) for b in batches(32)]
    return names, np.concatenate(arrays)
