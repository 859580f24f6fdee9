"""TF Hub / Kaggle Models backbones as first-class Keras 3 layers.

``hub.KerasLayer`` is a tf-keras (Keras 2) layer and does not work inside
Keras 3 models; ``keras.layers.TFSMLayer`` copies the variables and cannot
freeze part of the model. :class:`HubBackbone` loads a TF2 SavedModel with
``tf.saved_model.load`` and wraps each of its variables in a
``keras.Variable`` that *shares* the SavedModel's ``tf.Variable`` (no copy),
so Keras tracks them: ``trainable_weights``, the optimizer, checkpoints and
``.keras`` files all see the real weights.

Freezing works per *unit* (the variables of one layer of the module, from
their names) and per group of units (see :mod:`kerastl.backbones.hub_specs`).

Limitations:

* A SavedModel's ``training`` flag is one switch for the whole module.
  BatchNormalization in a Hub module therefore runs in inference mode unless
  BatchNorm is being trained (``train_bn=True`` or a fully trainable
  backbone); when it is, *every* BatchNorm of the module uses batch
  statistics and updates its moving averages, also in groups whose weights
  are frozen. Signature-only modules have no ``training`` flag at all: they
  always run in inference mode (their weights still train).
* A saved ``.keras`` model stores the handle, not the graph: reloading needs
  the handle again (the same local folder, or the URL / TF Hub cache).
* The module is loaded outside any ``tf.distribute`` strategy scope; build
  models for multi-device training inside ``strategy.scope()`` and check.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import re

import keras
import tensorflow as tf

from kerastl.backbones import hub_specs
from kerastl.backbones.hub_specs import normalize_handle, resolve_handle
from kerastl.backbones.preprocessing import Preprocess
from kerastl.errors import UserInputError, WeightsUnavailableError

log = logging.getLogger(__name__)

_POOLING = ("avg", "max", None)
_PREFERRED_OUTPUTS = ("feature_vector", "default", "output_0", "outputs", "logits")


class _SharedVariable(keras.Variable):
    """A ``keras.Variable`` backed by an existing ``tf.Variable`` (no copy).

    Keras's TensorFlow backend keeps a ``tf.Variable`` handed to ``_initialize``
    as its value; the constructor checks that this still holds. BatchNorm
    moving statistics are never trainable, even where a (TF1-style) module
    marks every variable trainable.
    """

    def __init__(self, source: tf.Variable, name: str):
        self._source = source
        self.hub_trainable = bool(source.trainable) and not hub_specs.is_bn_variable(source.name)
        super().__init__(initializer=_unused_initializer, shape=tuple(source.shape),
                         dtype=source.dtype.name, trainable=self.hub_trainable, name=name)
        if self.value is not source:
            raise RuntimeError("This Keras version copies variables; HubBackbone cannot share "
                               "the SavedModel's weights.")

    def _initialize_with_initializer(self, initializer):
        self._initialize(self._source)


def _unused_initializer(shape, dtype=None):  # _SharedVariable never calls it
    raise RuntimeError("shared Hub variables are not initialised")


def _keras_name(tf_name: str) -> str:
    return re.sub(r":\d+$", "", tf_name).replace("/", "__") or "variable"


def _training_values(fn) -> set:
    """The ``training`` values ``fn`` was traced with (empty: no such argument)."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()
    if "training" not in params:
        return set()
    pos, values = params.index("training"), set()
    for concrete in getattr(fn, "concrete_functions", ()):
        args, kwargs = concrete.structured_input_signature
        value = kwargs.get("training", args[pos] if len(args) > pos else None)
        if isinstance(value, bool):
            values.add(value)
    return values


@dataclasses.dataclass
class HubUnit:
    """One freezable unit of a Hub module: the variables of one of its layers."""

    name: str
    group: str
    is_bn: bool
    layer: HubBackbone
    weights: list
    bn_on: bool = False  # BN units without trainable variables

    def variables(self) -> list:
        return list(self.weights)

    def _trainable_kind(self) -> list:
        return [v for v in self.weights if v.hub_trainable]

    def set_trainable(self, value: bool, train_bn: bool) -> None:
        on = bool(value) and (train_bn or not self.is_bn)
        for v in self._trainable_kind():
            v.trainable = on
        if self.is_bn:
            self.bn_on = on

    def bn_frozen(self) -> bool:
        """True when this BatchNorm runs in inference mode (see module docstring)."""
        return not (self.layer.trainable and self.layer.bn_training())


@keras.saving.register_keras_serializable(package="kerastl")
class HubBackbone(keras.layers.Layer):
    """A TF2 SavedModel (TF Hub, Kaggle Models or a local folder) as a Keras 3 layer.

    Calls the module's ``__call__(inputs, training=...)`` (the reusable
    SavedModel convention) or, for signature-only SavedModels, a named
    signature. Every variable of the module is tracked by Keras, and the
    module's ``regularization_losses`` are added while the layer is trainable.

    Args:
        handle: local path or URL (without the ``"hub:"`` prefix).
        signature: call this signature instead of ``__call__``; default:
            ``__call__`` when the module has one, else ``"serving_default"``,
            ``"default"`` (TF1 Hub modules) or the only signature.
        output_key: which output of a dict-returning module to use.
        image_size: input size the layer is built for (recorded in ``spec``).
        preprocessing: the :class:`~kerastl.backbones.Preprocess` mode in
            front of it (recorded in ``spec``).
        frozen_units: units whose weights stay frozen while the layer is
            trainable (set by :func:`kerastl.unfreeze`, kept by ``get_config``).
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``trainable``).

    Example:
        >>> layer = HubBackbone("/models/mobilenet_v2_feature_vector")
        >>> features = layer(images_in_0_1)
    """

    is_kerastl_hub_backbone = True

    def __init__(self, handle: str, *, signature: str | None = None,
                 output_key: str | None = None, image_size: int | None = None,
                 preprocessing: str | None = None, frozen_units=(), **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.handle = normalize_handle(handle[4:] if handle.startswith("hub:") else handle)
        self.signature = signature
        self.output_key = output_key
        self.image_size = image_size
        self.preprocessing = preprocessing
        self._module = tf.saved_model.load(resolve_handle(self.handle))
        self._fn, self._input_key = self._select_function(signature)
        self._training = frozenset(
            _training_values(self._fn) if self._input_key is None else ())
        self._output_spec = self._pick_output(self._structured_outputs())
        # A module may have no variables at all (a fixed function): then there is nothing
        # to track or freeze, and a restored __call__ has no .variables either.
        sources = (getattr(self._module, "variables", None)
                   or getattr(self._fn, "variables", None) or ())
        unique = list({id(v): v for v in sources}.values())
        self.hub_variables = [_SharedVariable(v, _keras_name(v.name)) for v in unique]
        self._reg_losses = tuple(getattr(self._module, "regularization_losses", ()) or ())
        # Units and groups cover the float weights; integer state (e.g. RNG seeds)
        # is tracked and saved but is not a parameter to freeze.
        self._names = tuple(v.name for v in unique if v.dtype.is_floating)
        self._units = tuple(self._make_units())
        self.built = True
        for unit in self._units:
            if unit.name in frozen_units:
                unit.set_trainable(False, False)

    # -- loading ---------------------------------------------------------------
    def _select_function(self, signature):
        signatures = dict(getattr(self._module, "signatures", {}) or {})
        if signature is None and callable(self._module):
            return self._module.__call__, None
        defaults = [k for k in ("serving_default", "default") if k in signatures]
        if len(signatures) == 1:
            defaults.append(next(iter(signatures)))
        name = signature or (defaults[0] if defaults else "serving_default")
        if name not in signatures:
            raise UserInputError(
                f"Hub module '{self.handle}' has no signature {name!r}"
                + (" and no __call__" if signature is None else "")
                + f". Its signatures: {sorted(signatures) or 'none'}. "
                f"Received: signature={signature!r}"
            )
        fn = signatures[name]
        inputs = fn.structured_input_signature[1]
        if len(inputs) != 1:
            raise UserInputError(
                f"Signature {name!r} of Hub module '{self.handle}' takes {sorted(inputs)}; "
                "a backbone signature must take exactly one image tensor."
            )
        return fn, next(iter(inputs))

    def _structured_outputs(self):
        if self._input_key is not None:
            return self._fn.structured_outputs
        return self._fn.concrete_functions[0].structured_outputs

    def _pick_output(self, outputs):
        if not isinstance(outputs, dict):
            if self.output_key is not None:
                raise UserInputError(
                    f"Hub module '{self.handle}' returns one tensor; leave output_key unset. "
                    f"Received: output_key={self.output_key!r}"
                )
            return outputs
        if self.output_key is None:
            keys = [k for k in _PREFERRED_OUTPUTS if k in outputs]
            if len(outputs) == 1:
                self.output_key = next(iter(outputs))
            elif keys:
                self.output_key = keys[0]
        if self.output_key not in outputs:
            raise UserInputError(
                f"Hub module '{self.handle}' returns outputs {sorted(outputs)}; choose one "
                f"with output_key=. Received: output_key={self.output_key!r}"
            )
        return outputs[self.output_key]

    def _make_units(self) -> list[HubUnit]:
        groups, pairs = hub_specs.group_units(self._names)
        by_unit: dict[str, list] = {}
        for var in self.hub_variables:
            if var.value.dtype.is_floating:
                by_unit.setdefault(hub_specs.unit_name(var.value.name), []).append(var)
        return [HubUnit(unit, group, any(hub_specs.is_bn_variable(v.value.name)
                                         for v in by_unit[unit]), self, by_unit[unit])
                for unit, group in pairs]

    # -- freezing contract -------------------------------------------------------
    @property
    def spec(self):
        """The :class:`BackboneSpec` of this module (groups from its variable names)."""
        known = hub_specs.input_spec(self.handle)
        shape = self._output_spec.shape
        dim = int(shape[-1]) if shape.rank and shape[-1] is not None else known.feature_dim
        return hub_specs.spec_from_variables(
            f"hub:{self.handle}", self._names, image_size=self.image_size or known.image_size,
            preprocessing=self.preprocessing or known.preprocessing, feature_dim=dim)

    def freezing_units(self) -> list[HubUnit]:
        """Ordered units (input side first) with their group, for :mod:`kerastl.freezing`."""
        return list(self._units)

    def bn_training(self) -> bool:
        """Whether the module's BatchNorm runs in training mode when ``training=True``."""
        bn = [u for u in self._units if u.is_bn]
        if not bn:
            return True
        return any(v.trainable for u in bn for v in u._trainable_kind()) or any(
            u.bn_on for u in bn if not u._trainable_kind())

    # -- Keras -----------------------------------------------------------------
    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=None):
        if self._input_key is not None:
            outputs = self._fn(**{self._input_key: inputs})
        elif self._training:
            wanted = bool(training) and self.trainable and self.bn_training()
            flag = wanted if wanted in self._training else next(iter(self._training))
            outputs = self._fn(inputs, training=flag)
        else:
            outputs = self._fn(inputs)
        if isinstance(outputs, dict):
            outputs = outputs[self.output_key]
        if self.trainable:
            for loss_fn in self._reg_losses:
                self.add_loss(loss_fn())
        return outputs

    def compute_output_shape(self, input_shape):
        shape = list(self._output_spec.shape)
        if shape:
            shape[0] = input_shape[0]
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        frozen = [u.name for u in self._units
                  if u._trainable_kind() and not any(v.trainable for v in u._trainable_kind())]
        config.update({"handle": self.handle, "signature": self.signature,
                       "output_key": self.output_key, "image_size": self.image_size,
                       "preprocessing": self.preprocessing,
                       "frozen_units": frozen if self.trainable else []})
        return config


def _model_name(handle: str) -> str:
    text = re.sub(r"^[a-z]+://(www\.)?[^/]+/", "", handle.rstrip("/"))
    if not hub_specs.is_remote(handle):
        text = os.path.basename(os.path.normpath(os.path.expanduser(handle)))
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")[-60:].strip("_")
    return f"hub_{text or 'module'}"


def build_hub_backbone(name: str, *, weights="imagenet", image_size=None, pooling="avg",
                       trainable: bool = False, preprocessing: str | None = None,
                       signature: str | None = None,
                       output_key: str | None = None) -> keras.Model:
    """Build a backbone from a ``"hub:<handle>"`` name (see :func:`build_backbone`).

    Args:
        name: ``"hub:<local path>"``, ``"hub:https://tfhub.dev/..."`` or
            ``"hub:https://www.kaggle.com/models/..."``.
        weights: ``"imagenet"`` (the SavedModel's own weights) or a
            ``.weights.h5`` file saved from a model with the same backbone.
        image_size: int or ``(height, width)``; default: the table of known
            handles, else 224.
        pooling: ``"avg"``, ``"max"`` or ``None``; applied when the module
            returns a feature map.
        trainable: initial trainable state.
        preprocessing: value range the module expects (a
            :class:`~kerastl.backbones.Preprocess` mode, e.g. ``"unit"`` for
            ``[0, 1]``, ``"tf"`` for ``[-1, 1]``); default: the table, else ``"unit"``.
        signature: use this signature instead of ``__call__``.
        output_key: output to use when the module returns a dict.

    Returns:
        A functional ``keras.Model``: raw ``[0, 255]`` RGB -> ``Preprocess``
        -> :class:`HubBackbone` (-> pooling).

    Raises:
        ValueError: bad argument.
        FileNotFoundError: the handle cannot be found or downloaded.
    """
    handle = normalize_handle(hub_specs.handle_of(name))
    if pooling not in _POOLING:
        raise UserInputError(f"pooling must be 'avg', 'max' or None. Received: pooling={pooling!r}")
    if weights is None or (weights != "imagenet" and not str(weights).endswith(".weights.h5")):
        raise UserInputError(
            "A Hub backbone uses the weights stored in its SavedModel: pass weights='imagenet' "
            "(the default) or a .weights.h5 file saved from a model with this backbone. "
            f"Received: weights={weights!r}"
        )
    known = hub_specs.input_spec(handle)
    if not known.known and (image_size is None or preprocessing is None):
        log.info("Hub module %s is not in kerastl's table: assuming %s px and inputs in %s "
                 "(pass image_size= / preprocessing= to override).", handle,
                 image_size or known.image_size, preprocessing or "[0, 1]")
    size = _image_size(image_size or known.image_size)
    mode = preprocessing or known.preprocessing
    inputs = keras.Input((*size, 3), name="image")
    x = Preprocess(mode, backbone=f"hub:{handle}")(inputs)
    x = HubBackbone(handle, signature=signature, output_key=output_key, image_size=size[0],
                    preprocessing=mode, name="hub_backbone")(x)
    if len(x.shape) == 4 and pooling:
        layer = keras.layers.GlobalAveragePooling2D if pooling == "avg" else \
            keras.layers.GlobalMaxPooling2D
        x = layer(name=f"{pooling}_pool")(x)
    model = keras.Model(inputs, x, name=_model_name(handle))
    model.trainable = bool(trainable)
    if weights != "imagenet":
        if not os.path.isfile(weights):
            raise WeightsUnavailableError(f"Weights file not found: {weights}")
        model.load_weights(weights)
    return model


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        size = tuple(int(s) for s in image_size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise UserInputError(
            f"image_size must be an int or (height, width). Received: image_size={image_size!r}"
        )
    return size
