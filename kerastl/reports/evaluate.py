"""Evaluate a classifier on a labelled dataset and write its report folder.

``evaluate_classifier`` is the library function behind ``kerastl evaluate``:
metrics (accuracy, top-5, macro F1, per-class precision/recall/F1, the
confusion matrix), timings, versions, and the PNGs people look at first: the
confusion matrix and a grid of the most confidently wrong images.
"""

from __future__ import annotations

import logging
import os
import pathlib
import time

import numpy as np

from kerastl.errors import UserInputError
from kerastl.reports.plots import most_confident_errors, plot_confusion_matrix, plot_errors
from kerastl.reports.report import classification_metrics, environment, write_json

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
ERRORS_FILE = "errors.png"
CONFUSION_FILE = "confusion_matrix.png"


def predict_with_labels(model, dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """``(probabilities, labels, seconds)`` over a ``(images, labels)`` dataset."""
    probs, labels = [], []
    start = time.perf_counter()
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise UserInputError("The dataset must yield (images, labels) batches.")
        images, y = batch[0], batch[1]
        probs.append(np.asarray(model(images, training=False)))
        labels.append(np.asarray(y))
    seconds = time.perf_counter() - start
    if not probs:
        raise UserInputError("The dataset to evaluate is empty.")
    return np.concatenate(probs), np.concatenate(labels), seconds


def images_at(dataset, indices: list[int], labels: np.ndarray) -> np.ndarray | None:
    """The images at ``indices`` of a dataset read again in the same order.

    Returns None when the second pass does not give the same labels at those
    places (a shuffled dataset): the grid would show the wrong images.
    """
    wanted = {int(i): n for n, i in enumerate(indices)}
    out: list = [None] * len(indices)
    offset = 0
    for batch in dataset:
        images, y = np.asarray(batch[0]), np.asarray(batch[1])
        for j in range(len(images)):
            if offset + j in wanted:
                if not np.array_equal(y[j], labels[offset + j]):
                    return None
                out[wanted[offset + j]] = images[j]
        offset += len(images)
        if all(o is not None for o in out):
            break
    if any(o is None for o in out):
        return None
    return np.stack(out) if out else np.zeros((0, 1, 1, 3))


def write_errors_grid(dataset, probabilities: np.ndarray, labels: np.ndarray,
                      class_names: list[str], path: str | os.PathLike, *,
                      count: int = 16, model=None) -> str | None:
    """Plot the ``count`` most confidently wrong images of ``dataset`` (same order as predicted).

    With the ``model`` that predicted them, each image carries its Grad-CAM heatmap of the
    (wrongly) predicted class (:func:`kerastl.grad_cam`), when the backbone has a
    convolutional feature map; plain images otherwise.

    Returns:
        The PNG path, or None when the dataset's order is not reproducible.
    """
    labels = np.asarray(labels)
    flat = labels.argmax(axis=1) if labels.ndim == 2 else labels
    indices = most_confident_errors(probabilities, flat, count=count)
    images = images_at(dataset, indices, labels)
    if images is None:
        log.warning("Not drawing %s: the dataset is shuffled, so its images cannot be "
                    "matched to the predictions", path)
        return None
    picked_probs = probabilities[indices] if indices else probabilities[:0]
    title = "Most confidently wrong predictions"
    if model is not None and indices:
        images, explained = _with_grad_cam(model, images, picked_probs.argmax(axis=1))
        title += " (Grad-CAM of the predicted class)" if explained else ""
    written, _ = plot_errors(images, picked_probs, flat[indices] if indices else flat[:0],
                             class_names, path, count=count, title=title)
    return written


def _with_grad_cam(model, images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(images with their heatmaps blended in, True)``, or ``(images, False)`` for a model
    Grad-CAM cannot explain (no convolutional feature map, not a chain of layers)."""
    import keras

    from kerastl.explain import grad_cam, overlay

    if not isinstance(model, keras.Model):
        return images, False
    try:
        # One image per gradient pass: the tape records the whole (unfrozen) backbone, ~120 MB
        # an image at 224 px; 16 at once took kerastl train's peak from 1.8 to 3.4 GB.
        heatmaps = grad_cam(model, images, classes, batch_size=1)
    except UserInputError as err:
        log.info("errors grid without Grad-CAM: %s", err)
        return images, False
    except (ValueError, TypeError, RuntimeError) as err:  # a plot never fails the run
        log.warning("errors grid without Grad-CAM (%s: %s)", type(err).__name__, err)
        return images, False
    return np.stack([overlay(i, h) for i, h in zip(images, heatmaps, strict=True)]), True


def evaluate_classifier(model, dataset, class_names: list[str], *,
                        output: str | os.PathLike | None = None, split: str = "test",
                        errors: int = 16, extra: dict | None = None, tta=False) -> dict:
    """Evaluate ``model`` on ``dataset``; with ``output``, write report.json and PNGs there.

    Args:
        model: a Keras classifier (softmax output, one unit per class).
        dataset: ``(float32 images, int labels)`` batches, in a fixed order.
        class_names: names by class index; their number must match the model.
        output: folder for ``report.json``, ``confusion_matrix.png`` and
            ``errors.png`` (None: write nothing).
        split: name of the evaluated split, recorded in the report.
        errors: images in the errors grid.
        extra: more keys for the report (``model`` path, ``data`` folder...).
        tta: test-time augmentation (:mod:`kerastl.tta`: ``True``/``"flip"``,
            ``"crops"``): the metrics are of the averaged views, and ``report["tta"]``
            has the accuracy without and with it (one pass: the first view is the image).

    Returns:
        The report dict (``metrics``, ``timings``, ``environment``, ``files``...).

    Raises:
        ValueError: class count mismatch or an empty dataset.
    """
    outputs = int(model.output_shape[-1])
    if outputs != len(class_names):
        raise UserInputError(
            f"The model predicts {outputs} classes but the data has {len(class_names)} "
            f"({', '.join(class_names[:10])}). Evaluate on data with the model's classes.")
    report = dict(extra or {})
    if tta:
        from kerastl.tta import predict_dataset_tta

        probs, labels, seconds, report["tta"] = predict_dataset_tta(model, dataset, tta)
    else:
        probs, labels, seconds = predict_with_labels(model, dataset)
    metrics = classification_metrics(probs, labels, class_names)
    report.update({
        "split": split,
        "class_names": list(class_names),
        "metrics": metrics,
        "timings": {"predict_seconds": seconds,
                    "images_per_second": metrics["examples"] / seconds if seconds else None},
        "environment": environment(),
    })
    if output is not None:
        output = pathlib.Path(output)
        output.mkdir(parents=True, exist_ok=True)
        files = {"report": os.fspath(output / REPORT_FILE)}
        files["confusion_matrix"] = plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, output / CONFUSION_FILE,
            title=f"Confusion matrix ({split})")
        if getattr(dataset.element_spec[0], "dtype", None) == "string":  # texts
            from kerastl.reports.plots import write_text_errors

            texts = [t for batch, _ in dataset for t in batch.numpy()]
            grid = write_text_errors(texts, probs, labels, class_names, output / ERRORS_FILE,
                                     count=errors) if errors else None
        else:
            grid = write_errors_grid(dataset, probs, labels, class_names,
                                     output / ERRORS_FILE, count=errors, model=model)
        if grid:
            files["errors"] = grid
        report["files"] = files
        write_json(report, output / REPORT_FILE)
    return report
