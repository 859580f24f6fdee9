"""kerastl: transfer learning for Keras 3 / TensorFlow.

Build a model from a pretrained backbone with its preprocessing inside,
freeze and unfreeze it by layer group, fine-tune it in two phases, search
hyperparameters, and export it for TF Serving.

Example:
    >>> import kerastl as ktl
    >>> model = ktl.build_classifier("efficientnet_lite0", num_classes=10)
    >>> result = ktl.fine_tune(model, splits.train, splits.val)
    >>> ktl.export_saved_model(result.model, name="clothes", class_names=splits.class_names)

``import kerastl`` imports TensorFlow and every public name, and registers
kerastl's Keras classes, so ``keras.saving.load_model`` reads kerastl's models.
Importing kerastl before TensorFlow filters TensorFlow's C++ start-up INFO
lines from stderr (other lines pass through; ``KERASTL_SHOW_TF_LOG=1`` keeps
them all); see ``kerastl/_quiet.py``.

The ``kerastl`` command alone defers all that until it has parsed its
arguments (:func:`_import_all`), so ``kerastl --help`` answers without loading
TensorFlow; until then a public name is imported when first used (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kerastl import _quiet
from kerastl._version import __version__ as __version__
from kerastl.errors import (
    DataError,
    KerastlError,
    MissingExtraError,
    UnsafeWeightsError,
    UserInputError,
    WeightsUnavailableError,
)

if TYPE_CHECKING:
    from kerastl import data, distribute, export, text, tuning
    from kerastl.backbones import BackboneSpec, backbone_spec, build_backbone, list_backbones
    from kerastl.calibration import CalibrationResult, calibrate
    from kerastl.config import FineTuneConfig
    from kerastl.evaluation import evaluate, predict
    from kerastl.explain import grad_cam
    from kerastl.export import export_saved_model
    from kerastl.freezing import freeze, layer_groups, trainable_report, unfreeze
    from kerastl.inspection import InspectionReport, inspect
    from kerastl.models import ImageClassifier, ImageRegressor, build_classifier, build_regressor
    from kerastl.runs import Run, load_run, train
    from kerastl.text.models import TextClassifier, build_text_classifier
    from kerastl.training import FineTuneResult, fine_tune, lr_find
    from kerastl.transfer import (
        adapt_batchnorm,
        cross_validate,
        extract_features,
        fit_linear_head,
    )

#: The subpackages that are public names, then each module's public names
#: (the imports above, in the order kerastl has always imported them).
_SUBMODULES = ("data", "distribute", "export", "text", "tuning")
_NAMES = {
    "kerastl.backbones": ("BackboneSpec", "backbone_spec", "build_backbone", "list_backbones"),
    "kerastl.export": ("export_saved_model",),
    "kerastl.freezing": ("freeze", "layer_groups", "trainable_report", "unfreeze"),
    "kerastl.models": ("ImageClassifier", "ImageRegressor", "build_classifier",
                       "build_regressor"),
    "kerastl.text.models": ("TextClassifier", "build_text_classifier"),
    "kerastl.config": ("FineTuneConfig",),
    "kerastl.runs": ("Run", "load_run", "train"),
    "kerastl.evaluation": ("evaluate", "predict"),
    "kerastl.training": ("FineTuneResult", "fine_tune", "lr_find"),
    "kerastl.transfer": ("adapt_batchnorm", "cross_validate", "extract_features",
                         "fit_linear_head"),
    "kerastl.inspection": ("InspectionReport", "inspect"),
    "kerastl.calibration": ("CalibrationResult", "calibrate"),
    "kerastl.explain": ("grad_cam",),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = [
    "BackboneSpec",
    "CalibrationResult",
    "DataError",
    "FineTuneConfig",
    "FineTuneResult",
    "ImageClassifier",
    "ImageRegressor",
    "InspectionReport",
    "KerastlError",
    "MissingExtraError",
    "Run",
    "TextClassifier",
    "UnsafeWeightsError",
    "UserInputError",
    "WeightsUnavailableError",
    "adapt_batchnorm",
    "backbone_spec",
    "build_backbone",
    "build_classifier",
    "build_regressor",
    "build_text_classifier",
    "calibrate",
    "cross_validate",
    "data",
    "distribute",
    "evaluate",
    "export",
    "export_saved_model",
    "extract_features",
    "fine_tune",
    "fit_linear_head",
    "freeze",
    "grad_cam",
    "inspect",
    "layer_groups",
    "list_backbones",
    "load_run",
    "lr_find",
    "predict",
    "text",
    "train",
    "trainable_report",
    "tuning",
    "unfreeze",
]


def __getattr__(name: str):
    """Import a public name on first use, TensorFlow quietly first (PEP 562)."""
    if name in _SUBMODULES:
        _quiet.import_tensorflow_quietly()
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _MODULE_OF:
        _quiet.import_tensorflow_quietly()
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _import_all() -> None:
    """Import TensorFlow (quietly) and every public name, which registers kerastl's
    Keras classes (layers, schedules) for ``keras.saving.load_model``."""
    for name in (*_SUBMODULES, *_MODULE_OF):
        if name not in globals():
            __getattr__(name)


if not _quiet.is_kerastl_command():
    _import_all()
