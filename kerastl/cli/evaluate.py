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
        "evaluate", help="evaluate a .keras classifier or a training run on an image folder",
        description="Evaluate MODEL (a .keras file, or a run folder written by kerastl "
                    "train) on DATA_DIR (one subfolder per class, or train/ val/ test/ "
                    "subfolders; default: the run's own data). A run's validation split is "
                    "cut exactly as in training (its validation split, seed, image size and "
                    "resize). Writes report.json (accuracy, per-class precision/recall/F1, "
                    "confusion matrix, timings, versions), confusion_matrix.png and "
                    "errors.png (the most confidently wrong images) into --output.")
    p.add_argument("model", metavar="MODEL",
                   help="a run folder or a .keras file written by kerastl train")
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", default=None,
                   help="image folder (default: the DATA_DIR the run was trained on)")
    p.add_argument("--split", choices=SPLITS, default="auto",
                   help="auto: test/ when DATA_DIR has one; else, on the run's own data, the "
                        "run's validation split; else every image (default: %(default)s)")
    p.add_argument("--output", default=None,
                   help="report folder (default: <model folder>/evaluation); a folder "
                        "holding files of the same names that evaluate did not write is "
                        "refused")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per prediction batch (default: %(default)s)")
    p.add_argument("--errors", type=int, default=16,
                   help="images in the errors grid (default: %(default)s)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit a temperature on the run's validation split, report the ECE "
                        "before/after, write reliability.png and the calibrated model as "
                        "<model>.calibrated.keras beside the model (never replacing it)")
    p.add_argument("--tta", nargs="?", const="flip", default=None, choices=("flip", "crops"),
                   help="test-time augmentation: average the image and its mirror (flip, the "
                        "default), or those and 5 crops of 87.5%% resized back (crops); "
                        "reports the accuracy without and with it")
    add_max_pixels(p)
    add_json_flag(p, "split, metrics, files written, calibration, tta")
    p.set_defaults(func=run)


def _model_path(model: str) -> pathlib.Path:
    path = pathlib.Path(model)
    if path.is_dir():
        from kerastl.training.run import MODEL_FILE

        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        raise UserInputError(f"{path} is a folder without {MODEL_FILE}; kerastl evaluate takes "
                             "a run folder written by kerastl train or a .keras model file "
                             "(kerastl predict takes a SavedModel).")
    return path


def _is_evaluation_report(path: pathlib.Path) -> bool:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"split", "metrics", "data_dir"} <= set(report)


def _check_output(output: pathlib.Path) -> None:
    """Refuse a report folder that is a file, or holds files evaluate would replace
    that an earlier evaluation did not write (a training report.json, your own plots)."""
    from kerastl.calibration import RELIABILITY_FILE
    from kerastl.reports.evaluate import CONFUSION_FILE, ERRORS_FILE, REPORT_FILE

    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output} is a file; evaluate writes a report folder "
                             f"({REPORT_FILE}, {CONFUSION_FILE}, {ERRORS_FILE}) there. Give a "
                             "new or existing folder.")
    names = (REPORT_FILE, CONFUSION_FILE, ERRORS_FILE, RELIABILITY_FILE)
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

    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1. Received: {args.batch_size}")
    if args.errors < 0:
        raise UserInputError(f"--errors must be >= 0. Received: {args.errors}")
    resolve_max_pixels(args.max_pixels)
    model_path = _model_path(args.model)
    if args.data_dir is not None and not pathlib.Path(args.data_dir).is_dir():
        raise UserInputError(f"DATA_DIR {args.data_dir} does not exist or is not a folder")
    output = pathlib.Path(args.output) if args.output else model_path.parent / "evaluation"
    _check_output(output)
    import kerastl as ktl

    report = ktl.evaluate(model_path, args.data_dir, split=args.split,
                          batch_size=args.batch_size, output=output, errors=args.errors,
                          max_pixels=args.max_pixels, extra={"model": str(model_path)},
                          calibrate=args.calibrate, tta=args.tta)
    m = report["metrics"]
    what = "texts" if report.get("kind") == "text" else "images"
    print(f"{report['split']} accuracy: {m['accuracy']:.4f} on {m['examples']} {what} "
          f"(macro F1 {m['macro_f1']:.4f})")
    _print_trust(report)
    for key, path in report["files"].items():
        print(f"  {key:<17}{path}")
    summary.update(command="evaluate", model=str(model_path), data_dir=report["data_dir"],
                   split=report["split"], output=str(output), metrics=scalar_metrics(m),
                   files=report["files"], skipped_files=len(report["skipped_files"]),
                   calibration=report.get("calibration"), tta=report.get("tta"))
    return 0


def _print_trust(report: dict) -> None:
    """The calibration and TTA lines of ``kerastl evaluate``."""
    cal = report.get("calibration")
    if cal:
        for name, figures in (("val (fit)", cal["val"]),
                              (cal["evaluated"]["split"], cal["evaluated"])):
            print(f"{name} ECE: {figures['ece_before']:.4f} -> {figures['ece_after']:.4f}, NLL "
                  f"{figures['nll_before']:.4f} -> {figures['nll_after']:.4f} "
                  f"(temperature {cal['temperature']:.3f})")
        for key, path in cal["files"].items():
            if path:
                print(f"  {key:<17}{path}")
    tta = report.get("tta")
    if tta:
        print(f"TTA ({tta['mode']}, {len(tta['views'])} views): accuracy "
              f"{tta['accuracy_without']:.4f} -> {tta['accuracy_with']:.4f} "
              f"({tta['gain']:+.4f})")
