"""One place for every training default: :class:`FineTuneConfig`.

A frozen dataclass, validated once when it is made. ``ktl.train``, the
``kerastl train`` flags (their defaults and help), ``report.json["config"]`` and
``ktl.fine_tune``'s keyword defaults all come from it, so a default is written
once and cannot disagree between the library and the command line.

Plain Python: importable without TensorFlow (``kerastl --help`` reads it).

Example:
    >>> config = ktl.FineTuneConfig(backbone="mobilenet_v2", epochs=5, resize="crop")
    >>> run = ktl.train("photos/", config, output="runs/photos")
    >>> config.replace(seed=2).to_dict()["seed"]
    2
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from kerastl.defaults import (
    AUGMENT_POLICIES,
    DEFAULT_SCHEDULE,
    MAX_IMAGE_SIZE,
    RESIZE_MODES,
    SCHEDULES,
)
from kerastl.errors import UserInputError, close_matches

OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
MODES = ("fine-tune", "feature-extraction", "auto")
TASK_KINDS = ("auto", "image", "text")
#: The backbone of a text run that leaves ``backbone`` at the (image) default.
TEXT_BACKBONE = "minilm_l6"
CLASSIFIERS = ("logistic", "linear_svm", "ridge")
MIXED_PRECISION = ("mixed_float16", "mixed_bfloat16")
UNFREEZE_KEYS = ("groups", "fraction", "from_layer", "train_bn", "lora_rank")
#: ``head_init``: phase 1 trains the head (``"random"``) or fits a logistic regression
#: on cached features and starts phase 2 from it (``"linear_probe"``, LP-FT).
HEAD_INITS = ("random", "linear_probe")
#: ``regularization``: ``"l2_sp"`` pulls phase 2's weights toward their pretrained values.
REGULARIZATIONS = ("l2_sp",)
DEFAULT_SEED = 1337
#: ``dataclasses.field`` metadata: the option does not change what fine-tuning
#: computes, so a run resumed with another value keeps its checkpoint. Every
#: other field is part of the checkpoint's fingerprint (:func:`resume_fingerprint`).
RESUME_NEUTRAL = "resume_neutral"


def _neutral(default):
    return dataclasses.field(default=default, metadata={RESUME_NEUTRAL: True})


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Every option of a training run, with its default, checked once.

    Model:
        backbone: registry name or ``hub:<handle>``.
        weights: ``"imagenet"``, ``None`` (random) or a weights file.
        image_size: input side in px; ``None``: the backbone's native size.
        task: ``"image"``, ``"text"`` or ``"auto"`` (text when the data folder
            holds ``.txt`` files or the backbone is a text backbone). A text run
            whose backbone is left at the image default uses ``TEXT_BACKBONE``.
        sequence_length: tokens per text (text runs); ``None``: the backbone's default.
        lora_rank: text runs: phase 2 trains rank-``r`` LoRA adapters on the
            attention projections instead of the unfrozen weights (``None``: off).
        dropout: dropout rate before the classifier head.
        hidden_units: sizes of optional hidden ReLU layers of the head.
    Data:
        batch_size: images per training step (per replica under a strategy).
        validation_split: fraction held out for validation when the data has no
            validation split of its own.
        augment: ``None`` or a policy name (``"light"``, ``"default"``, ``"strong"``).
        resize: ``"stretch"``, ``"crop"``, ``"pad"`` or ``"random_crop"``; the
            model keeps it, so serving resizes the same way.
        seed: seed of the split, shuffling, augmentation and weight init.
        deterministic: bit-reproducible ops and data order (slower).
        max_pixels: largest image (pixels) a file may declare; ``None``: the default.
    Phases (:func:`kerastl.fine_tune`):
        head_epochs, epochs: epochs of phase 1 (head only) and phase 2.
        learning_rate, fine_tune_learning_rate: their rates.
        unfreeze: keyword arguments of :func:`kerastl.unfreeze` for phase 2
            (``{"groups": 2}``...; default: the whole backbone, BatchNorm frozen).
        optimizer, weight_decay, momentum, schedule, warmup, patience,
        label_smoothing, l2, layerwise_lr_decay, gradual_unfreeze_every,
        cache_features, mixed_precision, head_init, regularization, l2_sp,
        micro_batch_size: as in :func:`kerastl.fine_tune`.
    Run (:func:`kerastl.train`):
        mode: ``"fine-tune"``, ``"feature-extraction"`` (frozen features and a
            linear classifier) or ``"auto"`` (chosen from the images per class).
        classifier, C: feature extraction's linear classifier and its
            regularisation (``None``: chosen by cross-validation).
        lr_find: run the learning-rate finder for phase 1's rate first.

    Resuming (``backup_dir``): a checkpoint records every field the training
    received (:func:`resume_fingerprint`) and a run with another value is
    refused, except for the fields marked resume-neutral (``max_pixels``,
    ``micro_batch_size``, ``mode``, ``classifier``, ``C``: they do not change a
    fine-tuning run's training). Options that are not fields (output folder, verbosity,
    callbacks) never count.
    """

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    image_size: int | None = None
    task: str = "auto"
    sequence_length: int | None = None
    lora_rank: int | None = None
    dropout: float = 0.2
    hidden_units: tuple[int, ...] = ()

    batch_size: int = 32
    validation_split: float = 0.2
    augment: str | None = None
    resize: str = "stretch"
    seed: int = DEFAULT_SEED
    deterministic: bool = False
    max_pixels: int | None = _neutral(None)  # a limit on the files read

    head_epochs: int = 3
    epochs: int = 10
    learning_rate: Any = 1e-3
    fine_tune_learning_rate: Any = 1e-4
    unfreeze: Mapping | None = None
    optimizer: str = "adam"
    weight_decay: float | None = None
    momentum: float | None = None
    schedule: str = DEFAULT_SCHEDULE
    warmup: float = 0.1
    patience: int | None = 3
    label_smoothing: float = 0.0
    l2: float | None = None
    layerwise_lr_decay: float | None = None
    gradual_unfreeze_every: int | None = None
    cache_features: Any = "auto"
    mixed_precision: str | None = None
    head_init: str = "random"
    regularization: str | None = None
    l2_sp: float = 1e-3
    # the same update in smaller pieces: memory and speed only, so a resumed run may change it
    micro_batch_size: Any = _neutral("auto")

    mode: str = _neutral("fine-tune")  # a resumed run is fine-tuning whichever chose it
    classifier: str = _neutral("logistic")  # feature extraction only (never resumed)
    C: float | None = _neutral(None)
    lr_find: bool = False

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        if self.unfreeze is not None:
            object.__setattr__(self, "unfreeze", dict(self.unfreeze))
        if isinstance(self.weights, str) and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        _validate(self)

    # -- views ---------------------------------------------------------------

    def replace(self, **changes) -> FineTuneConfig:
        """A copy with ``changes`` (checked like the constructor's arguments)."""
        _check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Every option as JSON-ready values (what ``report.json["config"]`` holds)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = list(value)
            elif not isinstance(value, (str, int, float, bool, dict, type(None))):
                value = repr(value)  # a schedule object
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, options: Mapping) -> FineTuneConfig:
        """The config of ``options``; an unknown key is one clear error naming close ones."""
        _check_keys(options)
        return cls(**dict(options))

    def fine_tune_kwargs(self) -> dict:
        """The keyword arguments of :func:`kerastl.fine_tune` this config sets."""
        return {name: getattr(self, name) for name in FINE_TUNE_FIELDS}

    def unfreeze_options(self) -> dict:
        return dict(self.unfreeze or {})


#: The fields that are keyword arguments of :func:`kerastl.fine_tune`.
FINE_TUNE_FIELDS = ("head_epochs", "epochs", "learning_rate", "fine_tune_learning_rate",
                    "unfreeze", "optimizer", "weight_decay", "momentum", "schedule", "warmup",
                    "patience", "label_smoothing", "l2", "layerwise_lr_decay",
                    "gradual_unfreeze_every", "cache_features", "mixed_precision",
                    "lora_rank", "head_init", "regularization", "l2_sp", "micro_batch_size")



def resume_fingerprint(options: Mapping) -> dict:
    """What a checkpoint must agree on: the :class:`FineTuneConfig` fields in ``options``.

    Every field found in ``options`` (e.g. :func:`kerastl.fine_tune`'s keyword
    arguments) counts, in declaration order, except the resume-neutral ones, so
    a new field is covered as soon as the training receives it. Values are made
    JSON-ready (a schedule object becomes its class name and config).
    """
    return {f.name: _jsonable(options[f.name]) for f in dataclasses.fields(FineTuneConfig)
            if f.name in options and not f.metadata.get(RESUME_NEUTRAL, False)}


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    get_config = getattr(value, "get_config", None)
    if callable(get_config):
        return {"class": type(value).__name__, "config": _jsonable(get_config())}
    return type(value).__name__


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(FineTuneConfig))


def _check_keys(options: Mapping) -> None:
    known = field_names()
    for key in options:
        if key not in known:
            near = close_matches(str(key), known)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise UserInputError(f"Unknown FineTuneConfig option {key!r}.{hint} Known: "
                                 f"{', '.join(known)}")


# -- validation ------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(name, value, minimum, *, optional=False):
    if optional and value is None:
        return
    if not _is_int(value) or value < minimum:
        extra = " or None" if optional else ""
        raise UserInputError(f"{name} must be an int >= {minimum}{extra}. "
                             f"Received: {name}={value!r}")


def _fraction(name, value, *, low=0.0, high=1.0, high_open=True, optional=False):
    if optional and value is None:
        return
    ok = _is_number(value) and math.isfinite(value) and low <= value and (
        value < high if high_open else value <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise UserInputError(f"{name} must be a number in [{low:g}, {high:g}{bracket}. "
                             f"Received: {name}={value!r}")


def _positive(name, value, *, optional=False, zero=False):
    if optional and value is None:
        return
    if not (_is_number(value) and math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise UserInputError(f"{name} must be a finite number {'>=' if zero else '>'} 0. "
                             f"Received: {name}={value!r}")


def _choice(name, value, choices, *, optional=False):
    if optional and value is None:
        return
    if value not in choices:
        raise UserInputError(f"{name} must be one of {', '.join(map(str, choices))}. "
                             f"Received: {name}={value!r}")


def _validate(c: FineTuneConfig) -> None:
    if not isinstance(c.backbone, str) or not c.backbone:
        raise UserInputError(f"backbone must be a registry name. Received: {c.backbone!r}")
    if c.weights is not None and not isinstance(c.weights, str):
        raise UserInputError(f"weights must be 'imagenet', None or a file path. "
                             f"Received: weights={c.weights!r}")
    if c.image_size is not None and (not _is_int(c.image_size)
                                     or not 1 <= c.image_size <= MAX_IMAGE_SIZE):
        raise UserInputError(f"image_size must be an int from 1 to {MAX_IMAGE_SIZE} or None. "
                             f"Received: image_size={c.image_size!r}")
    _choice("task", c.task, TASK_KINDS)
    _int("sequence_length", c.sequence_length, 3, optional=True)
    _int("lora_rank", c.lora_rank, 1, optional=True)
    _fraction("dropout", c.dropout)
    for units in c.hidden_units:
        if not _is_int(units) or units < 1:
            raise UserInputError(f"hidden_units must be positive ints. "
                                 f"Received: hidden_units={c.hidden_units!r}")
    _int("batch_size", c.batch_size, 1)
    _fraction("validation_split", c.validation_split)
    if not (c.augment is None or isinstance(c.augment, dict)):
        _choice("augment", c.augment, tuple(AUGMENT_POLICIES))
    _choice("resize", c.resize, RESIZE_MODES)
    _int("seed", c.seed, 0)
    if c.max_pixels is not None and (not _is_int(c.max_pixels) or c.max_pixels < 1):
        raise UserInputError(f"max_pixels must be a positive int or None. "
                             f"Received: max_pixels={c.max_pixels!r}")
    for name in ("head_epochs", "epochs"):
        _int(name, getattr(c, name), 0)
    if c.head_epochs + c.epochs == 0 and c.mode == "fine-tune" and c.head_init == "random":
        raise UserInputError("Nothing to do: head_epochs and epochs are both 0.")
    for name in ("learning_rate", "fine_tune_learning_rate"):
        value = getattr(c, name)
        if _is_number(value) or isinstance(value, bool) or value is None:
            _positive(name, value)  # a schedule object is checked by Keras
    _check_unfreeze(c.unfreeze)
    _choice("optimizer", str(c.optimizer).lower() if isinstance(c.optimizer, str)
            else c.optimizer, OPTIMIZER_NAMES)
    _positive("weight_decay", c.weight_decay, optional=True, zero=True)
    _fraction("momentum", c.momentum, optional=True)
    _choice("schedule", c.schedule, SCHEDULES)
    _fraction("warmup", c.warmup)
    _int("patience", c.patience, 0, optional=True)
    _fraction("label_smoothing", c.label_smoothing)
    if c.l2 is not None and not (_is_number(c.l2) and math.isfinite(c.l2) and c.l2 > 0):
        raise UserInputError(f"l2 must be a positive number (e.g. 1e-4). Received: l2={c.l2!r}")
    _fraction("layerwise_lr_decay", c.layerwise_lr_decay, high_open=False, optional=True)
    if c.layerwise_lr_decay is not None and c.layerwise_lr_decay == 0:
        raise UserInputError("layerwise_lr_decay must be in (0, 1]. Received: "
                             "layerwise_lr_decay=0")
    _int("gradual_unfreeze_every", c.gradual_unfreeze_every, 1, optional=True)
    _choice("cache_features", c.cache_features, ("auto", True, False))
    _choice("mixed_precision", c.mixed_precision, MIXED_PRECISION, optional=True)
    _choice("head_init", c.head_init, HEAD_INITS)
    _choice("regularization", c.regularization, REGULARIZATIONS, optional=True)
    _positive("l2_sp", c.l2_sp)
    check_micro_batch_size(c.micro_batch_size, c.unfreeze)
    _choice("mode", c.mode, MODES)
    _choice("classifier", c.classifier, CLASSIFIERS)
    _positive("C", c.C, optional=True)
    if not isinstance(c.deterministic, bool) or not isinstance(c.lr_find, bool):
        raise UserInputError("deterministic and lr_find must be True or False.")


#: The error of a micro-batch size given while BatchNorm trains.
MICRO_BATCH_BN_MESSAGE = (
    "micro_batch_size splits each batch into pieces whose gradients are summed, which is "
    "exact only while BatchNorm is frozen; with train_bn=True each piece would get its own "
    "batch statistics. Use train_bn=False, or micro_batch_size=None (whole batches).")


def check_micro_batch_size(value, unfreeze=None) -> None:
    """``micro_batch_size``: ``"auto"``, ``None`` or ``0`` (off), or an int >= 1.

    An int >= 1 with ``unfreeze={"train_bn": True}`` is refused (``"auto"`` is then off).

    Raises:
        UserInputError: anything else, naming what was received.
    """
    if _is_int(value) and value >= 1 and (unfreeze or {}).get("train_bn"):
        raise UserInputError(f"{MICRO_BATCH_BN_MESSAGE} Received: micro_batch_size={value!r}")
    if value is None or (isinstance(value, str) and value == "auto") or (
            _is_int(value) and value >= 0):
        return
    raise UserInputError("micro_batch_size must be 'auto', an int >= 1 (examples per forward/"
                         "backward pass of a training step), or None or 0 (off). "
                         f"Received: micro_batch_size={value!r}")


def _check_unfreeze(unfreeze) -> None:
    if unfreeze is None:
        return
    unknown = [k for k in unfreeze if k not in UNFREEZE_KEYS]
    if unknown:
        raise UserInputError(f"unfreeze takes {', '.join(UNFREEZE_KEYS)}. "
                             f"Received: unfreeze={dict(unfreeze)!r}")
    chosen = [k for k in ("groups", "fraction", "from_layer") if unfreeze.get(k) is not None]
    if len(chosen) > 1:
        raise UserInputError(f"unfreeze takes one of groups, fraction or from_layer. "
                             f"Received: unfreeze={dict(unfreeze)!r}")


#: The defaults, for flag defaults and help text (``DEFAULTS.epochs``...).
DEFAULTS = FineTuneConfig()
