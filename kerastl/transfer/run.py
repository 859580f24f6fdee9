"""A feature-extraction run, and how ``--mode auto`` chooses between the two modes.

:func:`feature_extraction_and_report` is the sibling of
:func:`kerastl.training.run.train_and_report` for ``kerastl train --mode
feature-extraction``: one pass of the frozen backbone over the training
images, a linear classifier fitted on those features, and the same files
(``model.keras``, ``report.json``, ``confusion_matrix.png``) in ``output``.
"""

from __future__ import annotations

import logging
import os
import time

from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

MODES = ("feature-extraction", "fine-tune", "auto")

# --mode auto uses feature extraction up to this many training images per
# class and fine-tuning above it. Measured with benchmarks/feature_extraction.py
# --sizes 100,10,30,300 (EfficientNet-Lite0 ImageNet weights, Fashion-MNIST,
# 96 px, 2,000 test images, seed 0; fine-tuning = 15 head epochs on cached
# features + 6 epochs unfrozen; 2 shared CPU cores, load average 8-12):
#   images/class  FE acc  FE s   FT acc  FT s    FT - FE   time FE/FT
#             10  72.55   22.8   74.75   162.4   +2.20 pp  0.14
#             30  77.85   29.9   76.85   245.0   -1.00 pp  0.12
#            100  82.85   36.9   82.10   323.3   -0.75 pp  0.11
#            300  86.10   83.5   87.75   820.5   +1.65 pp  0.10
# Feature extraction stayed within ~2 pp of fine-tuning at every measured size
# (the 10/class gap of 2.2 pp is within the ~1.3 pp standard error of a
# difference on 2,000 test images) at a tenth of its time; fine-tuning's lead
# was growing at 300/class and larger sizes were not measured, so the
# threshold is the largest measured size.
AUTO_FEATURE_EXTRACTION_MAX_PER_CLASS = 300


def choose_mode(mode: str, *, train_examples: int, num_classes: int) -> str:
    """``"feature-extraction"`` or ``"fine-tune"`` for ``mode`` (resolving ``"auto"``).

    ``"auto"`` picks feature extraction when the training split holds at most
    :data:`AUTO_FEATURE_EXTRACTION_MAX_PER_CLASS` images per class on average.
    """
    if mode not in MODES:
        raise UserInputError(f"Unknown mode '{mode}'. Known: {', '.join(MODES)}. "
                             f"Received: mode={mode!r}")
    if mode != "auto":
        return mode
    per_class = train_examples / max(num_classes, 1)
    chosen = ("feature-extraction" if per_class <= AUTO_FEATURE_EXTRACTION_MAX_PER_CLASS
              else "fine-tune")
    log.info("--mode auto: %.0f training images per class (threshold %d) -> %s", per_class,
             AUTO_FEATURE_EXTRACTION_MAX_PER_CLASS, chosen)
    return chosen


def feature_extraction_and_report(splits, *, backbone: str, output: str | os.PathLike,
                                  weights="imagenet", kind: str = "logistic",
                                  C: float | None = None, class_weight=None,
                                  cache: str | os.PathLike | None = None,
                                  overwrite: bool = False, verbose="auto",
                                  config: dict | None = None) -> dict:
    """Fit a linear classifier on frozen features and write what a user keeps.

    Writes into ``output``: ``model.keras`` (backbone + Dense ``"predictions"``,
    exportable like any kerastl classifier), ``report.json`` (config, the
    linear head's kind, C and cross-validation scores, validation/test
    metrics, timings, versions, skipped files) and ``confusion_matrix.png``.

    Args:
        splits: a :class:`kerastl.data.Splits` (augmentation is not used: the
            features come from one pass over the training images).
        backbone: registry name (or ``hub:<handle>``).
        output: output folder.
        weights: backbone weights (``"imagenet"``, ``None`` or a file).
        kind, C, class_weight: see :func:`kerastl.fit_linear_head`.
        cache: folder for cached features (see :func:`kerastl.extract_features`).
        overwrite: replace a model already in ``output``.
        verbose: progress bars while extracting.
        config: recorded in the report.

    Returns:
        The report as a dict (also written to ``report.json``).
    """
    from kerastl.backbones.builder import build_backbone
    from kerastl.data.info import is_augmented
    from kerastl.reports.plots import plot_confusion_matrix
    from kerastl.reports.report import classification_metrics, environment, write_json
    from kerastl.training.run import prepare_output, save_model_and_labels
    from kerastl.transfer.features import extract_features
    from kerastl.transfer.linear import fit_linear_head, linear_head_model

    output = prepare_output(output, overwrite=overwrite)
    if splits.image_size is None:
        raise UserInputError("The data splits do not say their image size")
    if getattr(splits, "augmented", False) or is_augmented(splits.train):
        log.warning("Feature extraction sees each training image once: the augmentation "
                    "draws one random version of it. Leave --augment out in this mode.")
    show = verbose not in (0, False, None)
    started = time.perf_counter()
    net = build_backbone(backbone, weights=weights, image_size=splits.image_size)
    t0 = time.perf_counter()
    features, labels = extract_features(net, splits.train, cache=cache, verbose=show)
    timings = {"feature_extraction": time.perf_counter() - t0}
    t0 = time.perf_counter()
    head = fit_linear_head(features, labels, kind=kind, C=C, class_weight=class_weight,
                           num_classes=len(splits.class_names))
    timings["fit_linear_head"] = time.perf_counter() - t0
    # not compiled: nothing was trained by Keras
    model = linear_head_model(net, head, class_names=splits.class_names, resize=splits.resize)
    report = {
        "mode": "feature-extraction",
        "backbone": backbone,
        "weights": str(weights),
        "class_names": list(splits.class_names),
        "counts": dict(splits.counts),
        "config": dict(config or {}),
        "linear_head": {"kind": head.kind, "C": head.C,
                        "cv_scores": {str(c): s for c, s in head.cv_scores.items()},
                        "train_accuracy": float((head.predict(features) == labels).mean())},
        "skipped_files": [list(item) for item in splits.skipped],
        "environment": environment(),
    }
    evaluation_split = None
    for split_name in ("val", "test"):
        dataset = getattr(splits, split_name)
        if dataset is None:
            continue
        feats, y = extract_features(net, dataset, cache=cache, verbose=show)
        probs = model.get_layer("predictions")(feats).numpy()
        report[f"{split_name}_metrics"] = classification_metrics(probs, y, splits.class_names)
        evaluation_split = split_name
    files = save_model_and_labels(model, splits.class_names, output)
    files["report"] = output / "report.json"
    if evaluation_split:
        files["confusion_matrix"] = plot_confusion_matrix(
            report[f"{evaluation_split}_metrics"]["confusion_matrix"], splits.class_names,
            output / "confusion_matrix.png",
            title=f"Confusion matrix ({evaluation_split} split)")
    report["timings"] = dict(timings, total=time.perf_counter() - started)
    report["files"] = {k: os.fspath(v) for k, v in files.items()}
    write_json(report, output / "report.json")
    return report
