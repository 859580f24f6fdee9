"""Checking :func:`kerastl.tuning.search`'s arguments and building its oracle and hypermodel."""

from __future__ import annotations

import re

import keras_tuner as kt
import tensorflow as tf

from kerastl.errors import DataError, UserInputError
from kerastl.paths import check_name
from kerastl.tuning.hypermodel import TransferHyperModel
from kerastl.tuning.tuner import (
    BayesianOptimizationOracle,
    GridSearchOracle,
    HyperbandOracle,
    RandomSearchOracle,
)

TUNERS = ("hyperband", "bayesian", "random", "grid")
_ALIASES = {"bayesianoptimization": "bayesian", "bayesian_optimization": "bayesian",
            "randomsearch": "random", "random_search": "random", "gridsearch": "grid",
            "grid_search": "grid"}
#: ``max_trials`` when it is ``None`` for random and Bayesian search.
DEFAULT_MAX_TRIALS = 10


def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserInputError(f"{name} must be an int >= {minimum}"
                             + (" or None" if allow_none else "") + f". Received: {value!r}")


def _direction(objective: str) -> str:
    name = objective.removeprefix("val_")
    return "min" if "loss" in name or name in ("mae", "mse", "error") else "max"


def _infer_image_size(dataset) -> tuple[int, int] | None:
    shape = dataset.element_spec[0].shape
    if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
        return int(shape[1]), int(shape[2])
    return None


def _infer_num_classes(*datasets) -> int:
    spec = datasets[0].element_spec[1]
    if len(spec.shape) >= 2 and spec.shape[-1] is not None:
        return int(spec.shape[-1])
    top = -1
    for ds in datasets:
        if ds is None:
            continue
        labels = ds.map(lambda x, y: tf.reduce_max(tf.cast(y, tf.int64)))
        top = max(top, int(labels.reduce(tf.constant(-1, tf.int64), tf.maximum)))
    if top < 0:
        raise DataError("The datasets hold no labels; cannot infer num_classes.")
    return max(2, top + 1)


def _check_dataset(name: str, ds) -> None:
    if not isinstance(ds, tf.data.Dataset):
        raise UserInputError(f"{name} must be a tf.data.Dataset of (images, labels) batches "
                             f"(or a Splits for train). Received: {type(ds).__name__}")
    spec = ds.element_spec
    text = isinstance(spec, tuple) and len(spec) == 2 and _is_text(ds) and \
        len(spec[0].shape) == 1
    if not text and not (isinstance(spec, tuple) and len(spec) == 2
                         and len(spec[0].shape) == 4):
        raise UserInputError(f"{name} must yield (images (B, H, W, 3), labels) or (texts (B,), "
                             f"labels) batches. Received element_spec={spec}")


def _oracle(tuner: str, objective, *, max_trials, max_epochs, seed, hyperparameters,
            factor, hyperband_iterations):
    common = {"objective": objective, "seed": seed, "hyperparameters": hyperparameters}
    if tuner == "hyperband":
        oracle = HyperbandOracle(max_epochs=max_epochs, factor=factor,
                                 hyperband_iterations=hyperband_iterations, **common)
        if max_trials is not None:
            oracle.max_trials = max_trials  # a cap on top of the brackets
        return oracle
    if tuner == "random":
        return RandomSearchOracle(max_trials=max_trials or DEFAULT_MAX_TRIALS, **common)
    if tuner == "bayesian":
        return BayesianOptimizationOracle(max_trials=max_trials or DEFAULT_MAX_TRIALS, **common)
    return GridSearchOracle(max_trials=max_trials, **common)


def _check_arguments(tuner, train, val, *, objective, max_trials, max_epochs,
                     executions_per_trial, factor, keep_cache) -> str:
    """Check :func:`search`'s arguments; return the tuner's registry key."""
    key = str(tuner).lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in TUNERS:
        raise UserInputError(f"Unknown tuner {tuner!r}. Known: {', '.join(TUNERS)}.")
    _check_int("max_trials", max_trials, 1, allow_none=True)
    _check_int("max_epochs", max_epochs, 1)
    _check_int("executions_per_trial", executions_per_trial, 1)
    _check_int("factor", factor, 2)
    if not isinstance(keep_cache, bool):
        raise UserInputError(f"keep_cache must be True or False. Received: {keep_cache!r}")
    if not isinstance(objective, str) or not objective:
        raise UserInputError(f"objective must be a metric name. Received: {objective!r}")
    _check_dataset("train", train)
    if val is None:
        raise UserInputError(f"search needs validation data: the objective {objective!r} is "
                             "measured on it. Pass val= (or a Splits with a val split).")
    _check_dataset("val", val)
    return key


def _is_text(dataset) -> bool:
    """A dataset of ``(strings, labels)`` batches: a text search."""
    spec = getattr(dataset, "element_spec", None)
    first = spec[0] if isinstance(spec, tuple) and spec else spec
    return getattr(first, "dtype", None) == "string"


def _all_text(backbones) -> bool:
    from kerastl.text.presets import is_text_backbone

    names = (backbones,) if isinstance(backbones, str) else tuple(backbones)
    return bool(names) and all(is_text_backbone(b) for b in names)


def _hypermodel_and_project(hypermodel, project_name, key, train, val, *, backbones,
                            image_size, num_classes, weights, space, fixed, seed, verbose,
                            strategy, class_names):
    """The search's hypermodel (a :class:`TransferHyperModel` unless one is given) and its
    checked project name (default ``<tuner>_<backbones>``)."""
    if hypermodel is None and _is_text(train):
        from kerastl.tuning.text import TextHyperModel

        text_backbones = tuple(backbones) if _all_text(backbones) else ("minilm_l6",)
        hypermodel = TextHyperModel(
            num_classes or _infer_num_classes(train, val), backbones=text_backbones,
            weights="pretrained" if weights == "imagenet" else weights, space=space,
            fixed=fixed, seed=seed, verbose=verbose, strategy=strategy, class_names=class_names)
    if hypermodel is None:
        image_size = image_size or _infer_image_size(train)
        if image_size is None:
            raise UserInputError("The images' size is not static in train; pass image_size=.")
        hypermodel = TransferHyperModel(
            num_classes or _infer_num_classes(train, val), image_size, backbones=backbones,
            weights=weights, space=space, fixed=fixed, seed=seed, verbose=verbose,
            strategy=strategy, class_names=class_names)
    elif not isinstance(hypermodel, kt.HyperModel):
        raise UserInputError("hypermodel must be a keras_tuner.HyperModel (e.g. "
                             f"TransferHyperModel). Received: {type(hypermodel).__name__}")
    if project_name is None:
        names = "_".join(getattr(hypermodel, "backbones", backbones))
        project_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key}_{names}")[:80]
    check_name(project_name, what="project_name", kind="project name")
    return hypermodel, project_name
