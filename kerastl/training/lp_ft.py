"""LP-FT and L2-SP: the two ways :func:`kerastl.fine_tune` keeps phase 2 near the
pretrained features.

``head_init="linear_probe"`` (LP-FT, Kumar et al. 2022, "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution"): phase 1
extracts the frozen backbone's features once, fits a converged,
cross-validated logistic regression on them (scikit-learn's
``LogisticRegressionCV`` on standardised features; called directly because
:mod:`kerastl.transfer` imports this package) and copies its weights, the
scaler folded in, into the Dense
``"predictions"`` layer. Phase 2 then starts from a head that already fits,
so the first gradients reaching the backbone are not those of a random head.

C is chosen by cross-validated accuracy, as :func:`kerastl.fit_linear_head`
does. On few-shot data accuracy barely moves across C, so the choice lands on
a weak penalty and a sharp head (C=10 at 100 images/class: training loss
0.0009), which sends small gradients to the backbone in phase 2 and so changes
its features less. Choosing C by log loss instead (a calibrated head, C=0.01
there) was measured with benchmarks/lp_ft.py, 3 seeds. LP-FT minus
fine-tuning at 10 / 30 / 100 images per class, clean: +2.08 / +0.10 / +0.02 pp
against +3.38 / +1.55 / -0.68 pp with accuracy; shifted test sets: -3.93 /
-0.53 / -1.39 pp against -1.64 / +2.48 / -2.86 pp. LP-FT is for few images
per class, where the sharp head does better: it is kept.

``regularization="l2_sp"`` (Li et al. 2018, "Explicit Inductive Bias for
Transfer Learning with Convolutional Networks"): phase 2's loss gets
``l2_sp * sum ||w - w0||^2`` over the unfrozen backbone weights, ``w0`` their
values when phase 2 starts (see :func:`kerastl.regularization.add_l2_sp`).
"""

from __future__ import annotations

import logging
import time
import warnings

import keras
import numpy as np

from kerastl.config import DEFAULT_SEED
from kerastl.data.pipeline import epoch_order
from kerastl.errors import UserInputError, require
from kerastl.freezing import find_backbone
from kerastl.freezing import unfreeze as unfreeze_model
from kerastl.training.checkpoint import pause_point

log = logging.getLogger(__name__)


def probe_layer(model: keras.Model, backbone: keras.Model) -> keras.layers.Dense:
    """The softmax Dense ``"predictions"`` layer that reads the backbone's features directly.

    Raises:
        ValueError: the head has hidden layers (or no such layer): a linear
            probe can only initialise a head that is one linear layer.
    """
    layers = model.layers
    dense = next((layer for layer in layers if layer.name == "predictions"), None)
    ok = (isinstance(dense, keras.layers.Dense) and backbone in layers
          and layers.index(dense) == len(layers) - 1
          and dense.activation is keras.activations.softmax
          and int(dense.kernel.shape[0]) == int(backbone.output.shape[-1])
          and not any(layer.weights for layer in layers[layers.index(backbone) + 1:-1]))
    if not ok:
        raise UserInputError(
            "head_init='linear_probe' needs a classifier whose softmax 'predictions' Dense "
            "layer reads the backbone's pooled features directly (build_classifier without "
            f"hidden_units). Received: model '{model.name}' with layers "
            f"{[layer.name for layer in layers]}")
    return dense


def _cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


#: Candidate C values of the probe's cross-validation (kerastl.transfer.linear's grid).
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# Logit of a class the training labels never contain: never predicted.
_ABSENT_LOGIT = -1e4


def fit_probe(features, labels, num_classes: int, *, class_weight=None, seed: int = 0):
    """``(kernel (D, K), bias (K,), pipeline)``: scaler + ``LogisticRegressionCV``, folded."""
    linear_model = require("sklearn.linear_model", "sklearn", "head_init='linear_probe'")
    pipeline_lib = require("sklearn.pipeline", "sklearn", "head_init='linear_probe'")
    preprocessing = require("sklearn.preprocessing", "sklearn", "head_init='linear_probe'")
    selection = require("sklearn.model_selection", "sklearn", "head_init='linear_probe'")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise UserInputError(f"A linear probe needs 2 or more classes; the labels hold {classes}")
    folds = max(2, min(3, int(counts.min())))
    probe = linear_model.LogisticRegressionCV(
        Cs=list(C_GRID), cv=selection.StratifiedKFold(folds, shuffle=True, random_state=seed),
        max_iter=2000, class_weight=class_weight, scoring="accuracy")
    pipeline = pipeline_lib.make_pipeline(preprocessing.StandardScaler(), probe)
    threads = require("threadpoolctl", "sklearn", "head_init='linear_probe'")
    # one BLAS thread: on small problems more only wait (see kerastl/transfer/linear.py)
    with warnings.catch_warnings(), threads.threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.8's future defaults
        pipeline.fit(features, labels)
    scaler = pipeline.steps[0][1]
    coef = np.atleast_2d(np.asarray(probe.coef_, np.float64)) / scaler.scale_
    intercept = np.asarray(probe.intercept_, np.float64) - coef @ scaler.mean_
    if coef.shape[0] == 1:  # binary: z for classes[1]; logits (0, z) give the same softmax
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    kernel = np.zeros((coef.shape[1], num_classes))
    bias = np.full(num_classes, _ABSENT_LOGIT)
    kernel[:, classes], bias[classes] = coef.T, intercept
    return kernel, bias, pipeline


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    return (labels.argmax(axis=1) if labels.ndim == 2 else labels).astype(np.int64)


def _scores(kernel, bias, features, labels, prefix: str) -> dict[str, float]:
    y = _labels(labels)
    logits = np.asarray(features, np.float64) @ kernel + bias
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {f"{prefix}loss": _cross_entropy(probabilities, y),
            f"{prefix}accuracy": float(np.mean(probabilities.argmax(axis=1) == y))}


def linear_probe_phase(runner) -> None:
    """Phase 1 of :class:`kerastl.training.phases.TwoPhases` as a linear probe.

    Sets the head's weights, records one history row (phase 1, epoch 1, with
    the probe's training and validation loss and accuracy), then unfreezes for
    phase 2 as the epoch-based phase 1 does.

    With phase 2 to run, that row does not compete for the best weights: LP-FT's
    result is a fine-tuned model, and fine-tuning makes a model more accurate
    before it makes its validation loss lower. With the row competing and a
    calibrated probe (C by log loss), 3 of 6 benchmark runs at 30 and 100
    images/class (benchmarks/lp_ft.py) restored the probe and ended at its accuracy.
    """
    from kerastl.data.features import extract_features

    model, o = runner.model, runner.o
    backbone, _spec = find_backbone(model)
    dense = probe_layer(model, backbone)
    start = time.perf_counter()
    order = epoch_order(runner.train)
    verbose = o["verbose"] == 1
    features, labels = extract_features(backbone, order["unshuffled"] if order else runner.train,
                                        verbose=verbose)
    val = extract_features(backbone, runner.val, verbose=verbose) if runner.val is not None \
        else None
    runner.timings["feature_extraction"] = time.perf_counter() - start
    runner.cached = True
    kernel, bias, pipeline = fit_probe(features, _labels(labels), int(dense.units),
                                       class_weight=o["class_weight"], seed=DEFAULT_SEED)
    dense.set_weights([kernel.astype("float32"), bias.astype("float32")])
    runner.linear_head = pipeline
    logs = _scores(kernel, bias, features, labels, "")
    if val is not None:
        logs.update(_scores(kernel, bias, *val, "val_"))
    log.info("Phase 1 (linear probe): logistic regression, C=%g by CV; %s",
             float(np.ravel(pipeline.steps[-1][1].C_)[0]),
             ", ".join(f"{k}={v:.4f}" for k, v in logs.items()))
    runner.rows.append({"epoch": 1, "phase": 1, **logs})
    if runner.first_competing_row() == 0:  # the probe is the result (no phase 2)
        runner.best.on_epoch_end(0, logs)
    runner.timings["phase1"] = time.perf_counter() - start
    runner.phase1_epochs = len(runner.rows)
    if o["epochs"]:
        unfreeze_model(model, **o["unfreeze"])
        runner.save(2, phase_epochs_done=0, label="phase-boundary")
        pause_point("phase-boundary")


#: Up to this many training images per class, LP-FT beat the default in
#: benchmarks/lp_ft.py (+3.38 pp at 10 per class, +1.55 pp at 30; -0.68 pp at 100).
FEW_PER_CLASS = 30


def suggest_linear_probe(model, backbone, labels, epochs: int) -> bool:
    """Log a hint to try LP-FT when a run with a trained head has few images per class.

    Returns whether it did. Called by phase 1 of ``head_init="random"`` with the
    labels it extracted features for; silent for models LP-FT cannot start
    (regressors, hidden layers, sigmoid heads) and without a phase 2.
    """
    labels = np.asarray(labels)
    if not epochs or labels.size == 0 or not (
            np.issubdtype(labels.dtype, np.integer) or labels.ndim == 2):
        return False
    try:
        probe_layer(model, backbone)
    except UserInputError:
        return False
    y = _labels(labels)
    if y.min() < 0:
        return False
    most = int(np.bincount(y).max())
    if most > FEW_PER_CLASS:
        return False
    log.info("At most %d training images per class: head_init='linear_probe' (LP-FT; "
             "kerastl train --head-init linear_probe) was more accurate than the default "
             "head at 10-30 images per class in kerastl's benchmark (+1.6 to +3.4 pp).", most)
    return True


def attach_l2_sp(runner, found):
    """Phase 2's L2-SP penalty on ``runner.model`` (``None`` unless ``regularization="l2_sp"``).

    ``w0`` is what the checkpoint recorded when resuming inside phase 2, else
    the weights phase 2 starts from.
    """
    if runner.o.get("regularization") != "l2_sp":
        return None
    from kerastl.regularization import add_l2_sp

    anchors = found.arrays.get("l2_sp") if found is not None else None
    with runner._scope():
        return add_l2_sp(runner.model, runner.o["l2_sp"], anchors=anchors)
