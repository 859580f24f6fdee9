"""k-fold cross-validation for small image datasets.

With a hundred images per class a single validation split of twenty is a
noisy judge; training ``k`` models, each tested on a different fold, gives a
mean and a standard deviation instead of one lucky (or unlucky) number.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from kerastl.errors import DataError, UserInputError
from kerastl.memory import GraphRelease

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CrossValidationResult:
    """What :func:`cross_validate` returns.

    Attributes:
        folds: one dict per fold: ``fold``, ``train_examples``,
            ``test_examples``, ``seconds`` and the metrics.
        mean: ``{metric: mean over folds}``.
        std: ``{metric: sample standard deviation over folds}`` (ddof=1).
    """

    folds: list[dict]
    mean: dict[str, float]
    std: dict[str, float]

    def summary(self) -> str:
        """``"accuracy 0.8120 ± 0.0150, macro_f1 ..."`` over the folds."""
        return ", ".join(f"{k} {self.mean[k]:.4f} ± {self.std[k]:.4f}" for k in self.mean)


def stratified_folds(labels: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Fold index (``0 .. k-1``) of each example, every class spread evenly over the folds."""
    labels = np.asarray(labels)
    keys = labels.argmax(axis=1) if labels.ndim == 2 else labels
    rng = np.random.default_rng(seed)
    fold = np.empty(len(keys), dtype=np.int64)
    offset = 0
    for cls in np.unique(keys):
        idx = rng.permutation(np.flatnonzero(keys == cls))
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)  # the next class starts where this one stopped
    return fold


def _as_arrays(data) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for batch in data:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise UserInputError("cross_validate needs (images, labels) batches.")
            xs.append(np.asarray(batch[0]))
            ys.append(np.asarray(batch[1]))
        if not xs:
            raise DataError("cross_validate: the dataset is empty.")
        return np.concatenate(xs), np.concatenate(ys)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y) or len(x) == 0:
            raise UserInputError(
                f"images and labels must be non-empty and equally long. Received {x.shape} "
                f"and {y.shape}"
            )
        return x, y
    raise UserInputError(
        "data must be a pair (images or texts, labels) of arrays or a tf.data.Dataset of "
        f"(images, labels) batches. Received: {type(data).__name__}"
    )


def _metrics(model: keras.Model, dataset: tf.data.Dataset, num_classes: int) -> dict:
    from kerastl.models import task_of
    from kerastl.reports.report import classification_metrics, predict_dataset

    outputs, labels = predict_dataset(model, dataset)
    if task_of(model) == "regression":
        err = outputs.reshape(len(labels), -1) - np.asarray(labels).reshape(len(labels), -1)
        return {"mae": float(np.abs(err).mean()), "mse": float(np.square(err).mean())}
    names = [str(i) for i in range(max(num_classes, outputs.shape[-1]))]
    metrics = classification_metrics(outputs, labels, names)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def cross_validate(build_fn: Callable[[], keras.Model], data, k: int = 5, *,
                   fit_fn: Callable | None = None, batch_size: int = 32, seed: int = 0,
                   **fine_tune_kwargs) -> CrossValidationResult:
    """Train and test ``k`` fresh models, each holding out one stratified fold.

    Args:
        build_fn: called with no arguments for every fold; returns a new,
            untrained model (e.g. ``lambda: ktl.build_classifier(backbone_fn(), 10)``;
            build the backbone inside so folds share no weights).
        data: ``(images, labels)`` arrays or a ``tf.data.Dataset`` of such
            batches (read once into memory: this is for small datasets).
        k: number of folds (2 .. smallest class size).
        fit_fn: ``fit_fn(model, train_ds, val_ds) -> model`` trains one fold;
            default :func:`kerastl.fine_tune` with ``fine_tune_kwargs`` and the
            held-out fold used for testing only (no early stopping on it).
        batch_size: batch size of the per-fold datasets.
        seed: seed of the fold assignment (and of the training shuffles).
        **fine_tune_kwargs: passed to :func:`kerastl.fine_tune` (``head_epochs``,
            ``epochs``, ``learning_rate``, ``optimizer`` ...).

    Returns:
        A :class:`CrossValidationResult`: per-fold metrics (accuracy and macro F1,
        or MAE and MSE for regressors) and their mean and standard deviation.
        The fold models are not kept: after scoring, each fold's traced graphs
        are released (:class:`kerastl.memory.GraphRelease`), so k folds cost the
        memory of one.

    Raises:
        ValueError: bad ``k`` or data, or ``fit_fn`` together with fine-tuning options.

    Example:
        >>> cv = ktl.cross_validate(lambda: ktl.build_classifier(
        ...     ktl.build_backbone("efficientnet_lite0", image_size=96), 10), (x, y), k=5,
        ...     head_epochs=5, epochs=0)
        >>> cv.summary()
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise UserInputError(f"k must be an int >= 2. Received: k={k!r}")
    if fit_fn is not None and fine_tune_kwargs:
        raise UserInputError(
            "Pass either fit_fn or fine_tune options, not both. Received fine_tune options: "
            f"{sorted(fine_tune_kwargs)}"
        )
    x, y = _as_arrays(data)
    keys = y.argmax(axis=1) if y.ndim == 2 else y
    if np.issubdtype(keys.dtype, np.integer):
        smallest = int(np.unique(keys, return_counts=True)[1].min())
        if smallest < k:
            raise UserInputError(
                f"k={k} folds need at least {k} examples of every class; the smallest class "
                f"has {smallest}. Use a smaller k."
            )
        folds = stratified_folds(y, k, seed=seed)
        num_classes = int(keys.max()) + 1
    else:  # regression targets: plain shuffled folds
        folds = np.random.default_rng(seed).permutation(len(y)) % k
        num_classes = 0

    def dataset(index, shuffle):
        inputs = x[index] if x.dtype.kind in "USO" else x[index].astype("float32")  # texts
        ds = tf.data.Dataset.from_tensor_slices((inputs, y[index]))
        if shuffle:
            ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    if fit_fn is None:
        from kerastl.training.fine_tune import fine_tune

        fine_tune_kwargs.setdefault("verbose", 0)

        def fit_fn(model, train, val):
            return fine_tune(model, train, **fine_tune_kwargs).model

    rows = []
    for i in range(k):
        train_idx, test_idx = np.flatnonzero(folds != i), np.flatnonzero(folds == i)
        keras.utils.set_random_seed(seed + i)
        start = time.perf_counter()
        graphs = GraphRelease()
        model = build_fn()
        if not isinstance(model, keras.Model):
            raise UserInputError(
                f"build_fn must return a keras.Model. Received: {type(model).__name__}"
            )
        test_ds = dataset(test_idx, False)
        trained = fit_fn(model, dataset(train_idx, True), test_ds)
        trained = model if trained is None else trained
        row = {"fold": i, "train_examples": len(train_idx), "test_examples": len(test_idx)}
        row.update(_metrics(trained, test_ds, num_classes))
        row["seconds"] = time.perf_counter() - start
        log.info("fold %d/%d: %s", i + 1, k,
                 ", ".join(f"{m}={v:.4f}" for m, v in row.items() if isinstance(v, float)))
        rows.append(row)
        del model, trained
        graphs.release(clear_session=False)  # the fold's traced graphs (kerastl.memory)
    names = [m for m in rows[0] if m not in ("fold", "train_examples", "test_examples",
                                              "seconds")]
    mean = {m: float(np.mean([r[m] for r in rows])) for m in names}
    std = {m: float(np.std([r[m] for r in rows], ddof=1)) for m in names}
    return CrossValidationResult(folds=rows, mean=mean, std=std)
