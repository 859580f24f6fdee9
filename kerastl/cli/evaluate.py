"""``kerastl evaluate MODEL.keras DATA_DIR``: metrics, report.json and plots for a classifier."""

from __future__ import annotations

import json
import pathlib

from kerastl.cli.options import add_max_pixels
from kerastl.cli.summary import add_json_flag, json_summary, scalar_metrics
from kerastl.errors import UserInputError

SPLITS = ("auto", "test", "val", "all")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a .keras classifier on an image folder",
        description="Evaluate MODEL.keras on DATA_DIR (one subfolder per class, or train/ "
                    "val/ test/ subfolders). Writes report.json (accuracy, per-class "
                    "precision/recall/F1, confusion matrix, timings, versions), "
                    "confusion_matrix.png and errors.png (the most confidently wrong "
                    "images) into --output.")
    p.add_argument("model", metavar="MODEL", help="a .keras file written by kerastl train")
    p.add_argument("data_dir", metavar="DATA_DIR", help="image folder")
    p.add_argument("--split", choices=SPLITS, default="auto",
                   help="auto: test/ when DATA_DIR has one, else every image (default: "
                        "%(default)s)")
    p.add_argument("--output", default=None,
                   help="report folder (default: <model folder>/evaluation); a folder "
                        "holding files of the same names that evaluate did not write is "
                        "refused")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per prediction batch (default: %(default)s)")
    p.add_argument("--errors", type=int, default=16,
                   help="images in the errors grid (default: %(default)s)")
    add_max_pixels(p)
    add_json_flag(p, "split, metrics, files written")
    p.set_defaults(func=run)


def _expected_class_names(model_path: pathlib.Path) -> list[str] | None:
    report = model_path.parent / "report.json"
    if not report.is_file():
        return None
    try:
        names = json.loads(report.read_text()).get("class_names")
    except (OSError, ValueError):
        return None
    return list(names) if isinstance(names, list) else None


def _is_evaluation_report(path: pathlib.Path) -> bool:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"split", "metrics", "data_dir"} <= set(report)


def _check_output(output: pathlib.Path) -> None:
    """Refuse a report folder that is a file, or holds files evaluate would replace
    that an earlier evaluation did not write (a training report.json, your own plots)."""
    from kerastl.reports.evaluate import CONFUSION_FILE, ERRORS_FILE, REPORT_FILE

    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output} is a file; evaluate writes a report folder "
                             f"({REPORT_FILE}, {CONFUSION_FILE}, {ERRORS_FILE}) there. Give a "
                             "new or existing folder.")
    names = (REPORT_FILE, CONFUSION_FILE, ERRORS_FILE)
    present = [n for n in names if (output / n).exists() or (output / n).is_symlink()]
    ours = all((output / n).is_file() and not (output / n).is_symlink() for n in present) and (
        not present or _is_evaluation_report(output / REPORT_FILE))
    if not ours:
        raise UserInputError(
            f"--output {output} already holds {', '.join(present)}, not written by kerastl "
            "evaluate (no evaluation report.json there), which evaluate would replace; "
            "choose another folder.")


def run(args) -> int:
    with json_summary(args.json) as summary:
        return _evaluate(args, summary)


def _evaluate(args, summary: dict) -> int:
    from kerastl.data.header import resolve_max_pixels

    model_path = pathlib.Path(args.model)
    data_dir = pathlib.Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserInputError(f"DATA_DIR {data_dir} does not exist or is not a folder")
    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1. Received: {args.batch_size}")
    if args.errors < 0:
        raise UserInputError(f"--errors must be >= 0. Received: {args.errors}")
    resolve_max_pixels(args.max_pixels)
    output = pathlib.Path(args.output) if args.output else model_path.parent / "evaluation"
    _check_output(output)
    if model_path.is_dir():
        raise UserInputError(f"{model_path} is a folder; kerastl evaluate takes a .keras model "
                             "file (kerastl predict takes a SavedModel).")
    from kerastl.cli.loading import load_keras_model

    model = load_keras_model(model_path)
    import kerastl as ktl
    from kerastl.export.signatures import model_image_size
    from kerastl.reports.evaluate import evaluate_classifier

    size = model_image_size(model)
    split = args.split
    has_test = (data_dir / "test").is_dir()
    if split == "auto":
        split = "test" if has_test else "all"
    if split == "test" and not has_test:
        raise UserInputError(f"--split test: {data_dir} has no test/ subfolder")
    splits = ktl.data.image_folder(data_dir, image_size=size, batch_size=args.batch_size,
                                   validation_split=0.0 if split == "all" else 0.2,
                                   shuffle=False, augment=None, max_pixels=args.max_pixels)
    dataset = {"all": splits.train, "test": splits.test, "val": splits.val}[split]
    if dataset is None:
        raise UserInputError(f"--split {split}: {data_dir} has no such split")
    expected = _expected_class_names(model_path)
    if expected is not None and list(expected) != list(splits.class_names):
        raise UserInputError(
            f"The model was trained on classes {expected} but {data_dir} has "
            f"{splits.class_names}; evaluate on a folder with the same class subfolders.")
    report = evaluate_classifier(
        model, dataset, splits.class_names, output=output, split=split, errors=args.errors,
        extra={"model": str(model_path), "data_dir": str(data_dir),
               "skipped_files": [list(s) for s in splits.skipped]})
    m = report["metrics"]
    print(f"{split} accuracy: {m['accuracy']:.4f} on {m['examples']} images "
          f"(macro F1 {m['macro_f1']:.4f})")
    for key, path in report["files"].items():
        print(f"  {key:<17}{path}")
    summary.update(command="evaluate", model=str(model_path), data_dir=str(data_dir),
                   split=split, output=str(output), metrics=scalar_metrics(m),
                   files=report["files"], skipped_files=len(splits.skipped))
    return 0
