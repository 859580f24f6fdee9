"""``kerastl predict``: top-k predictions of a .keras model or an exported SavedModel.

A SavedModel is asked through its ``serving_default`` signature with the raw
file bytes, exactly as TF Serving would be; a ``.keras`` model gets the same
in-graph decoding and resizing.

Example::

    kerastl predict SavedModels/flowers photos/ --top-k 3 --format csv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kerastl.cli.export import resolve_class_names
from kerastl.cli.options import add_max_pixels
from kerastl.defaults import RESIZE_MODES
from kerastl.errors import UserInputError, tf_error_cause
from kerastl.loading import check_saved_model, load_keras_model

if TYPE_CHECKING:  # numpy is imported where used: the parser is built without it
    import numpy as np


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict images (or texts) with a .keras model or an exported "
                        "SavedModel",
        description="Print the top-k classes (or regression outputs) of each image, or of "
                    "each text for a text model (.txt files, folders of them, --text).")
    parser.add_argument("model", help="a .keras file, a SavedModel version folder, or a "
                                      "model folder (its latest version)")
    parser.add_argument("images", nargs="*", metavar="INPUTS",
                        help="image files and/or folders; for a text model, .txt files "
                             "and/or folders of them")
    parser.add_argument("--text", action="append", default=[], metavar="STRING",
                        help="text models: a text to classify (repeat for more)")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default: 5)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output format (default: %(default)s)")
    parser.add_argument("--output", "-o", help="write to this file instead of stdout (an "
                                             "existing file is replaced once every image is "
                                             "predicted)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--labels", help=".keras only: class names file, one per line "
                                         "(default: the class names the model keeps)")
    parser.add_argument("--class-names", help=".keras only: comma-separated class names")
    parser.add_argument("--resize", choices=RESIZE_MODES, default=None,
                        help=".keras only: how images are resized (default: the resize the "
                             "model was trained with, which kerastl models keep; stretch "
                             "for other models)")
    parser.add_argument("--trust-savedmodel", action="store_true",
                        help="SavedModel only: run it even if its serving_default holds ops "
                             "that write or read files, run Python or use the network (a "
                             "SavedModel is code; see docs/trust.md)")
    add_max_pixels(parser)
    parser.set_defaults(func=run)


class _SavedModelPredictor:
    def __init__(self, path: Path, trust: bool = False):
        import tensorflow as tf

        self.path = check_saved_model(path, "serving_default", trust=trust)
        self._fn = tf.saved_model.load(str(self.path)).signatures.get("serving_default")
        inputs = self._fn.structured_input_signature[1] if self._fn is not None else {}
        if list(inputs) not in (["image_bytes"], ["text"]):
            raise UserInputError(
                f"{self.path} has no serving_default signature taking image_bytes or text "
                f"(found inputs {sorted(inputs)}); export it with kerastl export / "
                "ktl.export_saved_model.")
        self._input = list(inputs)[0]
        self.kind = "text" if self._input == "text" else "image"
        self._tf = tf
        self.class_names = None  # the SavedModel answers class_names itself

    def __call__(self, data: list[bytes]) -> dict[str, np.ndarray]:
        out = self._fn(**{self._input: self._tf.constant(data, self._tf.string)})
        return {k: v.numpy() for k, v in out.items()}


class _KerasPredictor:
    def __init__(self, path: Path, args):
        import tensorflow as tf

        from kerastl.export.signatures import decode_images, model_image_size
        from kerastl.models import contract_of

        self.model = load_keras_model(path)
        contract = contract_of(self.model)
        self.task = contract["task"]
        self.kind = contract["kind"]
        self.class_names = resolve_class_names(path, args.labels, args.class_names, self.model)
        self._tf = tf
        if self.kind == "text":
            return
        size = model_image_size(self.model)
        self.resize = args.resize or contract["resize"] or "stretch"
        self._decode = tf.function(lambda d: decode_images(d, size, self.resize),
                                   autograph=False)

    def __call__(self, data: list[bytes]) -> dict[str, np.ndarray]:
        import numpy as np

        if self.kind == "text":
            images = self._tf.constant(data, self._tf.string)
        else:
            images = self._decode(self._tf.constant(data))
        scores = np.asarray(self.model.predict(images, verbose=0), dtype=np.float32)
        key = "predictions" if self.task == "regression" else "probabilities"
        return {key: scores}


def _predict_batch(predictor, files, data):
    import tensorflow as tf

    try:
        return predictor(data)
    except tf.errors.InvalidArgumentError:
        for f, d in zip(files, data, strict=True):  # find the file that broke the batch
            try:
                predictor([d])
            except tf.errors.InvalidArgumentError as err:
                raise UserInputError(f"Could not decode {f}: {tf_error_cause(err)}") from err
        raise


def _any_text(inputs) -> bool:
    return any(Path(i).suffix.lower() == ".txt" for i in inputs)


def _text_inputs(args):
    """``(names, read)`` for a text model: each ``--text`` (named ``text:1``...), then
    the ``.txt`` files given or found in the folders given."""
    files: list = []
    for item in map(Path, args.images):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*.txt") if p.is_file())
            if not found:
                raise UserInputError(f"No .txt files in {item}.")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise UserInputError(f"No such file or folder: {item}")
    inline = {f"text:{i + 1}": t.encode("utf-8") for i, t in enumerate(args.text)}

    def read(chunk) -> list[bytes]:
        out = []
        for name in chunk:
            if isinstance(name, str):
                out.append(inline[name])
                continue
            try:
                out.append(name.read_bytes())
            except OSError as err:
                raise UserInputError(f"Cannot read {name}: {err.strerror or err}") from None
        return out

    return [*inline, *files], read


def _names_from_saved_model(path: Path) -> list[str] | None:
    labels = path / "assets" / "labels.txt"
    return labels.read_text().splitlines() if labels.is_file() else None


def format_rows(rows, fmt: str) -> str:
    """Render prediction rows as an aligned table, CSV or JSON."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if rows and "outputs" in rows[0]:
        header = ["file"] + [f"output_{i}" for i in range(len(rows[0]["outputs"]))]
        table = [[r["file"]] + [f"{v:.6g}" for v in r["outputs"]] for r in rows]
    else:
        header = ["file", "rank", "index", "class", "score"]
        table = [[r["file"], str(t["rank"]), str(t["index"]), t["class"], f"{t['score']:.6f}"]
                 for r in rows for t in r["top_k"]]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(table)
        return buffer.getvalue()
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    previous = None
    for row in table:
        shown = list(row)
        if shown[0] == previous and len(header) == 5:
            shown[0] = ""  # show each file once, on its top-1 row
        previous = row[0]
        lines.append("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def _check_output(output: Path, model_path: Path, images: list[Path]) -> None:
    """Refuse an --output that is a folder, is missing its folder, or is an input."""
    if output.is_dir():
        raise UserInputError(f"--output {output} is a folder; give a file path for the "
                             "predictions.")
    if not output.parent.is_dir():
        raise UserInputError(f"--output {output}: the folder {output.parent} does not exist.")
    target = output.resolve()
    model = model_path.resolve()
    inside_model = model.is_dir() and model in target.parents  # a SavedModel's folder
    if inside_model or target in {model, *(f.resolve() for f in images)}:
        source = model if inside_model or target == model else target
        what = "write into" if inside_model else "overwrite"
        raise UserInputError(f"--output {output} would {what} the input {source}; "
                             "choose another file.")


def _write_output(output: Path, text: str) -> None:
    from kerastl.atomic import atomic_write_text

    if output.exists() and not output.is_file():  # /dev/stdout, a pipe: write through
        with open(output, "w") as f:
            f.write(text)
    else:  # never a half-written file in place of an earlier one
        atomic_write_text(output, text)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1 or args.batch_size < 1:
        raise UserInputError("--top-k and --batch-size must be positive.")
    from kerastl.data.header import resolve_max_pixels

    max_pixels = resolve_max_pixels(args.max_pixels)
    model_path = Path(args.model)
    if not args.images and not args.text:
        raise UserInputError("Give image (or .txt) files or folders to predict, or --text.")
    from kerastl.data.header import image_files, read_images

    files = image_files(args.images) if not args.text and not _any_text(args.images) else []
    if args.output:
        _check_output(Path(args.output), model_path, files)
    if model_path.is_dir():
        predictor = _SavedModelPredictor(model_path, args.trust_savedmodel)
        class_names = _names_from_saved_model(predictor.path)
    elif model_path.exists():
        predictor = _KerasPredictor(model_path, args)
        class_names = predictor.class_names
    else:
        raise FileNotFoundError(f"No such model file or SavedModel folder: {model_path}")
    if predictor.kind == "text":
        files, read = _text_inputs(args)
        if args.output:
            _check_output(Path(args.output), model_path,
                          [f for f in files if isinstance(f, Path)])
    else:
        if args.text:
            raise UserInputError(f"--text needs a text model; {model_path} takes images.")
        files = files or image_files(args.images)

        def read(chunk):
            return read_images(chunk, max_pixels)
    import numpy as np

    outputs: dict[str, list] = {}
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        for key, value in _predict_batch(predictor, chunk, read(chunk)).items():
            outputs.setdefault(key, []).append(value)
    merged = {k: np.concatenate(v) for k, v in outputs.items()
              if k in ("probabilities", "predictions")}
    from kerastl.evaluation import prediction_rows

    text = format_rows(prediction_rows(files, merged, args.top_k, class_names), args.format)
    if args.output:
        _write_output(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0
