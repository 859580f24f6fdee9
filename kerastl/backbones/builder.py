"""``build_backbone``: a registry name in, a Keras model taking raw RGB out."""

from __future__ import annotations

import logging
import os

import keras

from kerastl._compat import flatten_layers
from kerastl.backbones import weights as weights_lib
from kerastl.backbones.preprocessing import Preprocess
from kerastl.backbones.registry import BackboneSpec, backbone_spec
from kerastl.errors import UserInputError, WeightsUnavailableError

log = logging.getLogger(__name__)

_POOLING = ("avg", "max", None)


@keras.saving.register_keras_serializable(package="kerastl")
class FrozenDropout(keras.layers.Dropout):
    """A backbone's Dropout (e.g. EfficientNet's drop-connect) that is off while frozen.

    Keras's BatchNormalization already runs in inference mode when
    ``trainable=False``; plain Dropout does not, so a frozen backbone would
    still drop activations during phase 1 -- noise on layers that cannot learn,
    and a different function from the frozen features that
    ``cache_features`` extracts. Unfrozen, it is ordinary Dropout.
    """

    def call(self, inputs, training=False):
        if not self.trainable:
            training = False
        return super().call(inputs, training=training)


def _frozen_aware_dropout(model: keras.Model) -> None:
    """Make every plain Dropout of a backbone a :class:`FrozenDropout` (same weights, config)."""
    for layer in flatten_layers(model, include_self=False):
        if type(layer) is keras.layers.Dropout:
            layer.__class__ = FrozenDropout


def _check_image_size(spec: BackboneSpec, image_size) -> tuple[int, int]:
    if image_size is None:
        return spec.default_image_size, spec.default_image_size
    from kerastl.data.decode import check_image_size

    return check_image_size(image_size, minimum=spec.min_image_size, backbone=spec.name)


def build_backbone(name: str, *, weights: str | os.PathLike | None = "imagenet",
                   image_size: int | tuple[int, int] | None = None, pooling: str | None = "avg",
                   trainable: bool = False, include_top: bool = False) -> keras.Model:
    """Build a pretrained backbone that takes raw ``[0, 255]`` RGB images.

    The backbone's own preprocessing is inside the returned model, so the same
    raw pixels go in at training, evaluation and serving time.

    Args:
        name: a registry name (see :func:`list_backbones`) or ``"hub:<handle>"``.
        weights: ``"imagenet"``, ``None`` (random init) or a weights file path
            (``.weights.h5``/``.h5``; ``.pth`` for EfficientNet-Lite).
        image_size: int or ``(height, width)``; defaults to the spec's size.
        pooling: ``"avg"``, ``"max"`` or ``None`` (4-D feature map).
        trainable: initial trainable state (``False``: frozen, BatchNorm in
            inference mode).
        include_top: keep the original ImageNet classifier (1000 probabilities).

    Returns:
        A ``keras.Model`` named after the backbone, input ``(None, H, W, 3)``.

    Raises:
        ValueError: unknown name, bad image size or pooling.
        FileNotFoundError: weights could not be found or downloaded.

    Example:
        >>> backbone = ktl.build_backbone("efficientnet_lite0", image_size=96)
    """
    if isinstance(name, str) and name.startswith("hub:"):
        from kerastl.backbones.hub import build_hub_backbone

        return build_hub_backbone(name, weights=weights, image_size=image_size,
                                  pooling=pooling, trainable=trainable)
    spec = backbone_spec(name)
    if pooling not in _POOLING:
        raise UserInputError(
            f"pooling must be 'avg', 'max' or None. Received: pooling={pooling!r}"
        )
    weights_lib.check_weights_argument(weights, spec.name)
    if include_top and image_size is not None and _check_image_size(spec, image_size) != (
            spec.default_image_size, spec.default_image_size) and weights == "imagenet":
        raise UserInputError(
            f"include_top=True with ImageNet weights needs the native size "
            f"{spec.default_image_size}. Received: image_size={image_size!r}"
        )
    height, width = _check_image_size(spec, image_size)
    inputs = keras.Input((height, width, 3), name="image")
    x = Preprocess(spec.preprocessing, backbone=spec.name)(inputs)
    kind, _, arg = spec.builder.partition(":")
    if kind == "lite":
        model = _build_lite(spec, int(arg), inputs, x, weights, pooling, include_top)
    else:
        model = _build_keras_app(spec, arg, inputs, x, weights, pooling, include_top)
    _frozen_aware_dropout(model)
    model.trainable = bool(trainable)
    return model


def _build_keras_app(spec, app_name, inputs, x, weights, pooling, include_top):
    app = getattr(keras.applications, app_name)
    kwargs = {"include_top": include_top, "input_tensor": x,
              "weights": None if weights is None else weights}
    if not include_top:
        kwargs["pooling"] = pooling
        kwargs["input_shape"] = tuple(inputs.shape[1:])
    try:
        base = app(**kwargs)
    except (OSError, ValueError) as err:
        if weights == "imagenet" and ("fetch" in str(err).lower() or "url" in str(err).lower()):
            raise weights_lib.explain_download_failure(spec.name, err) from err
        if weights not in (None, "imagenet"):
            raise WeightsUnavailableError(
                f"Could not load weights file {weights} into backbone '{spec.name}': {err}"
            ) from err
        raise
    except Exception as err:  # Keras raises a bare Exception on download failure
        if weights == "imagenet" and "fetch failure" in str(err):
            raise weights_lib.explain_download_failure(spec.name, err) from err
        raise
    # Rebuild as a flat functional model named after the registry entry.
    return keras.Model(inputs, base.outputs[0], name=spec.name)


def _build_lite(spec, variant, inputs, x, weights, pooling, include_top):
    from kerastl.backbones.efficientnet_lite import (
        assign_layer_weights,
        convert_state_dict,
        efficientnet_lite_layers,
    )

    outputs = efficientnet_lite_layers(x, variant, include_top=include_top, pooling=pooling)
    model = keras.Model(inputs, outputs, name=spec.name)
    if weights is None:
        return model
    from kerastl.backbones.torch_reader import read_state_dict
    from kerastl.errors import UnsafeWeightsError

    try:
        if weights == "imagenet":
            source = weights_lib.lite_cached_weights(variant)
            named = weights_lib.load_named_weights(source)
        elif os.fspath(weights).endswith((".pth", ".pt")):
            source = weights
            named = convert_state_dict(read_state_dict(weights), variant)
        else:
            source = weights
            named = weights_lib.load_named_weights(weights)
        assign_layer_weights(model, named, source=os.fspath(source))
    except UnsafeWeightsError:
        raise
    except (ValueError, KeyError, OSError) as err:
        if isinstance(err, WeightsUnavailableError):
            raise
        raise WeightsUnavailableError(
            f"Could not load weights {weights} into backbone '{spec.name}': {err}") from err
    return model
