"""A text training run: the text counterpart of :func:`kerastl.training.run.train_and_report`.

``kerastl train DATA --task text`` and ``ktl.train(text_splits, ...)`` come
here. Fine-tuning is the same :func:`kerastl.fine_tune` as for images (phase 1
on cached sentence embeddings, phase 2 on the unfrozen top of the encoder, or
LoRA adapters with ``lora_rank``); feature extraction fits a linear classifier
on the frozen embeddings. The run folder holds ``model.keras`` (raw strings
in), ``labels.txt``, ``report.json``, ``curves.png``, ``confusion_matrix.png``
and ``errors.png`` (the most confidently wrong texts, with their labels).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import time

import numpy as np

from kerastl.config import DEFAULTS, TEXT_BACKBONE, FineTuneConfig
from kerastl.errors import UserInputError

log = logging.getLogger(__name__)


def text_backbone_name(config: FineTuneConfig) -> str:
    """The run's text backbone: the config's, or ``minilm_l6`` when it was left at the
    image default.

    Raises:
        UserInputError: an image backbone was asked for a text run.
    """
    from kerastl.text.presets import is_text_backbone, list_text_backbones

    if is_text_backbone(config.backbone):
        return config.backbone
    if config.backbone == DEFAULTS.backbone:
        return TEXT_BACKBONE
    raise UserInputError(
        f"Backbone '{config.backbone}' is an image backbone; text runs take a text backbone "
        f"({', '.join(list_text_backbones())}) or a local BERT folder. "
        f"Received: backbone={config.backbone!r}")


#: Extensions of text files, and of the image files a folder could hold instead.
TEXT_SUFFIXES = (".txt",)


def looks_like_text_folder(folder) -> bool:
    """True when the class subfolders of ``folder`` (or of its ``train/``) hold more
    ``.txt`` files than anything else: ``task="auto"`` then trains a text model."""
    root = pathlib.Path(folder)
    if (root / "train").is_dir():
        root = root / "train"
    text = other = 0
    try:
        for sub in sorted(p for p in root.iterdir() if p.is_dir())[:50]:
            for i, path in enumerate(sub.iterdir()):
                if i >= 50:
                    break
                if path.name.startswith("."):
                    continue
                if path.suffix.lower() in TEXT_SUFFIXES:
                    text += 1
                else:
                    other += 1
    except OSError:
        return False
    return text > other


def is_text_run(data, config: FineTuneConfig) -> bool:
    """Whether :func:`kerastl.train` makes a text model of ``data``."""
    if config.task != "auto":
        return config.task == "text"
    from kerastl.text.presets import is_text_backbone

    if type(data).__name__ == "TextSplits" or is_text_backbone(config.backbone):
        return True
    return isinstance(data, str | os.PathLike) and looks_like_text_folder(data)


def _weights(config: FineTuneConfig):
    if config.weights in ("imagenet", "pretrained"):
        return "pretrained"
    if config.weights is None:
        return None
    raise UserInputError(f"A text backbone's weights are 'pretrained' (its checkpoint) or None. "
                         f"Received: weights={config.weights!r}")


def train_text_and_report(splits, config: FineTuneConfig, *, output, overwrite=False,
                          record: dict | None = None, strategy=None, callbacks=None,
                          backup_dir=None, verbose="auto") -> dict:
    """Train a :class:`~kerastl.text.TextClassifier` on ``splits`` (a
    :class:`kerastl.data.TextSplits`) and write the run into ``output``.

    Returns:
        The report (also written to ``report.json``).
    """
    from kerastl import distribute
    from kerastl.reports.plots import plot_confusion_matrix, plot_history, write_text_errors
    from kerastl.reports.report import environment, write_json
    from kerastl.text.bert import build_text_backbone
    from kerastl.text.models import TextClassifier
    from kerastl.training import fine_tune
    from kerastl.training.run import evaluate_splits, prepare_output, save_model_and_labels

    name = text_backbone_name(config)
    weights = _weights(config)
    if strategy is not None:
        strategy = distribute.get_strategy(strategy)
    writer = distribute.is_chief(strategy)
    if output is None and writer:
        raise UserInputError("A text run needs an output folder")
    if output is not None:
        output = prepare_output(output, overwrite=overwrite, create=writer)
    from kerastl.transfer.run import choose_mode

    mode = choose_mode(config.mode, train_examples=int(splits.counts.get("train", 0)),
                       num_classes=len(splits.class_names))
    started = time.perf_counter()
    report = {"mode": mode, "task": "text", "backbone": name, "weights": str(weights),
              "class_names": list(splits.class_names), "counts": dict(splits.counts),
              "config": dict(record or config.to_dict()),
              "skipped_files": [list(item) for item in splits.skipped],
              "environment": environment()}
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        backbone = build_text_backbone(name, weights=weights,
                                       sequence_length=config.sequence_length)
        backbone.trainable = False
    report["sequence_length"] = backbone.sequence_length
    if mode == "feature-extraction":
        model, extra = _linear_probe(backbone, splits, config, verbose)
        report.update(extra)
        report["history"] = {}
        timings = extra.pop("timings")
    else:
        with scope:
            model = TextClassifier(backbone, len(splits.class_names), dropout=config.dropout,
                                   hidden_units=config.hidden_units,
                                   class_names=splits.class_names)
        result = fine_tune(model, splits.train, splits.val, verbose=verbose, strategy=strategy,
                           callbacks=list(callbacks or []), backup_dir=backup_dir,
                           **{**config.fine_tune_kwargs(),
                              "unfreeze": config.unfreeze_options()})
        model = result.model
        report.update(history=result.history, best_epoch=result.best_val_metrics,
                      cached_features=result.cached_features, resumed_from=result.resumed_from)
        timings = dict(result.timings)
        report["trainable_params"] = int(sum(int(np.prod(v.shape))
                                             for v in model.trainable_weights))
    evaluated = evaluate_splits(model, splits, report)
    report["timings"] = dict(timings, total=time.perf_counter() - started)
    if not writer:
        report["files"] = {}
        return report
    files = save_model_and_labels(model, splits.class_names, output)
    files["report"] = output / "report.json"
    if report.get("history"):
        files["curves"] = plot_history(report["history"], output / "curves.png",
                                       title=f"{name}: training curves")
    if evaluated is not None:
        split_name, _, probs, labels = evaluated
        files["confusion_matrix"] = plot_confusion_matrix(
            report[f"{split_name}_metrics"]["confusion_matrix"], splits.class_names,
            output / "confusion_matrix.png", title=f"Confusion matrix ({split_name} split)")
        texts = getattr(splits, f"{split_name}_texts", None)
        if texts is not None and len(texts) == len(labels):
            png = write_text_errors(texts, probs, labels, splits.class_names,
                                    output / "errors.png")
            if png:
                files["errors"] = pathlib.Path(png)
    report["files"] = {k: os.fspath(v) for k, v in files.items()}
    write_json(report, output / "report.json")
    return report


def _linear_probe(backbone, splits, config: FineTuneConfig, verbose):
    """Frozen embeddings + a linear classifier, as one TextClassifier."""
    from kerastl.data.features import extract_features
    from kerastl.text.models import TextClassifier
    from kerastl.transfer.linear import fit_linear_head

    show = verbose not in (0, False, None)
    t0 = time.perf_counter()
    features, labels = extract_features(backbone, splits.train, verbose=show)
    timings = {"feature_extraction": time.perf_counter() - t0}
    t0 = time.perf_counter()
    head = fit_linear_head(features, labels, kind=config.classifier, C=config.C,
                           num_classes=len(splits.class_names))
    timings["fit_linear_head"] = time.perf_counter() - t0
    model = TextClassifier(backbone, head.num_classes, dropout=0.0,
                           class_names=splits.class_names)
    model.get_layer("predictions").set_weights(head.to_keras().get_weights())
    extra = {"linear_head": {"kind": head.kind, "C": head.C,
                             "cv_scores": {str(c): s for c, s in head.cv_scores.items()},
                             "train_accuracy": float((head.predict(features) == labels).mean())},
             "timings": timings}
    return model, extra
