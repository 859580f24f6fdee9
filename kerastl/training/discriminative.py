"""Per-group learning rates (layer-wise decay) for Keras 3 optimizers.

Discriminative learning rates, as fastai calls them: the head learns at the
base rate and each backbone layer group closer to the input at ``decay``
times the rate of the group above it, so the generic low-level features
change least. The groups are the backbone's registry groups
(``ktl.backbone_spec(name).groups``); the layers after the backbone (group ``"classifier"``) count as the top group.

The rate is scaled *per variable inside the optimizer's update*, not by
scaling gradients: for SGD the two are the same, but Adam normalises the
gradient, so scaled gradients would give (almost) the same step. Decoupled
weight decay (AdamW) is scaled by the same multiplier, as in PyTorch
parameter groups.

Example:
    >>> opt = ktl.training.discriminative_optimizer(model, "adamw", 1e-4, decay=0.5)
    >>> model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
"""

from __future__ import annotations

import functools
import math

import keras

from kerastl import _compat
from kerastl._compat import flatten_layers, own_trainable_variables
from kerastl.errors import UserInputError
from kerastl.freezing import backbone_units, find_backbone
from kerastl.training.optimizers import momentum_option

# Key of the layers outside the backbone (the classification head). Not "head":
# some backbones (MobileNetV2) call their own top group "head".
CLASSIFIER_GROUP = "classifier"

_NORM_LAYERS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                keras.layers.GroupNormalization)


class _PerVariableRates:
    """Mixin for a Keras optimizer: multiply the learning rate per variable.

    ``lr_multipliers`` maps variable paths (``variable.path``) to multipliers;
    variables not listed use 1.0.
    """

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
        self._multiplier_by_index: tuple = ()

    @property
    def lr_multipliers(self) -> dict[str, float]:
        """``{variable path: learning-rate multiplier}``."""
        return dict(self._lr_multipliers)

    def build(self, variables):
        super().build(variables)
        self._multiplier_by_index = tuple(
            self._lr_multipliers.get(getattr(v, "path", ""), 1.0) for v in variables)

    def multiplier(self, variable) -> float:
        """The learning-rate multiplier of ``variable`` (the optimizer must be built)."""
        return self._multiplier_by_index[_compat.optimizer_variable_index(self, variable)]

    def update_step(self, gradient, variable, learning_rate):
        factor = self.multiplier(variable)
        if factor != 1.0:
            learning_rate = learning_rate * factor
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):  # a private Keras hook: see kerastl._compat
        if self.weight_decay is None:
            return
        if keras.backend.backend() != "tensorflow":
            lr = _compat.optimizer_current_learning_rate(self)
            for variable in variables:
                if _compat.optimizer_uses_weight_decay(self, variable):
                    decay = keras.ops.cast(self.weight_decay * self.multiplier(variable),
                                           variable.dtype)
                    variable.assign(variable - variable * decay * keras.ops.cast(
                        lr, variable.dtype))
            return
        import tensorflow as tf

        def decay_one(variable, factor):
            if _compat.optimizer_uses_weight_decay(self, variable):
                lr = tf.cast(self.learning_rate, variable.dtype)
                wd = tf.cast(self.weight_decay * factor, variable.dtype)
                variable.assign_sub(variable * wd * lr)

        def distributed(distribution, variables, **kwargs):
            for variable in variables:
                factor = self.multiplier(variable)
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(
                    variable, functools.partial(decay_one, factor=factor), group=False)

        _compat.maybe_merge_call(distributed, _compat.optimizer_distribution_strategy(self),
                                 variables)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self._lr_multipliers)
        return config


def _make_class(base):
    cls = type(f"Discriminative{base.__name__}", (_PerVariableRates, base), {
        "__doc__": f"``keras.optimizers.{base.__name__}`` with per-variable learning-rate "
                   "multipliers (``lr_multipliers={variable path: factor}``).",
        "__module__": __name__,
    })
    return keras.saving.register_keras_serializable(package="kerastl")(cls)


DiscriminativeAdam = _make_class(keras.optimizers.Adam)
DiscriminativeAdamW = _make_class(keras.optimizers.AdamW)
DiscriminativeSGD = _make_class(keras.optimizers.SGD)
DiscriminativeRMSprop = _make_class(keras.optimizers.RMSprop)
DiscriminativeAdagrad = _make_class(keras.optimizers.Adagrad)

_CLASSES = {"adam": DiscriminativeAdam, "adamw": DiscriminativeAdamW, "sgd": DiscriminativeSGD,
            "rmsprop": DiscriminativeRMSprop, "adagrad": DiscriminativeAdagrad}


def group_multipliers(model: keras.Model, decay: float) -> dict[str, float]:
    """``{group: multiplier}``: ``"classifier"`` (the layers after the backbone) 1, top
    backbone group ``decay``, the next ``decay**2``...

    Args:
        model: a model containing a kerastl backbone.
        decay: factor per group, in (0, 1].
    """
    if (isinstance(decay, bool) or not isinstance(decay, (int, float))
            or not math.isfinite(decay) or not 0 < decay <= 1):
        raise UserInputError(
            f"layer-wise decay must be a number in (0, 1] (e.g. 0.5: each lower group learns "
            f"at half the rate of the group above). Received: decay={decay!r}")
    _backbone, spec = find_backbone(model)
    groups = list(spec.groups)
    rates = {g: float(decay) ** (len(groups) - i) for i, g in enumerate(groups)}
    rates[CLASSIFIER_GROUP] = 1.0
    return rates


def variable_groups(model: keras.Model) -> dict[str, str]:
    """``{variable path: group}`` for every variable of ``model`` (layers outside the backbone: ``"classifier"``)."""
    backbone, spec = find_backbone(model)
    groups: dict[str, str] = {}
    for unit in backbone_units(backbone, spec):
        for v in unit.variables():
            groups[_path(v)] = unit.group
    for v in model.weights:
        groups.setdefault(_path(v), CLASSIFIER_GROUP)
    return groups


def _path(variable) -> str:
    return str(getattr(variable, "path", None) or variable.name)


def layerwise_multipliers(model: keras.Model, decay: float = 0.5, *,
                          multipliers: dict[str, float] | None = None) -> dict[str, float]:
    """``{variable path: learning-rate multiplier}`` for :func:`discriminative_optimizer`.

    Args:
        model: a model containing a kerastl backbone.
        decay: per-group factor (see :func:`group_multipliers`).
        multipliers: ``{group: multiplier}`` overriding the decay rule for those groups.

    Raises:
        ValueError: a bad decay, or an unknown group name in ``multipliers``.
    """
    rates = group_multipliers(model, decay)
    for group, value in (multipliers or {}).items():
        if group not in rates:
            raise UserInputError(
                f"Unknown layer group '{group}'. Groups of this model: {', '.join(rates)}. "
                f"Received: multipliers={multipliers!r}")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UserInputError(
                f"Multipliers must be finite numbers >= 0. Received: {group}={value!r}")
        rates[group] = float(value)
    return {path: rates[group] for path, group in variable_groups(model).items()}


def no_decay_variables(model: keras.Model) -> list:
    """Variables that weight decay should skip: normalisation layers' weights and biases."""
    skip, seen = [], set()
    for layer in flatten_layers(model, include_self=True):
        is_norm = isinstance(layer, _NORM_LAYERS)
        for v in own_trainable_variables(layer):
            if id(v) in seen:
                continue
            if is_norm or v.name == "bias" or len(v.shape) <= 1:
                seen.add(id(v))
                skip.append(v)
    return skip


def discriminative_optimizer(model: keras.Model, optimizer: str = "adam",
                             learning_rate=1e-3, *, decay: float = 0.5,
                             multipliers: dict[str, float] | None = None,
                             weight_decay: float | None = None, momentum: float | None = None,
                             **kwargs) -> keras.optimizers.Optimizer:
    """A Keras optimizer whose learning rate is scaled per layer group of ``model``.

    Args:
        model: a model containing a kerastl backbone (the variables are matched
            by path, so build the optimizer for the model it will train).
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"`` or ``"adagrad"``.
        learning_rate: base rate (float or ``LearningRateSchedule``) for the head.
        decay: each lower backbone group gets ``decay`` x the rate of the group above.
        multipliers: ``{group: multiplier}`` to set some groups explicitly.
        weight_decay: decoupled weight decay (AdamW default 1e-4); it skips
            BatchNorm/LayerNorm weights and biases.
        momentum: SGD (default 0.9) or RMSprop momentum.
        **kwargs: passed to the Keras optimizer (``clipnorm``...).

    Returns:
        A ``Discriminative<Optimizer>`` instance (a subclass of the Keras one).

    Raises:
        ValueError: unknown optimizer, bad decay or group names.
    """
    key = str(optimizer).lower()
    if key not in _CLASSES:
        raise UserInputError(
            f"Unknown optimizer '{optimizer}'. Known: {', '.join(_CLASSES)}. "
            f"Received: {optimizer!r}")
    options = dict(kwargs, learning_rate=learning_rate,
                   lr_multipliers=layerwise_multipliers(model, decay, multipliers=multipliers))
    if "momentum" not in kwargs:
        options.update(momentum_option(key, momentum))
    if key == "adamw":
        options["weight_decay"] = 1e-4 if weight_decay is None else weight_decay
    elif weight_decay:
        options["weight_decay"] = weight_decay
    opt = _CLASSES[key](**options)
    if options.get("weight_decay"):
        opt.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return opt


def exclude_norm_and_bias(optimizer: keras.optimizers.Optimizer, model: keras.Model):
    """Make (an unbuilt) ``optimizer`` skip weight decay on norm layers and biases; returns it."""
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer
