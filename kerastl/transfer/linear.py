"""A linear classifier on frozen features (scikit-learn), and its exact Keras twin.

:func:`fit_linear_head` fits logistic regression, a linear SVM or a ridge
classifier on backbone features, with a cross-validated choice of ``C`` by
default. :meth:`LinearHead.to_keras` turns the result into a Dense layer
(standardisation folded into its weights) and :func:`linear_head_model` puts
that layer on the backbone, so the result is one Keras model that saves,
exports and serves like any other kerastl classifier.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import keras
import numpy as np

from kerastl.errors import DataError, UserInputError, require

log = logging.getLogger(__name__)

KINDS = ("logistic", "linear_svm", "ridge")
#: Candidate values of C for the cross-validated choice (features are standardised).
DEFAULT_C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# Logit of a class the training labels never contain: never predicted.
_ABSENT_LOGIT = -1e4
# Below this many feature values (N * D) the solvers run with one BLAS thread.
# Measured here (2 busy cores): logistic regression on 1000 x 1280 features took
# 3.5 s with OpenBLAS's 2 threads (spinning against TensorFlow and other work)
# and 0.13 s with one; for problems this small, extra threads only add waiting.
_SINGLE_THREAD_MAX_VALUES = 50_000_000


@dataclasses.dataclass
class LinearHead:
    """A fitted linear classifier over backbone features.

    Attributes:
        kind: ``"logistic"``, ``"linear_svm"`` or ``"ridge"``.
        C: the inverse regularisation strength used (chosen by CV when asked).
        num_classes: number of outputs (classes ``0 .. num_classes - 1``).
        weights: ``(feature_dim, num_classes)`` kernel in the raw feature space
            (the standardisation is folded in).
        bias: ``(num_classes,)``.
        estimator: the fitted scikit-learn pipeline (scaler + classifier).
        cv_scores: ``{C: mean validation accuracy}`` of the search (empty when
            ``C`` was given).
    """

    kind: str
    C: float
    num_classes: int
    weights: np.ndarray
    bias: np.ndarray
    estimator: object
    cv_scores: dict[float, float] = dataclasses.field(default_factory=dict)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class indices predicted by the scikit-learn estimator."""
        return np.asarray(self.estimator.predict(np.asarray(features)))

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``features @ weights + bias`` in float64 (what the Dense layer computes)."""
        return np.asarray(features, dtype=np.float64) @ self.weights + self.bias

    def to_keras(self, *, name: str = "predictions") -> keras.layers.Dense:
        """A built Dense layer (softmax, float32) computing this classifier.

        For ``"logistic"`` its outputs are the classifier's probabilities
        (``predict_proba``); for ``"linear_svm"`` and ``"ridge"`` they are a
        softmax of the decision function: the same argmax, not calibrated
        probabilities.
        """
        layer = keras.layers.Dense(self.num_classes, activation="softmax", dtype="float32",
                                   name=name)
        layer.build((None, self.weights.shape[0]))
        layer.set_weights([self.weights.astype("float32"), self.bias.astype("float32")])
        return layer


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2:  # one-hot
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) and not (
            np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
        raise UserInputError(
            "labels must be integer class indices (N,) or one-hot (N, K). "
            f"Received shape {labels.shape}, dtype {labels.dtype}"
        )
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise UserInputError(f"labels must be >= 0. Received a label {labels.min()}")
    return labels


def _estimator(kind: str, C: float, class_weight, seed: int):
    linear_model = require("sklearn.linear_model", "sklearn", "Fitting a linear head")
    if kind == "logistic":
        return linear_model.LogisticRegression(C=C, max_iter=2000, class_weight=class_weight)
    if kind == "linear_svm":
        svm = require("sklearn.svm", "sklearn", "Fitting a linear head")
        return svm.LinearSVC(C=C, class_weight=class_weight, max_iter=5000, random_state=seed)
    # Ridge's alpha is its regularisation strength; 1/C keeps "bigger C, weaker penalty".
    return linear_model.RidgeClassifier(alpha=1.0 / C, class_weight=class_weight)


def _check_C(C, C_grid) -> None:
    values = [C] if C is not None else list(C_grid)
    if not values or any(isinstance(c, bool) or not isinstance(c, (int, float)) or c <= 0
                         for c in values):
        raise UserInputError(
            f"C must be a positive number (or None to choose it by cross-validation from "
            f"C_grid of positive numbers). Received: C={C!r}, C_grid={tuple(C_grid)!r}"
        )


def fit_linear_head(features, labels, *, kind: str = "logistic", C: float | None = None,
                    class_weight: dict | str | None = None, num_classes: int | None = None,
                    standardize: bool = True, C_grid: Sequence[float] = DEFAULT_C_GRID,
                    cv: int = 3, seed: int = 0) -> LinearHead:
    """Fit a linear classifier on frozen features with scikit-learn.

    Args:
        features: ``(N, D)`` array, e.g. from :func:`kerastl.extract_features`.
        labels: ``(N,)`` integer classes or ``(N, K)`` one-hot.
        kind: ``"logistic"`` (multinomial logistic regression),
            ``"linear_svm"`` (one-vs-rest ``LinearSVC``) or ``"ridge"``
            (``RidgeClassifier`` with ``alpha = 1 / C``).
        C: inverse regularisation strength. ``None`` (default) picks it from
            ``C_grid`` by stratified ``cv``-fold cross-validated accuracy.
        class_weight: ``None``, ``"balanced"`` or ``{class: weight}``.
        num_classes: number of outputs; default ``max(label) + 1``. Classes
            missing from ``labels`` get an output that is never predicted.
        standardize: scale features to zero mean, unit variance first (folded
            into the weights of the Keras layer afterwards).
        C_grid: candidates for the cross-validated choice.
        cv: folds of that choice (fewer when a class has fewer examples).
        seed: seed of the folds.

    Returns:
        A :class:`LinearHead`.

    Raises:
        ValueError: bad arguments, mismatched shapes, fewer than 2 classes.
        ImportError: scikit-learn is not installed (``pip install 'kerastl[sklearn]'``).

    Example:
        >>> head = ktl.fit_linear_head(train_features, train_labels)
        >>> model = linear_head_model(backbone, head)
    """
    if kind not in KINDS:
        raise UserInputError(f"Unknown kind '{kind}'. Known: {', '.join(KINDS)}. "
                             f"Received: kind={kind!r}")
    _check_C(C, C_grid)
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise UserInputError(f"cv must be an int >= 2. Received: cv={cv!r}")
    features = np.asarray(features)
    y = _labels(labels)
    if features.ndim != 2 or len(features) != len(y) or len(y) == 0:
        raise UserInputError(
            "features must be (N, D) with one label per row. Received features "
            f"{features.shape} and {len(y)} labels."
        )
    if not np.all(np.isfinite(features)):
        raise DataError("features contain NaN or infinite values")
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"A classifier needs at least 2 classes; the labels hold only {classes}")
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    if num_classes <= y.max():
        raise UserInputError(f"num_classes={num_classes} but a label is {y.max()}")
    pipeline_lib = require("sklearn.pipeline", "sklearn", "Fitting a linear head")
    preprocessing = require("sklearn.preprocessing", "sklearn", "Fitting a linear head")

    def make(c):
        steps = [preprocessing.StandardScaler()] if standardize else []
        return pipeline_lib.make_pipeline(*steps, _estimator(kind, c, class_weight, seed))

    threads = require("threadpoolctl", "sklearn", "Fitting a linear head")
    small = features.size <= _SINGLE_THREAD_MAX_VALUES
    with threads.threadpool_limits(1 if small else None, user_api="blas"):
        C, cv_scores, estimator = _search_and_fit(make, features, y, kind, C, C_grid, cv, seed)
    weights, bias = _fold(estimator, classes, num_classes, features.shape[1])
    return LinearHead(kind=kind, C=float(C), num_classes=num_classes, weights=weights,
                      bias=bias, estimator=estimator, cv_scores=cv_scores)


def _search_and_fit(make, features, y, kind, C, C_grid, cv, seed):
    """``(C, cv_scores, fitted pipeline)``: choose C by stratified CV when it is None."""
    cv_scores: dict[float, float] = {}
    classes = np.unique(y)
    smallest = int(np.bincount(y)[classes].min())
    folds = min(int(cv), smallest)
    if C is None and folds >= 2 and len(C_grid) > 1:
        cv_scores = _cv_scores(make, features, y, kind, C_grid, folds, seed)
        C = max(C_grid, key=lambda c: cv_scores[float(c)])  # the first listed of ties
        log.info("fit_linear_head: C=%g chosen by %d-fold CV (accuracy %.4f)", C, folds,
                 cv_scores[float(C)])
    elif C is None:
        C = float(C_grid[0]) if len(C_grid) == 1 else 1.0
        log.warning("fit_linear_head: too few examples per class for cross-validation "
                    "(smallest class has %d); using C=%g", smallest, C)
    estimator = make(float(C))
    estimator.fit(features, y)
    return float(C), cv_scores, estimator


def _cv_scores(make, features, y, kind, C_grid, folds, seed) -> dict[float, float]:
    """``{C: mean accuracy}`` over stratified folds, walking the regularisation path.

    Per fold the scaler is fitted once, and logistic regression visits C from
    strongest to weakest penalty, each fit starting from the previous
    solution (as ``LogisticRegressionCV`` does): ~30 % fewer solver
    iterations than independent fits, the same choice of C up to the
    solver's tolerance.
    """
    model_selection = require("sklearn.model_selection", "sklearn", "Fitting a linear head")
    splitter = model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed)
    path = sorted({float(c) for c in C_grid})
    scores: dict[float, list[float]] = {c: [] for c in path}
    for train_idx, test_idx in splitter.split(features, y):
        pipeline = make(path[0])
        scaler, x_train, x_test = None, features[train_idx], features[test_idx]
        if len(pipeline.steps) > 1:
            scaler = pipeline.steps[0][1].fit(x_train)
            x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        clf = pipeline.steps[-1][1]
        if kind == "logistic":
            clf.set_params(warm_start=True)
        for c in path:
            if kind == "ridge":
                clf.set_params(alpha=1.0 / c)
            else:
                clf.set_params(C=c)
            clf.fit(x_train, y[train_idx])
            scores[c].append(float(np.mean(clf.predict(x_test) == y[test_idx])))
    return {c: float(np.mean(v)) for c, v in scores.items()}


def _fold(estimator, classes: np.ndarray, num_classes: int, dim: int):
    """Kernel ``(D, K)`` and bias ``(K,)`` in raw feature space, scaler folded in."""
    clf = estimator.steps[-1][1]
    coef = np.atleast_2d(np.asarray(clf.coef_, dtype=np.float64))
    intercept = np.broadcast_to(np.asarray(clf.intercept_, dtype=np.float64),
                                (coef.shape[0],)).copy()
    if coef.shape[0] == 1:  # binary: decision z for classes[1]; logits (0, z) keep argmax
        coef = np.vstack([np.zeros_like(coef), coef])  # and softmax = (1 - sigmoid, sigmoid)
        intercept = np.array([0.0, intercept[0]])
    if len(estimator.steps) > 1:
        scaler = estimator.steps[0][1]
        coef = coef / scaler.scale_
        intercept = intercept - coef @ scaler.mean_
    weights = np.zeros((dim, num_classes))
    bias = np.full(num_classes, _ABSENT_LOGIT)
    weights[:, classes] = coef.T
    bias[classes] = intercept
    return weights, bias


def linear_head_model(backbone: keras.Model, head: LinearHead, *,
                      name: str | None = None, class_names=None,
                      resize: str = "stretch") -> keras.Model:
    """One Keras classifier: ``image -> backbone -> Dense "predictions"`` from ``head``.

    The model has the layout of :func:`kerastl.build_classifier` (input
    ``"image"``, the backbone nested as one layer, a softmax ``"predictions"``
    layer), so ``fine_tune``, ``export_saved_model`` and ``kerastl predict``
    treat it like any other classifier.

    Args:
        backbone: the backbone the features came from (a model from
            ``build_backbone``, or a model containing one).
        head: from :func:`fit_linear_head` on that backbone's features.
        name: model name; default ``"<backbone>_linear"``.
        class_names, resize: the model's contract (see :class:`kerastl.ImageClassifier`).

    Returns:
        An :class:`kerastl.ImageClassifier` without dropout whose
        ``"predictions"`` layer holds the head's weights.

    Raises:
        ValueError: the backbone's feature size differs from the head's.
    """
    from kerastl.transfer.features import resolve_backbone

    backbone = resolve_backbone(backbone)
    dim = int(backbone.output.shape[-1])
    if dim != head.weights.shape[0]:
        raise UserInputError(
            f"The head was fitted on {head.weights.shape[0]}-D features but backbone "
            f"'{backbone.name}' outputs {dim}-D features; fit it on this backbone's features."
        )
    from kerastl.models import ImageClassifier

    model = ImageClassifier(backbone, head.num_classes, dropout=0.0,
                            name=name or f"{backbone.name}_linear", class_names=class_names,
                            resize=resize)
    model.get_layer("predictions").set_weights(head.to_keras().get_weights())
    return model
