"""kerastl: transfer learning for Keras 3 / TensorFlow.

Build a model from a pretrained backbone with its preprocessing inside,
freeze and unfreeze it by layer group, fine-tune it in two phases, search
hyperparameters, and export it for TF Serving.

Example:
    >>> import kerastl as ktl
    >>> model = ktl.build_classifier("efficientnet_lite0", num_classes=10)
    >>> result = ktl.fine_tune(model, splits.train, splits.val)
    >>> ktl.export_saved_model(result.model, name="clothes", class_names=splits.class_names)

Importing kerastl before TensorFlow filters TensorFlow's C++ start-up INFO
lines from stderr (other lines pass through; ``KERASTL_SHOW_TF_LOG=1`` keeps
them all); see ``kerastl/_quiet.py``.
"""

from kerastl._quiet import import_tensorflow_quietly as _import_tf
from kerastl._version import __version__ as __version__

_import_tf()

from kerastl import data, distribute, export, tuning
from kerastl.backbones import BackboneSpec, backbone_spec, build_backbone, list_backbones
from kerastl.errors import (
    DataError,
    KerastlError,
    MissingExtraError,
    UnsafeWeightsError,
    UserInputError,
    WeightsUnavailableError,
)
from kerastl.export import export_saved_model
from kerastl.freezing import freeze, layer_groups, trainable_report, unfreeze
from kerastl.models import build_classifier, build_regressor
from kerastl.training import FineTuneResult, fine_tune, lr_find
from kerastl.transfer import (
    adapt_batchnorm,
    cross_validate,
    extract_features,
    fit_linear_head,
)

__all__ = [
    "BackboneSpec",
    "DataError",
    "FineTuneResult",
    "KerastlError",
    "MissingExtraError",
    "UnsafeWeightsError",
    "UserInputError",
    "WeightsUnavailableError",
    "adapt_batchnorm",
    "backbone_spec",
    "build_backbone",
    "build_classifier",
    "build_regressor",
    "cross_validate",
    "data",
    "distribute",
    "export",
    "export_saved_model",
    "extract_features",
    "fine_tune",
    "fit_linear_head",
    "freeze",
    "layer_groups",
    "list_backbones",
    "lr_find",
    "trainable_report",
    "tuning",
    "unfreeze",
]
