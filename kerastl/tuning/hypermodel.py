"""A KerasTuner ``HyperModel`` for transfer learning: backbone, head and fine-tuning depth.

Every hyperparameter has an explicit default (:data:`DEFAULTS`) taken from
:data:`kerastl.config.DEFAULTS` (the one :class:`~kerastl.FineTuneConfig` behind
:func:`kerastl.build_classifier`, :func:`kerastl.fine_tune` and ``kerastl
train``), so a default ``build(hp)`` and ``fit`` are what ``kerastl train`` would
build and train: dropout 0.2, no hidden layer, rates 1e-3 / 1e-4, Adam, no
label smoothing, no augmentation, and phase 2 unfreezes the *whole* backbone
(``unfreeze_groups`` defaults to every group, as ``fine_tune`` does), with the
config's learning-rate schedule and warmup. The caller
can fix a hyperparameter (``fixed={"dropout": 0.3}`` or ``hp.Fixed`` before
the search) or narrow its range (``space={"learning_rate": {"min": 1e-4,
"max": 1e-3}, "backbone": ["mobilenet_v2"]}``).

Epoch budget of one ``fit`` call: ``E = epochs - initial_epoch``. A fresh
model (``initial_epoch == 0``) trains the head for
``max(1, round(E * head_epoch_fraction))`` epochs on the frozen backbone
(on cached features when nothing is augmented and that is at least 2 epochs),
then fine-tunes the top ``unfreeze_groups`` groups for the rest (all of them:
the whole backbone, BatchNorm frozen, as :func:`kerastl.fine_tune`). A model
that Hyperband resumes from an earlier bracket (``initial_epoch > 0``) already
has a trained head: all ``E`` epochs go to fine-tuning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import keras
import keras_tuner as kt
import tensorflow as tf

from kerastl.backbones import backbone_spec, build_backbone
from kerastl.config import DEFAULTS as CONFIG
from kerastl.errors import UserInputError, close_matches
from kerastl.models import ImageClassifier

#: The search space: name -> (kind, definition). ``default`` is what an
#: un-tuned build uses, from :data:`kerastl.config.DEFAULTS`; ``backbone``'s
#: default is the first of ``backbones``. ``unfreeze_groups``' ``None`` max and
#: default mean "every group": the most groups among the searched backbones
#: (clipped to each trial's backbone), i.e. the whole backbone, like ``fine_tune``.
DEFAULTS: dict[str, dict] = {
    "backbone": {"kind": "choice", "values": None, "default": None},
    "head_units": {"kind": "choice", "values": [0, 128, 256, 512],
                   "default": CONFIG.hidden_units[0] if CONFIG.hidden_units else 0},
    "dropout": {"kind": "float", "min": 0.0, "max": 0.5, "step": 0.1,
                "default": CONFIG.dropout},
    "learning_rate": {"kind": "float", "min": 1e-4, "max": 1e-2, "sampling": "log",
                      "default": CONFIG.learning_rate},
    "fine_tune_learning_rate": {"kind": "float", "min": 1e-5, "max": 1e-3, "sampling": "log",
                                "default": CONFIG.fine_tune_learning_rate},
    "unfreeze_groups": {"kind": "int", "min": 0, "max": None, "default": None},
    "augmentation": {"kind": "choice", "values": ["none", "light", "default"],
                     "default": CONFIG.augment or "none"},
    "label_smoothing": {"kind": "choice", "values": [0.0, 0.1],
                        "default": CONFIG.label_smoothing},
    "optimizer": {"kind": "choice", "values": ["adam", "adamw", "sgd", "rmsprop"],
                  "default": CONFIG.optimizer},
}
HYPERPARAMETERS = tuple(DEFAULTS)
_RANGE_KEYS = {"min", "max", "step", "sampling", "default"}


def _check_space(space: Mapping, fixed: Mapping,
                 known: Sequence[str] = HYPERPARAMETERS) -> None:
    for label, mapping in (("space", space), ("fixed", fixed)):
        unknown = [k for k in mapping if k not in known]
        if unknown:
            hints = [m for k in unknown for m in close_matches(k, known)]
            hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
            raise UserInputError(
                f"Unknown hyperparameter(s) {unknown} in {label}=.{hint} "
                f"Known: {', '.join(known)}."
            )
    both = sorted(set(space) & set(fixed))
    if both:
        raise UserInputError(f"Hyperparameter(s) {both} are both in space= and fixed=; "
                             "give each in one place.")


class TransferHyperModel(kt.HyperModel):
    """Search space over backbone, head and two-phase fine-tuning.

    Hyperparameters (see :data:`DEFAULTS` for ranges and defaults):
    ``backbone``, ``head_units`` (0 = no hidden layer), ``dropout``,
    ``learning_rate`` (phase 1), ``fine_tune_learning_rate`` (phase 2),
    ``unfreeze_groups`` (top layer groups unfrozen in phase 2, from 0 to the
    most groups among ``backbones``, clipped to the trial's backbone; default:
    all of them, i.e. the whole backbone as :func:`kerastl.fine_tune` unfreezes
    by default; a narrowed range defaults to its max), ``augmentation`` (policy of
    :func:`kerastl.data.augmentation_layers`, run as model layers before the
    backbone), ``label_smoothing`` (integer labels become one-hot for it) and
    ``optimizer``.

    Args:
        num_classes: number of classes (softmax head).
        image_size: ``(height, width)`` or an int of the input images.
        backbones: registry names the ``backbone`` hyperparameter chooses from;
            the first is its default.
        weights: backbone weights (``"imagenet"``, ``None`` or a file).
        space: narrowed ranges, per name: a list (choices), a dict
            ``{"min", "max", "step", "sampling", "default"}`` or a scalar (fixed).
        fixed: ``{name: value}`` fixed for the whole search.
        head_epoch_fraction: share of a fresh model's epochs spent on the head.
        patience: early-stopping patience per phase (``None``: off); default
            the config's (``kerastl.config.DEFAULTS.patience``).
        seed: seed of the augmentation layers (default ``DEFAULTS.seed``;
            ``None``: unseeded).
        verbose: Keras verbosity of training.
        class_names: one name per class, kept in every built model (and its
            ``.keras`` file); ``None`` when unknown.

    Example:
        >>> hm = TransferHyperModel(10, 96, backbones=("efficientnet_lite0",),
        ...                         fixed={"optimizer": "adam"})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    def __init__(self, num_classes: int, image_size, *,
                 backbones: Sequence[str] = ("efficientnet_lite0",), weights="imagenet",
                 space: Mapping | None = None, fixed: Mapping | None = None,
                 head_epoch_fraction: float = 0.3, patience: int | None = CONFIG.patience,
                 seed: int | None = CONFIG.seed, verbose=0, name: str | None = None,
                 strategy=None, class_names: Sequence[str] | None = None):
        super().__init__(name=name, tunable=True)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise UserInputError(f"num_classes must be an int >= 2. Received: {num_classes!r}")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
                or not all(isinstance(s, int) and s > 0 for s in image_size)):
            raise UserInputError(
                f"image_size must be an int or (height, width). Received: {image_size!r}"
            )
        if isinstance(backbones, str):
            backbones = (backbones,)
        backbones = tuple(backbones)
        if not backbones:
            raise UserInputError("backbones must name at least one backbone.")
        for b in backbones:
            spec = backbone_spec(b)  # raises with close matches for unknown names
            if min(image_size) < spec.min_image_size:
                raise UserInputError(
                    f"Backbone '{b}' needs images of at least {spec.min_image_size} px. "
                    f"Received: image_size={tuple(image_size)}"
                )
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self._setup(num_classes, backbones, weights, space, fixed, head_epoch_fraction,
                    patience, seed, verbose, strategy, class_names)

    def _setup(self, num_classes, backbones, weights, space, fixed, head_epoch_fraction,
               patience, seed, verbose, strategy, class_names) -> None:
        """The checks and attributes every hypermodel shares (image and text)."""
        if not 0 < head_epoch_fraction < 1:
            raise UserInputError("head_epoch_fraction must be in (0, 1). "
                                 f"Received: {head_epoch_fraction!r}")
        if class_names is not None:
            if isinstance(class_names, (str, bytes)) or len(class_names) != num_classes:
                raise UserInputError(f"class_names must list one name per class "
                                     f"({num_classes}). Received: {class_names!r}")
            class_names = tuple(str(n) for n in class_names)
        space, fixed = dict(space or {}), dict(fixed or {})
        _check_space(space, fixed, self.hyperparameters)
        self.num_classes = num_classes
        self.backbones = backbones
        self.weights = weights
        self.space = space
        self.fixed = fixed
        self.head_epoch_fraction = float(head_epoch_fraction)
        self.patience = patience
        self.seed = seed
        self.verbose = verbose
        # A name for kerastl.distribute.get_strategy (picklable for isolated
        # trials) or a tf.distribute.Strategy; None trains without distribution.
        self.strategy = strategy
        self.class_names = class_names
        self.definitions = {name: self._definition(name) for name in self.hyperparameters}

    #: The hyperparameters this hypermodel declares, with their definitions.
    table: Mapping[str, dict] = DEFAULTS

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        return tuple(self.table)

    def _spec(self, name: str):
        """The registry spec of backbone ``name`` (its layer groups)."""
        return backbone_spec(name)

    # -- search space -------------------------------------------------------

    def _definition(self, name: str) -> dict:
        base = dict(self.table[name])
        if name == "backbone":
            base.update(values=list(self.backbones), default=self.backbones[0])
        if name == "unfreeze_groups":  # every group: the whole backbone, as fine_tune
            every = max(len(self._spec(b).groups) for b in self.backbones)
            base.update(max=every if base["max"] is None else base["max"],
                        default=every if base["default"] is None else base["default"])
        if name in self.fixed:
            return {"kind": "fixed", "default": self.fixed[name]}
        if name not in self.space:
            return base
        narrowed = self.space[name]
        if isinstance(narrowed, Mapping):
            unknown = set(narrowed) - _RANGE_KEYS
            if unknown or base["kind"] == "choice":
                raise UserInputError(
                    f"space['{name}'] must be a list of values"
                    + ("" if base["kind"] == "choice" else " or a dict with keys "
                       f"{sorted(_RANGE_KEYS)}") + f". Received: {dict(narrowed)!r}"
                )
            out = {k: v for k, v in base.items() if k != "default"}
            out.update(narrowed)
            for key in ("min", "max", "step", "default"):
                if out.get(key) is not None:
                    out[key] = _number(name, key, out[key])
            low, high = out["min"], out["max"]
            if not low <= high:
                raise UserInputError(f"space['{name}']: min must be <= max. Received: {narrowed}")
            default = out.get("default", base["default"])
            if name == "unfreeze_groups" and "default" not in narrowed:
                default = high  # "every group" within the narrowed range
            out["default"] = default if low <= default <= high else low
            if base["kind"] == "float" and "step" not in narrowed and "sampling" in narrowed:
                out.pop("step", None)
            return out
        if isinstance(narrowed, (list, tuple)):
            values = list(narrowed)
            if not values:
                raise UserInputError(f"space['{name}'] is an empty list.")
            default = base["default"] if base["default"] in values else values[0]
            if name == "unfreeze_groups" and base["default"] not in values:
                default = max(values)  # "every group" among the allowed counts
            return {"kind": "choice", "values": values, "default": default}
        return {"kind": "fixed", "default": narrowed}

    def declare(self, hp: kt.HyperParameters, name: str):
        """Declare hyperparameter ``name`` in ``hp`` (or read its value) and return it."""
        d = self.definitions[name]
        kind = d["kind"]
        if kind == "fixed":
            return hp.Fixed(name, d["default"])
        if kind == "choice":
            return hp.Choice(name, d["values"], default=d["default"])
        if kind == "int":
            return hp.Int(name, int(d["min"]), int(d["max"]), step=int(d.get("step") or 1),
                          default=int(d["default"]))
        return hp.Float(name, float(d["min"]), float(d["max"]), step=d.get("step"),
                        sampling=d.get("sampling", "linear"), default=float(d["default"]))

    def values(self, hp: kt.HyperParameters) -> dict:
        """All hyperparameter values of ``hp`` (declaring missing ones at their default)."""
        return {name: self.declare(hp, name) for name in self.hyperparameters}

    # -- HyperModel ---------------------------------------------------------

    def build(self, hp: kt.HyperParameters) -> ImageClassifier:
        """Build the :class:`~kerastl.ImageClassifier` for ``hp`` (uncompiled: ``fit``
        compiles each phase).

        Layers: input ``"image"``, the ``"augmentation"`` block (random in
        training only) when ``augmentation`` is not ``"none"``, the backbone,
        the head and ``"predictions"``; the model keeps ``class_names``.
        """
        v = self.values(hp)
        backbone = build_backbone(v["backbone"], weights=self.weights,
                                  image_size=self.image_size)
        hidden = (int(v["head_units"]),) if v["head_units"] else ()
        augmentation = None
        if v["augmentation"] != "none":
            from kerastl.data.augment import augmentation_layers

            augmentation = augmentation_layers(v["augmentation"], seed=self.seed)
        return ImageClassifier(backbone, self.num_classes, dropout=float(v["dropout"]),
                               hidden_units=hidden, class_names=self.class_names,
                               augmentation=augmentation)

    def split_epochs(self, epochs: int, initial_epoch: int = 0) -> tuple[int, int]:
        """``(head_epochs, fine_tune_epochs)`` for one ``fit`` call (see the module doc)."""
        budget = int(epochs) - int(initial_epoch)
        if budget < 1:
            raise UserInputError(
                f"epochs must exceed initial_epoch. Received: epochs={epochs}, "
                f"initial_epoch={initial_epoch}"
            )
        if initial_epoch > 0:
            return 0, budget
        head = max(1, round(budget * self.head_epoch_fraction))
        return head, budget - head

    def fit(self, hp, model, x=None, validation_data=None, *, epochs=None, initial_epoch=0,
            callbacks=None, verbose=None, **kwargs) -> dict:
        """Two-phase :func:`kerastl.fine_tune`; returns the metrics of its best epoch.

        KerasTuner's ``SaveBestEpoch`` callback is not forwarded (in phase 1 it
        would save the head-only model that trains on cached features);
        instead, the full model's best weights are saved to its file when the
        objective improves. Every other callback is forwarded to both phases.

        Returns:
            ``{"val_accuracy", "val_loss", "accuracy", "loss", "seconds",
            "epochs"}`` of the epoch whose weights the model holds.
        """
        from kerastl.training import fine_tune

        if kwargs:
            raise UserInputError(f"Unsupported fit arguments for TransferHyperModel: "
                                 f"{sorted(kwargs)}")
        start = time.perf_counter()
        v = self.values(hp)
        epochs = epochs if epochs is not None else CONFIG.head_epochs + CONFIG.epochs
        head_epochs, ft_epochs = self.split_epochs(epochs, initial_epoch)
        savers, forwarded = [], []
        for cb in callbacks or []:
            (savers if _is_save_best_epoch(cb) else forwarded).append(cb)
        train, val = x, validation_data
        if v["label_smoothing"] and len(train.element_spec[1].shape) < 2:
            train, val = (_one_hot(ds, self.num_classes) for ds in (train, val))
        n_groups = len(self._spec(v["backbone"]).groups)
        groups = min(int(v["unfreeze_groups"]), n_groups)
        # Every group: the whole backbone (BatchNorm frozen), what fine_tune's default does.
        unfreeze = {"groups": groups} if groups < n_groups else {}
        result = fine_tune(
            model, train, val, head_epochs=head_epochs, epochs=ft_epochs,
            learning_rate=float(v["learning_rate"]),
            fine_tune_learning_rate=float(v["fine_tune_learning_rate"]),
            unfreeze=unfreeze, callbacks=[BuildOptimizerFirst(), *forwarded],
            optimizer=v["optimizer"], schedule=CONFIG.schedule, warmup=CONFIG.warmup,
            label_smoothing=float(v["label_smoothing"]), patience=self.patience,
            verbose=self.verbose if verbose is None else verbose,
            **({"strategy": self.strategy} if self.strategy is not None else {}),
        )
        metrics = {k: float(val_) for k, val_ in result.best_val_metrics.items()
                   if k not in ("epoch", "phase", "learning_rate")
                   and isinstance(val_, (int, float)) and math.isfinite(float(val_))}
        metrics["seconds"] = time.perf_counter() - start
        metrics["epochs"] = float(len(result.history.get("epoch", [])))
        for saver in savers:
            _save_if_better(saver, model, metrics)
        return metrics


class BuildOptimizerFirst(keras.callbacks.Callback):
    """Create the optimizer's variables before Keras traces the train step.

    Variables first created inside a ``tf.function`` trace get a lifted
    initializer ``tf.cond`` whose functions stay registered after the model
    is gone, keeping the whole traced train-step graph alive: tens of MiB
    per trial in a long search. Building them eagerly avoids that.
    """

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)


def _number(name: str, key: str, value) -> float:
    try:
        return float(value)  # YAML reads 1e-4 (no dot) as a string
    except (TypeError, ValueError):
        raise UserInputError(f"space['{name}']['{key}'] must be a number. "
                             f"Received: {value!r}") from None


def _is_save_best_epoch(callback) -> bool:
    return type(callback).__name__ == "SaveBestEpoch" and hasattr(callback, "filepath")


def _save_if_better(saver, model, metrics: dict) -> None:
    objective = saver.objective
    if not objective.has_value(metrics):
        model.save_weights(saver.filepath)
        return
    value = objective.get_value(metrics)
    if objective.better_than(value, saver.best_value):
        saver.best_value = value
        model.save_weights(saver.filepath)


def _one_hot(dataset, num_classes: int):
    if dataset is None:
        return None
    return dataset.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))
