"""``kerastl train DATA_DIR``: fine-tune a classifier on an image or text folder."""

from __future__ import annotations

import logging
import os
import pathlib

from kerastl.cli.options import add_max_pixels
from kerastl.cli.summary import add_json_flag, json_summary, scalar_metrics
from kerastl.config import CLASSIFIERS, HEAD_INITS, MODES, TASK_KINDS, TEXT_BACKBONE
from kerastl.config import DEFAULTS as _DEFAULTS
from kerastl.defaults import (
    AUGMENT_POLICIES,
    MAX_IMAGE_SIZE,
    RESIZE_MODES,
    SCHEDULES,
)
from kerastl.errors import UserInputError

# Every flag default is FineTuneConfig's (kerastl/config.py), defined once there.
DEFAULTS = _DEFAULTS.to_dict()
DEFAULT_EXPORT_DIR = "SavedModels"

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a classifier on an image or text folder",
        description="Fine-tune a pretrained backbone on DATA_DIR (one subfolder per class, "
                    "or train/ val/ test/ subfolders; images, or .txt files for text). "
                    "Writes model.keras, report.json, curves.png and confusion_matrix.png "
                    "into --output.")
    p.add_argument("data_dir", metavar="DATA_DIR",
                   help="image folder, or text folder (class subfolders of .txt files)")
    p.add_argument("--task", default=DEFAULTS["task"], choices=TASK_KINDS,
                   help="image or text; auto: text when the class folders hold .txt files "
                        "(default: %(default)s)")
    p.add_argument("--backbone", default=DEFAULTS["backbone"],
                   help="registry name or hub:<handle>; for text a text backbone "
                        f"(default: %(default)s, {TEXT_BACKBONE} for text)")
    p.add_argument("--sequence-length", type=int, default=None, metavar="N",
                   help="text: tokens per text, longer texts truncated (default: the "
                        "backbone's, 128 for minilm_l6)")
    p.add_argument("--lora-rank", type=int, default=None, metavar="R",
                   help="text: phase 2 trains rank-R LoRA adapters on the attention "
                        "projections instead of the unfrozen weights (default: off)")
    p.add_argument("--weights", default=DEFAULTS["weights"],
                   help="'imagenet', 'none' or a weights file (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size in px, from the backbone's minimum to "
                        f"{MAX_IMAGE_SIZE} (default: the backbone's native size)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help="images per training step (default: %(default)s)")
    p.add_argument("--validation-split", type=float, default=DEFAULTS["validation_split"],
                   help="fraction of the training images held out for validation when "
                        "DATA_DIR has no val/ subfolder (default: %(default)s)")
    p.add_argument("--augment", default=None, choices=tuple(AUGMENT_POLICIES),
                   help="augmentation policy of the training images (default: none)")
    p.add_argument("--resize", default=DEFAULTS["resize"], choices=RESIZE_MODES,
                   help="how images are brought to --image-size: stretch (aspect ratio not "
                        "kept), crop (central square), pad (letterbox) or random_crop "
                        "(random window in training, central otherwise); the model keeps it, "
                        "so export and predict resize the same way (default: %(default)s)")
    _add_phase_flags(p)
    _add_run_flags(p)
    add_max_pixels(p)
    add_json_flag(p, "run folder, mode, metrics, files written, export path")
    p.set_defaults(func=run)


def _add_phase_flags(p) -> None:
    """The two phases of fine-tuning: epochs, rates, unfreezing, optimizer, schedule."""
    p.add_argument("--head-epochs", type=int, default=DEFAULTS["head_epochs"],
                   help="phase 1: epochs training only the head (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help="phase 2: epochs fine-tuning the unfrozen top (default: %(default)s)")
    p.add_argument("--lr", type=float, default=DEFAULTS["learning_rate"],
                   help="phase-1 learning rate (default: %(default)s)")
    p.add_argument("--ft-lr", type=float, default=DEFAULTS["fine_tune_learning_rate"],
                   help="phase-2 learning rate (default: %(default)s)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--unfreeze-groups", type=int, default=None,
                       help="phase 2 unfreezes the top N layer groups (default: all)")
    group.add_argument("--unfreeze-fraction", type=float, default=None,
                       help="phase 2 unfreezes the top fraction of layers")
    group.add_argument("--unfreeze-from", default=None, metavar="LAYER",
                       help="phase 2 unfreezes LAYER and everything above")
    p.add_argument("--train-bn", action="store_true",
                   help="also train BatchNorm in phase 2 (default: frozen, inference mode)")
    p.add_argument("--dropout", type=float, default=DEFAULTS["dropout"],
                   help="dropout rate before the classifier head (default: %(default)s)")
    p.add_argument("--optimizer", default=DEFAULTS["optimizer"],
                   help="adam, adamw, sgd, rmsprop or adagrad (default: %(default)s)")
    p.add_argument("--patience", type=int, default=DEFAULTS["patience"],
                   help="early-stopping patience per phase (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="optimizer weight decay (default: 1e-4 for adamw, none otherwise)")
    p.add_argument("--lr-find", action="store_true",
                   help="run the learning-rate finder on the head first and use its "
                        "suggestion instead of --lr (writes lr_find.png)")
    p.add_argument("--momentum", type=float, default=None,
                   help="momentum of --optimizer sgd (default 0.9) or rmsprop (default 0)")
    p.add_argument("--l2", type=float, default=None,
                   help="L2 penalty on the head's kernels, e.g. 1e-4 (default: none)")
    p.add_argument("--schedule", default=DEFAULTS["schedule"], choices=SCHEDULES,
                   help="learning-rate schedule of each phase (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=DEFAULTS["warmup"],
                   help="fraction of each phase spent warming up, for one_cycle and cosine "
                        "(default: %(default)s)")
    p.add_argument("--layerwise-lr-decay", type=float, default=None, metavar="FACTOR",
                   help="phase 2: each lower backbone group learns at FACTOR x the rate of "
                        "the group above (e.g. 0.5; default: one rate)")
    p.add_argument("--gradual-unfreeze-every", type=int, default=None, metavar="K",
                   help="phase 2: start with the top group, unfreeze one more every K epochs")
    p.add_argument("--head-init", default=DEFAULTS["head_init"], choices=HEAD_INITS,
                   help="phase 1: train the head for --head-epochs (random) or fit a "
                        "cross-validated logistic regression on cached features and start "
                        "phase 2 from it (linear_probe: LP-FT; more accurate with 30 or "
                        "fewer images per class, see docs/modes.md) (default: %(default)s)")
    p.add_argument("--l2-sp", type=float, default=None, metavar="FACTOR",
                   help="phase 2: L2-SP penalty FACTOR x sum ||w - w0||^2 pulling the "
                        "unfrozen backbone weights toward their pretrained values "
                        "(e.g. 1e-3; default: none)")
    p.add_argument("--label-smoothing", type=float, default=DEFAULTS["label_smoothing"],
                   help="label smoothing (needs one-hot labels, e.g. MixUp augmentation)")
    p.add_argument("--micro-batch-size", default=DEFAULTS["micro_batch_size"], metavar="N",
                   help="phase 2: run each batch's forward/backward pass N images at a time "
                        "and sum the gradients into one step (the same update with BatchNorm "
                        "frozen, less memory); auto: from the backbone's activation size "
                        "(8 for efficientnet_lite0 at 224 px, off when small); none or 0: "
                        "whole batches (default: %(default)s)")


def _add_run_flags(p) -> None:
    """How the run is made and where it goes: mode, seed, output, distribution, export."""
    p.add_argument("--mode", default=DEFAULTS["mode"],
                   choices=MODES,
                   help="fine-tune: two-phase fine-tuning; feature-extraction: frozen "
                        "backbone features + a linear classifier (fast, best on small "
                        "data); auto: feature extraction up to a measured number of "
                        "images per class, fine-tuning above (default: %(default)s)")
    p.add_argument("--classifier", default=DEFAULTS["classifier"],
                   choices=CLASSIFIERS,
                   help="feature-extraction mode: the linear classifier (default: %(default)s)")
    p.add_argument("--C", type=float, default=None, dest="C",
                   help="feature-extraction mode: inverse regularisation strength "
                        "(default: chosen by cross-validation)")
    p.add_argument("--features-cache", default=None, metavar="DIR",
                   help="feature-extraction mode: cache backbone features in DIR")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="random seed of the split, shuffling, augmentation and weights "
                        "(default: %(default)s)")
    p.add_argument("--deterministic", action="store_true",
                   help="bit-reproducible run: deterministic TF ops and data order "
                        "(slower; with --backup-dir a resumed run then equals an "
                        "uninterrupted one)")
    p.add_argument("--output", default=None,
                   help="output folder (default: runs/<backbone>, next free name)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already in --output")
    p.add_argument("--strategy", default=None,
                   choices=("auto", "cpu", "gpu", "mirrored", "multi_worker", "tpu"),
                   help="distribute training (tf.distribute); --batch-size is then per "
                        "replica (default: no distribution)")
    p.add_argument("--backup-dir", default=None, metavar="DIR",
                   help="write a checkpoint after every epoch into DIR; the same command "
                        "run again resumes a killed run where it stopped")
    p.add_argument("--mixed-precision", default=None,
                   choices=("mixed_float16", "mixed_bfloat16"),
                   help="train in mixed precision (outputs stay float32)")
    p.add_argument("--export", default=None, metavar="NAME",
                   help="after training, export the model for TF Serving to "
                        "--export-dir/NAME/<next version>/, with the run's class names "
                        "(as kerastl export does)")
    p.add_argument("--export-dir", default=None, metavar="DIR",
                   help=f"export root of --export (default: {DEFAULT_EXPORT_DIR})")
    p.add_argument("--calibrate", action="store_true",
                   help="after training, fit a temperature on the validation split: "
                        "report.json['calibration'] (ECE/NLL before and after), reliability.png "
                        "and model.calibrated.keras (which --export then exports)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard logs of both phases into DIR "
                        "(keras.callbacks.TensorBoard; view with: tensorboard --logdir DIR)")


def unfreeze_options(args) -> dict | None:
    """``unfreeze`` of the config: ``None`` (the whole backbone, BN frozen) unless a flag says."""
    if not args.train_bn and all(v is None for v in (
            args.unfreeze_groups, args.unfreeze_fraction, args.unfreeze_from)):
        return None
    options = {"train_bn": bool(args.train_bn)}
    if args.unfreeze_groups is not None:
        options["groups"] = args.unfreeze_groups
    elif args.unfreeze_fraction is not None:
        options["fraction"] = args.unfreeze_fraction
    elif args.unfreeze_from is not None:
        options["from_layer"] = args.unfreeze_from
    return options


def run(args) -> int:
    with json_summary(args.json) as summary:
        return _train(args, summary)


def config_from_args(args):
    """The :class:`kerastl.FineTuneConfig` of ``kerastl train``'s flags."""
    from kerastl.config import FineTuneConfig

    return FineTuneConfig(
        backbone=args.backbone, weights=args.weights, image_size=args.image_size,
        dropout=args.dropout, batch_size=args.batch_size,
        validation_split=args.validation_split, augment=args.augment, resize=args.resize,
        seed=args.seed, deterministic=args.deterministic, max_pixels=args.max_pixels,
        head_epochs=args.head_epochs, epochs=args.epochs, learning_rate=args.lr,
        fine_tune_learning_rate=args.ft_lr, unfreeze=unfreeze_options(args),
        optimizer=args.optimizer.lower(), weight_decay=args.weight_decay, momentum=args.momentum,
        schedule=args.schedule, warmup=args.warmup, patience=args.patience,
        label_smoothing=args.label_smoothing, l2=args.l2,
        layerwise_lr_decay=args.layerwise_lr_decay,
        gradual_unfreeze_every=args.gradual_unfreeze_every,
        mixed_precision=args.mixed_precision, mode=args.mode, classifier=args.classifier,
        C=args.C, lr_find=args.lr_find, task=args.task,
        sequence_length=args.sequence_length, lora_rank=args.lora_rank,
        head_init=args.head_init, regularization=None if args.l2_sp is None else "l2_sp",
        l2_sp=_DEFAULTS.l2_sp if args.l2_sp is None else args.l2_sp,
        micro_batch_size=micro_batch_option(args.micro_batch_size))


def micro_batch_option(text: str):
    """``--micro-batch-size``: ``auto``, ``none``/``off`` (None) or an int; anything else is
    passed on as it is, for :class:`kerastl.FineTuneConfig` to refuse with its message."""
    value = str(text).strip().lower()
    if value in ("none", "off"):
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    return value if value == "auto" else text


def _train(args, summary: dict) -> int:
    data_dir = pathlib.Path(args.data_dir)
    if not data_dir.exists():
        raise UserInputError(f"DATA_DIR {data_dir} does not exist")
    if not data_dir.is_dir():
        raise UserInputError(f"DATA_DIR {data_dir} is not a folder")
    if args.l2 is not None and not args.l2 > 0:
        raise UserInputError(f"--l2 must be a positive number (e.g. 1e-4). Received: {args.l2}")
    import kerastl as ktl
    from kerastl.data.decode import check_image_size
    from kerastl.text.run import is_text_run
    from kerastl.training.optimizers import OPTIMIZERS, momentum_option

    text = is_text_run(data_dir, args)  # reads args.task and args.backbone
    if not text:  # the flag's own wording before the config's
        spec = ktl.backbone_spec(args.backbone)
        size = spec.default_image_size if args.image_size is None else args.image_size
        check_image_size(size, minimum=spec.min_image_size, backbone=spec.name,
                         name="--image-size")
    config = config_from_args(args)  # every option checked before any data is read
    if text:
        from kerastl.text.run import text_backbone_name

        text_backbone_name(config)
    if args.optimizer.lower() in OPTIMIZERS:  # an unknown name gets its own error below
        momentum_option(args.optimizer.lower(), args.momentum)
    if args.mode == "feature-extraction" and args.lr_find:
        raise UserInputError("--lr-find chooses a fine-tuning rate; feature extraction has "
                             "none (its regulariser is --C). Leave it out or use --mode "
                             "fine-tune")
    if args.mode == "feature-extraction" and args.augment not in (None, "none"):
        raise UserInputError("--augment has no effect with --mode feature-extraction (each "
                             "image is seen once); leave it out or use --mode fine-tune")
    _check_export_and_tensorboard(args)
    if args.calibrate and not args.validation_split > 0 and not (data_dir / "val").is_dir():
        raise UserInputError("--calibrate fits a temperature on the validation split; give "
                             "--validation-split > 0 or a val/ subfolder")
    run = ktl.train(data_dir, config, output=args.output, overwrite=args.overwrite,
                    strategy=args.strategy, tensorboard=args.tensorboard,
                    backup_dir=args.backup_dir, features_cache=args.features_cache)
    if args.calibrate and run.path is not None:  # a cluster's non-chief writes nothing
        from kerastl.evaluation import calibrate_run

        calibrate_run(run, batch_size=args.batch_size, max_pixels=args.max_pixels)
    report, mode = run.report, run.report["mode"]
    if mode == "feature-extraction":
        print(f"mode: feature extraction ({report['linear_head']['kind']}, "
              f"C={report['linear_head']['C']:g})")
    exported = _export(args, report)
    _print_summary(report, exported)
    summary.update(_json_summary(args, report, run.path, mode, exported))
    return 0


def _json_summary(args, report: dict, output, mode: str, exported) -> dict:
    return {"command": "train", "run_dir": None if output is None else os.fspath(output),
            "mode": mode, "backbone": report["backbone"], "class_names": report["class_names"],
            "metrics": {split: scalar_metrics(report[f"{split}_metrics"])
                        for split in ("val", "test") if f"{split}_metrics" in report},
            "files": report["files"], "skipped_files": len(report["skipped_files"]),
            "export": exported and os.fspath(exported),
            "tensorboard": args.tensorboard if mode == "fine-tune" else None}


def _check_export_and_tensorboard(args) -> None:
    """--export, --export-dir and --tensorboard checked before any data is read."""
    from kerastl.paths import check_name

    if args.export is not None:
        check_name(args.export, what="--export", kind="model name")
    elif args.export_dir is not None:
        raise UserInputError("--export-dir is the export root of --export NAME; give both")
    if args.tensorboard is not None and args.mode == "feature-extraction":
        raise UserInputError("--tensorboard logs Keras training epochs; feature extraction "
                             "fits a linear classifier without any. Leave it out or use "
                             "--mode fine-tune")


def _export(args, report: dict) -> pathlib.Path | None:
    """--export NAME: the run's model.keras exported for TF Serving, with its class names."""
    if args.export is None or "model" not in report["files"]:  # a cluster's non-chief
        return None
    from kerastl.export import export_saved_model
    from kerastl.loading import load_keras_model

    model = load_keras_model(report["files"].get("calibrated_model") or report["files"]["model"])
    return export_saved_model(model, args.export_dir or DEFAULT_EXPORT_DIR, name=args.export,
                              class_names=report["class_names"])


def _print_summary(report: dict, exported: pathlib.Path | None) -> None:
    for split in ("test", "val"):
        if f"{split}_metrics" in report:
            what = "texts" if report.get("task") == "text" else "images"
            print(f"{split} accuracy: {report[f'{split}_metrics']['accuracy']:.4f} on "
                  f"{report[f'{split}_metrics']['examples']} {what}")
            break
    if report["skipped_files"]:
        print(f"skipped {len(report['skipped_files'])} unreadable files (listed in report.json)")
    cal = report.get("calibration")
    if cal:
        print(f"calibration: temperature {cal['temperature']:.3f}, val ECE "
              f"{cal['val']['ece_before']:.4f} -> {cal['val']['ece_after']:.4f}" + (
                  f", test ECE {cal['test']['ece_before']:.4f} -> {cal['test']['ece_after']:.4f}"
                  if "test" in cal else ""))
    for key, path in report["files"].items():
        print(f"  {key:<17}{path}")
    if exported is not None:
        print(f"  {'exported':<17}{exported}")
