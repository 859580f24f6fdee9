"""Task models: a thin head over a backbone (KerasHub's Backbone/Task split).

:class:`ImageClassifier` and :class:`ImageRegressor` are Keras functional
models that also carry their own contract: the backbone's registry name, the
class names, the image size, the resize mode the data was prepared with and
the task kind. ``get_config`` holds all of it, so a ``.keras`` file keeps it,
and export, predict, evaluate and the tuner read it from the model instead
of guessing or reading side files.

Their layer layout is the one kerastl has always built: input ``"image"``,
an optional ``"augmentation"`` block, the backbone nested as one layer, the
head (``head_pool``, ``head_dropout_<i>``/``head_dense_<i>``, ``head_dropout``)
and a float32 ``"predictions"`` layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kerastl.backbones.builder import build_backbone
from kerastl.data.decode import check_resize_mode
from kerastl.errors import UserInputError

TASKS = ("multiclass", "multilabel", "regression")

#: The first key of a task model's config, so that Keras's own error for a
#: ``.keras`` file loaded without kerastl imported names what to do.
REQUIRES = "import kerastl before keras.saving.load_model: this is a kerastl model"


def _scope(strategy):
    """The scope of ``strategy`` (a Strategy or a name for ``get_strategy``)."""
    if isinstance(strategy, str):
        from kerastl.distribute import get_strategy

        strategy = get_strategy(strategy)
    return strategy.scope()


def _resolve_backbone(backbone) -> keras.Model:
    if isinstance(backbone, str):
        return build_backbone(backbone)
    if isinstance(backbone, keras.Model):
        return backbone
    raise UserInputError(
        "backbone must be a registry name or a model from ktl.build_backbone. "
        f"Received: backbone={backbone!r}"
    )


def _check_hidden(hidden_units) -> tuple[int, ...]:
    hidden = tuple(hidden_units)
    for units in hidden:
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise UserInputError(
                f"hidden_units must be positive ints. Received: hidden_units={hidden_units!r}"
            )
    return hidden


def _check_class_names(class_names, num_outputs: int) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str | bytes) or not hasattr(class_names, "__iter__"):
        raise UserInputError("class_names must be a list of strings, one per output. "
                             f"Received: class_names={class_names!r}")
    names = tuple(str(n) for n in class_names)
    if len(names) != num_outputs:
        raise UserInputError(f"class_names has {len(names)} names but the model has "
                             f"{num_outputs} outputs. Received: class_names={list(names)!r}")
    if len(set(names)) != len(names):
        raise UserInputError(f"class_names must be unique. Received: {list(names)!r}")
    return names


def check_num_classes(num_classes, multilabel: bool) -> None:
    """A classifier's class count: a positive int, >= 2 for softmax."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserInputError(f"num_classes must be a positive int. Received: {num_classes!r}")
    if num_classes == 1 and not multilabel:
        raise UserInputError(
            "A softmax classifier needs num_classes >= 2 (use 2 for a binary problem, or "
            "multilabel=True for independent sigmoid outputs). Received: num_classes=1"
        )


def task_from_config(cls, config: dict):
    """``from_config`` of a task model: the backbone (and augmentation) deserialised."""
    config = dict(config)
    config.pop("requires", None)
    config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
    if config.get("augmentation") is not None:
        config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
    return cls(**config)


def _head(backbone: keras.Model, inputs, dropout: float, hidden_units, augmentation, make):
    if not 0 <= dropout < 1:
        raise UserInputError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    x = inputs if augmentation is None else augmentation(inputs)
    x = backbone(x)
    if len(x.shape) == 4:
        x = make(keras.layers.GlobalAveragePooling2D, name="head_pool")(x)
    for i, units in enumerate(hidden_units):
        if dropout:
            x = make(keras.layers.Dropout, dropout, name=f"head_dropout_{i}")(x)
        x = make(keras.layers.Dense, units, activation="relu", name=f"head_dense_{i}")(x)
    if dropout:
        x = make(keras.layers.Dropout, dropout, name="head_dropout")(x)
    return x


def _layer_maker(saved: list | None):
    """Build head layers, or rebuild them from their saved configs (which keep what was
    changed after building, e.g. the L2 regulariser ``fine_tune(l2=...)`` adds)."""
    by_name = {c["config"]["name"]: c for c in saved or ()}

    def make(cls, *args, name, **kwargs):
        if name in by_name:
            return keras.saving.deserialize_keras_object(by_name[name])
        return cls(*args, name=name, **kwargs)

    return make


class TaskContract:
    """What every kerastl task model (image and text) keeps about itself: class names,
    output names and the config of its backbone and head. Mixed in before
    ``keras.Model``; the model sets ``backbone``, ``_num_outputs``, ``_dropout``,
    ``_hidden_units`` and ``_class_names``."""

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self._class_names

    @class_names.setter
    def class_names(self, names) -> None:
        self._class_names = _check_class_names(names, self._num_outputs)

    def output_names_or_indices(self) -> list[str]:
        """``class_names``, or ``"0"``, ``"1"``, ... when none are set."""
        return list(self.class_names or (str(i) for i in range(self._num_outputs)))

    def _task_config(self) -> dict:
        return {}

    def _contract_config(self, **kind_config) -> dict:
        """The config both kinds write, with ``kind_config`` (resize, image size...) in it."""
        return {
            "requires": REQUIRES,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            **self._task_config(),
            "dropout": self._dropout,
            "hidden_units": list(self._hidden_units),
            "class_names": None if self.class_names is None else list(self.class_names),
            **kind_config,
            "head_layers": [keras.saving.serialize_keras_object(layer) for layer in self.layers
                            if layer.name.startswith("head_") or layer.name == "predictions"],
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict):
        return task_from_config(cls, config)


class ImageTask(TaskContract, keras.Model):
    """Base of the image task models: backbone, head, and the model's contract.

    Attributes:
        backbone: the backbone model (preprocessing inside).
        class_names: tuple of output names, or ``None`` when not known yet.
        resize: how images were resized to ``image_size`` in training
            (``"stretch"``, ``"crop"``, ``"pad"``, ``"random_crop"``); serving
            and prediction resize the same way.
        image_size: ``(height, width)`` of the input.
        task: ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        backbone_name: the backbone's registry name (``None`` for a foreign model).
    """

    task = "regression"
    #: Marks kerastl's task models (image and text), which describe themselves.
    is_kerastl_task = True
    kind = "image"

    def __init__(self, backbone, num_outputs: int, *, activation=None, dropout=0.2,
                 hidden_units=(), class_names=None, resize="stretch", image_size=None,
                 augmentation=None, name=None, head_layers=None, **kwargs):
        backbone = _resolve_backbone(backbone)
        hidden = _check_hidden(hidden_units)
        make = _layer_maker(head_layers)
        shape = tuple(backbone.input_shape[1:])
        if image_size is not None and len(shape) == 3 and None in shape[:2]:
            size = (image_size, image_size) if isinstance(image_size, int) else image_size
            shape = (int(size[0]), int(size[1]), shape[2])
        inputs = keras.Input(shape, name="image")
        x = _head(backbone, inputs, float(dropout), hidden, augmentation, make)
        outputs = make(keras.layers.Dense, num_outputs, activation=activation, dtype="float32",
                       name="predictions")(x)
        super().__init__(inputs=inputs, outputs=outputs,
                         name=name or f"{backbone.name}_{self._suffix}", **kwargs)
        self.backbone = backbone
        self.augmentation = augmentation
        self._num_outputs = int(num_outputs)
        self._dropout = float(dropout)
        self._hidden_units = hidden
        self.class_names = class_names
        self.resize = resize

    _suffix = "model"

    # -- the contract -----------------------------------------------------

    @property
    def resize(self) -> str:
        return self._resize

    @resize.setter
    def resize(self, mode: str) -> None:
        self._resize = check_resize_mode(mode)

    @property
    def image_size(self) -> tuple[int | None, int | None]:
        h, w = self.input_shape[1:3]
        return (h, w)

    @property
    def backbone_name(self) -> str | None:
        from kerastl.freezing import find_backbone

        try:
            return find_backbone(self.backbone)[1].name
        except UserInputError:
            return None

    # -- serialisation ----------------------------------------------------

    def get_config(self) -> dict:
        return self._contract_config(
            resize=self.resize, image_size=list(self.image_size),
            augmentation=(None if self.augmentation is None
                          else keras.saving.serialize_keras_object(self.augmentation)))


class ClassifierTask:
    """What image and text classifiers share: one output per class, softmax (one
    label per example) or sigmoid (``multilabel``), ``task`` and ``num_classes``.
    Mixed in before the task base (``class ImageClassifier(ClassifierTask, ImageTask)``)."""

    _suffix = "classifier"

    def _init_classifier(self, backbone, num_classes: int, dropout: float, hidden_units,
                         multilabel: bool, kwargs: dict) -> None:
        check_num_classes(num_classes, multilabel)
        self._multilabel = bool(multilabel)
        super().__init__(backbone, num_classes, dropout=dropout, hidden_units=hidden_units,
                         activation="sigmoid" if multilabel else "softmax", **kwargs)

    @property
    def task(self) -> str:
        return "multilabel" if self._multilabel else "multiclass"

    @property
    def num_classes(self) -> int:
        return self._num_outputs

    def _task_config(self) -> dict:
        return {"num_classes": self._num_outputs, "multilabel": self._multilabel}


@keras.saving.register_keras_serializable(package="kerastl")
class ImageClassifier(ClassifierTask, ImageTask):
    """Image classifier: backbone -> (dropout, hidden layers) -> probabilities.

    Args:
        backbone: a registry name (built frozen with ImageNet weights) or a
            model from :func:`kerastl.build_backbone`.
        num_classes: number of classes (>= 2, or >= 1 when ``multilabel``).
        dropout: dropout rate before each dense layer of the head.
        hidden_units: sizes of optional hidden ReLU layers.
        multilabel: sigmoid outputs (independent labels) instead of softmax.
        class_names: one name per class (kept in the ``.keras`` file).
        resize: the data layer's resize mode the model is trained with.
        image_size: input size, for a backbone that accepts any size.
        augmentation: optional Keras layers (e.g. from
            :func:`kerastl.data.augment.augmentation_layers`) applied to the
            input; random in training, identity at inference.
        name: model name; default ``"<backbone>_classifier"``.
    """

    def __init__(self, backbone, num_classes: int, *, dropout: float = 0.2,
                 hidden_units: Sequence[int] = (), multilabel: bool = False, **kwargs):
        self._init_classifier(backbone, num_classes, dropout, hidden_units, multilabel, kwargs)


@keras.saving.register_keras_serializable(package="kerastl")
class ImageRegressor(ImageTask):
    """Image regressor: backbone -> (dropout, hidden layers) -> linear outputs.

    Arguments as :class:`ImageClassifier`; ``class_names`` names the outputs.
    """

    _suffix = "regressor"

    def __init__(self, backbone, num_outputs: int = 1, *, dropout: float = 0.2,
                 hidden_units: Sequence[int] = (), **kwargs):
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise UserInputError(
                f"num_outputs must be a positive int. Received: {num_outputs!r}")
        super().__init__(backbone, num_outputs, dropout=dropout, hidden_units=hidden_units,
                         **kwargs)

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    def _task_config(self) -> dict:
        return {"num_outputs": self._num_outputs}


def build_classifier(backbone, num_classes: int, *, dropout: float = 0.2,
                     hidden_units: Sequence[int] = (), multilabel: bool = False,
                     name: str | None = None, strategy=None, class_names=None,
                     resize: str = "stretch") -> ImageClassifier:
    """An :class:`ImageClassifier`: backbone -> (dropout, hidden layers) -> probabilities.

    Args:
        backbone: a registry name (built frozen with ImageNet weights) or a
            model from :func:`build_backbone`.
        num_classes: number of classes (>= 2, or >= 1 when ``multilabel``).
        dropout: dropout rate before each dense layer of the head.
        hidden_units: sizes of optional hidden ReLU layers.
        multilabel: sigmoid outputs (independent labels) instead of softmax.
        name: model name; default ``"<backbone>_classifier"``.
        strategy: a ``tf.distribute.Strategy`` or a name for
            :func:`kerastl.distribute.get_strategy`; the model's variables are
            created in its scope (with a backbone *name*, the backbone too).
        class_names: one name per class, kept in the model (and its ``.keras`` file).
        resize: how the training images are resized (the data layer's ``resize``).

    Returns:
        A model from raw ``[0, 255]`` RGB to class probabilities (float32,
        also under mixed precision).
    """
    if strategy is not None:
        with _scope(strategy):
            return build_classifier(backbone, num_classes, dropout=dropout,
                                    hidden_units=hidden_units, multilabel=multilabel, name=name,
                                    class_names=class_names, resize=resize)
    return ImageClassifier(backbone, num_classes, dropout=dropout, hidden_units=hidden_units,
                           multilabel=multilabel, name=name, class_names=class_names,
                           resize=resize)


def build_regressor(backbone, num_outputs: int = 1, *, dropout: float = 0.2,
                    hidden_units: Sequence[int] = (), name: str | None = None,
                    strategy=None, class_names=None, resize: str = "stretch") -> ImageRegressor:
    """An :class:`ImageRegressor`: backbone -> (dropout, hidden layers) -> linear outputs.

    Arguments as in :func:`build_classifier`; ``class_names`` names the outputs.
    """
    if strategy is not None:
        with _scope(strategy):
            return build_regressor(backbone, num_outputs, dropout=dropout,
                                   hidden_units=hidden_units, name=name,
                                   class_names=class_names, resize=resize)
    return ImageRegressor(backbone, num_outputs, dropout=dropout, hidden_units=hidden_units,
                          name=name, class_names=class_names, resize=resize)


def task_of(model: keras.Model) -> str:
    """``"multiclass"``, ``"multilabel"`` or ``"regression"``.

    A task model says so itself; for another model it is read from the
    activation of its ``"predictions"`` (or last) layer.
    """
    if is_task_model(model):
        return model.task
    try:
        last = model.get_layer("predictions")
    except ValueError:
        last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "linear")
    if activation == "softmax":
        return "multiclass"
    if activation == "sigmoid":
        return "multilabel"
    return "regression"


def is_task_model(model) -> bool:
    """True for kerastl's task models (image or text), which carry their own contract."""
    return bool(getattr(type(model), "is_kerastl_task", False))


def contract_of(model: keras.Model) -> dict:
    """What a model says about itself: kind (``"image"``/``"text"``), class names,
    resize, image size, sequence length, task, backbone.

    Every key is present; ``None`` where a plain Keras model (or the other kind) does not say.
    """
    if is_task_model(model):
        return {"kind": model.kind,
                "class_names": None if model.class_names is None else list(model.class_names),
                "resize": model.resize, "image_size": model.image_size,
                "sequence_length": getattr(model, "sequence_length", None), "task": model.task,
                "backbone": model.backbone_name}
    inputs = getattr(model, "inputs", None) or []
    text = len(inputs) == 1 and str(getattr(inputs[0], "dtype", "")) == "string"
    return {"kind": "text" if text else "image", "class_names": None, "resize": None,
            "image_size": None, "sequence_length": None, "task": task_of(model),
            "backbone": None}
