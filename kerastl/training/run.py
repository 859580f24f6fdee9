"""A whole training run: build, fine-tune, evaluate, and write model, report and plots.

This is the library function behind ``kerastl train`` and ``kerastl demo``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import time

import keras

from kerastl.atomic import atomic_path, atomic_write_text, remove_stale_temp_files
from kerastl.errors import UserInputError
from kerastl.models import build_classifier
from kerastl.reports.evaluate import write_errors_grid
from kerastl.reports.plots import plot_confusion_matrix, plot_history
from kerastl.reports.report import classification_metrics, environment, predict_dataset, write_json
from kerastl.training.fine_tune import fine_tune

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


def claim_free_dir(base: str | os.PathLike) -> pathlib.Path:
    """Create and return ``base``, or ``base-2``, ``base-3``, ... when it is taken.

    Each candidate is claimed with an exclusive ``mkdir``, which exactly one
    process can win, so runs started at the same moment never share a
    folder: the loser moves on to the next number. The parent is created
    when missing.
    """
    base = pathlib.Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, i = base, 1
    while True:
        try:
            candidate.mkdir()
        except FileExistsError:
            i += 1
            candidate = pathlib.Path(f"{base}-{i}")
            continue
        return candidate


def prepare_output(output: str | os.PathLike, *, overwrite: bool = False,
                   create: bool = True) -> pathlib.Path:
    """Create ``output``; refuse to replace a trained model there unless ``overwrite``.

    With ``create=False`` (a worker of a cluster that leaves writing to the
    chief) the same checks run and nothing is created or removed.
    """
    output = pathlib.Path(output)
    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output} exists and is not a folder")
    if (output / MODEL_FILE).exists() and not overwrite:
        raise UserInputError(
            f"{output} already holds a trained model ({MODEL_FILE}); choose another "
            "--output or pass --overwrite to replace it"
        )
    if create:
        output.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(output)  # left by a run killed while saving
    return output


def save_model_atomically(model: keras.Model, path: str | os.PathLike) -> pathlib.Path:
    """Save ``model`` to ``path`` via a temporary file, so a crash never leaves half a file."""
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def save_model_and_labels(model: keras.Model, class_names, output: pathlib.Path) -> dict:
    """Save ``model.keras`` atomically and ``labels.txt`` beside it.

    ``kerastl export`` and ``kerastl predict`` read ``labels.txt`` to name the classes.
    """
    labels = atomic_write_text(output / "labels.txt", "".join(f"{name}\n" for name in class_names))
    return {"model": save_model_atomically(model, output / MODEL_FILE), "labels": labels}


def train_and_report(splits, *, backbone: str, output: str | os.PathLike | None,
                     weights="imagenet",
                     head_epochs: int = 3, epochs: int = 10, learning_rate: float = 1e-3,
                     fine_tune_learning_rate: float = 1e-4, unfreeze: dict | None = None,
                     dropout: float = 0.2, hidden_units=(), overwrite: bool = False,
                     verbose="auto", config: dict | None = None, strategy=None,
                     lr_find: bool = False, **fine_tune_kwargs) -> dict:
    """Fine-tune a classifier on ``splits`` and write everything a user wants to keep.

    Writes into ``output``: ``model.keras``, ``report.json`` (config, history,
    validation/test metrics with per-class precision/recall/F1, timings,
    versions, skipped files), ``curves.png``, ``confusion_matrix.png`` and ``errors.png`` (the most
    confidently wrong images of the evaluated split).

    With a ``strategy`` (a name for :func:`kerastl.distribute.get_strategy` or a
    ``tf.distribute.Strategy``) the model is built in its scope and trained
    on all its replicas; in a cluster only the chief writes files, and the
    other workers may pass ``output=None``.

    With ``lr_find=True`` the learning-rate finder (:func:`kerastl.lr_find`)
    first sweeps the head's rate on the frozen backbone; its suggestion
    replaces ``learning_rate`` for phase 1, and ``lr_find.png`` and the
    suggestions are added to the outputs.

    Returns:
        The report as a dict (also written to ``report.json``).
    """
    from kerastl import distribute
    from kerastl.backbones.builder import build_backbone

    if strategy is not None:
        strategy = distribute.get_strategy(strategy)
    writer = distribute.is_chief(strategy)
    if output is None and writer:
        raise UserInputError("train_and_report needs an output folder")
    if output is not None:  # every worker checks it, so all fail or none
        output = prepare_output(output, overwrite=overwrite, create=writer)
    started = time.perf_counter()
    if splits.image_size is None:
        raise UserInputError("The data splits do not say their image size")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_classifier(
            build_backbone(backbone, weights=weights, image_size=splits.image_size),
            len(splits.class_names), dropout=dropout, hidden_units=tuple(hidden_units),
            class_names=splits.class_names, resize=splits.resize,
        )
    found = None
    if lr_find:
        if strategy is not None:
            raise UserInputError("lr_find cannot run under a distribution strategy yet; "
                                 "run it without --strategy, then pass its rate as --lr.")
        from kerastl.training.lr_finder import lr_find as find_rate

        found = find_rate(model, splits.train, optimizer=fine_tune_kwargs.get("optimizer", "adam"),
                          plot=output / "lr_find.png")
        log.info("Learning-rate finder: phase-1 rate %.3g (was %.3g)", found.suggestion,
                 learning_rate)
        learning_rate = float(found.suggestion)
    result = fine_tune(model, splits.train, splits.val, head_epochs=head_epochs, epochs=epochs,
                       learning_rate=learning_rate,
                       fine_tune_learning_rate=fine_tune_learning_rate, unfreeze=unfreeze,
                       verbose=verbose, strategy=strategy, **fine_tune_kwargs)
    report = {
        "mode": "fine-tune",
        "backbone": backbone,
        "weights": str(weights),
        "class_names": list(splits.class_names),
        "counts": dict(splits.counts),
        "config": dict(config or {}),
        "history": result.history,
        "best_epoch": result.best_val_metrics,
        "cached_features": result.cached_features,
        "resumed_from": result.resumed_from,
        "skipped_files": [list(item) for item in splits.skipped],
        "environment": environment(),
    }
    if found is not None:
        report["lr_find"] = {"suggestion": float(found.suggestion), "method": found.method,
                             "suggestions": {k: float(v) for k, v in found.suggestions.items()},
                             "steps": len(found.learning_rates)}
    evaluated = evaluate_splits(result.model, splits, report)
    report["timings"] = dict(result.timings, total=time.perf_counter() - started)
    if not writer:  # workers of a cluster: the chief writes the files
        report["files"] = {}
        return report
    files = save_model_and_labels(result.model, splits.class_names, output)
    files["report"] = output / "report.json"
    files["curves"] = plot_history(result.history, output / "curves.png",
                                   title=f"{backbone}: training curves")
    if found is not None and found.plot:
        files["lr_find"] = pathlib.Path(found.plot)
    files.update(evaluation_plots(report, evaluated, splits.class_names, output,
                                  model=result.model))
    report["files"] = {k: os.fspath(v) for k, v in files.items()}
    write_json(report, output / "report.json")
    return report


def evaluate_splits(model, splits, report: dict):
    """Add ``val_metrics`` / ``test_metrics`` to ``report``; return the last split evaluated
    as ``(name, dataset, probabilities, labels)``, or ``None``."""
    evaluated = None
    for split_name in ("val", "test"):
        dataset = getattr(splits, split_name)
        if dataset is None:
            continue
        probs, labels = predict_dataset(model, dataset)
        report[f"{split_name}_metrics"] = classification_metrics(probs, labels,
                                                                 splits.class_names)
        evaluated = (split_name, dataset, probs, labels)
    return evaluated


def evaluation_plots(report: dict, evaluated, class_names, output: pathlib.Path, *,
                     model=None) -> dict:
    """``confusion_matrix.png`` and ``errors.png`` of the split :func:`evaluate_splits` chose
    (with the ``model``'s Grad-CAM heatmaps on the wrong images, where it has them)."""
    if evaluated is None:
        return {}
    split_name, dataset, probs, labels = evaluated
    files = {"confusion_matrix": plot_confusion_matrix(
        report[f"{split_name}_metrics"]["confusion_matrix"], class_names,
        output / "confusion_matrix.png", title=f"Confusion matrix ({split_name} split)")}
    errors_png = write_errors_grid(dataset, probs, labels, class_names, output / "errors.png",
                                   model=model)
    if errors_png:
        files["errors"] = errors_png
    return files
