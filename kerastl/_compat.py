"""Every private Keras / TensorFlow / KerasTuner symbol kerastl relies on, named once.

kerastl needs a few things the three libraries do not expose publicly (the
layers nested inside a model, a layer's trainable-capable variables whatever
its ``trainable`` flag, which variables an optimizer was built for,
TensorFlow's gradient registry, KerasTuner's distributed-search helpers...).
Each is reached here, and only here, through a small public function whose
docstring names the private API and the versions it was checked against
(Keras 3.15, TensorFlow 2.21, KerasTuner 1.4.8). When a release moves one,
the function raises :class:`PrivateAPIMissing` naming it, instead of kerastl
failing somewhere far away or, worse, silently doing nothing; and
``tests/test_compat.py`` checks every entry of :data:`PRIVATE_SYMBOLS`
(the table, in :mod:`kerastl._private_symbols`).

Some private hooks are *overridden* by kerastl subclasses (a ``def`` must
spell the name): they are listed in :data:`PRIVATE_SYMBOLS` with kind
``"override"``; the test checks that the library still defines them and still
calls them from where kerastl expects.

Importing this module imports neither TensorFlow nor Keras nor KerasTuner;
each function imports what it reaches.
"""

from __future__ import annotations

import importlib

from kerastl._private_symbols import PRIVATE_SYMBOLS, PrivateSymbol  # noqa: F401


class PrivateAPIMissing(RuntimeError):
    """A private Keras/TensorFlow/KerasTuner symbol kerastl uses is not where it was."""


def _locate(dotted: str):
    """Import the longest importable prefix of ``dotted`` and getattr the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def resolve(name: str):
    """The object behind ``PRIVATE_SYMBOLS[name]`` (for class attributes, the class's member).

    Instance attributes (kind ``"attribute"``) resolve to their owner class.

    Raises:
        PrivateAPIMissing: the installed library no longer has it there.
    """
    symbol = PRIVATE_SYMBOLS[name]
    try:
        owner = _locate(symbol.owner)
        if symbol.attribute and symbol.kind != "attribute":
            return getattr(owner, symbol.attribute)
        return owner
    except (ImportError, AttributeError) as err:
        raise _missing(name, err) from err


def _missing(name: str, err: BaseException | None = None) -> PrivateAPIMissing:
    symbol = PRIVATE_SYMBOLS[name]
    return PrivateAPIMissing(
        f"kerastl uses the private {symbol.library} API {symbol.reach} ({symbol.kind}), which "
        f"the installed {symbol.library} {_version(symbol.library)} does not have"
        + (f" ({type(err).__name__}: {err})" if err is not None else "")
        + ". kerastl was checked against Keras 3.15, TensorFlow 2.21 and KerasTuner 1.4.8; "
        "install one of those or update kerastl/_compat.py.")


def _version(library: str) -> str:
    try:
        return importlib.import_module(library).__version__
    except Exception:  # noqa: BLE001 - only for a message
        return "(version unknown)"


def _attr(obj, attribute: str, name: str):
    try:
        return getattr(obj, attribute)
    except AttributeError as err:
        raise _missing(name, err) from err


# -- Keras: layers -------------------------------------------------------------------


def flatten_layers(layer, *, include_self: bool = False, recursive: bool = True) -> list:
    """Every layer nested in ``layer`` (depth-first, each once), optionally ``layer`` first.

    Wraps Keras 3's private ``keras.layers.Layer._flatten_layers(include_self,
    recursive)`` (Keras 3.0-3.15): unlike the public ``Model.layers`` it descends
    into nested models and layers that hold layers.
    """
    method = _attr(layer, "_flatten_layers", "Layer._flatten_layers")
    return list(method(include_self=include_self, recursive=recursive))


def own_trainable_variables(layer) -> list:
    """The variables ``layer`` itself created as trainable, even while it is frozen.

    Wraps Keras 3's private ``Layer._trainable_variables`` (Keras 3.0-3.15): the
    public ``trainable_variables`` is empty while ``layer.trainable`` is False and
    includes nested layers' variables.
    """
    return list(_attr(layer, "_trainable_variables", "Layer._trainable_variables"))


def model_loss_tracker(model):
    """The ``keras.metrics.Mean`` behind the ``loss`` a compiled ``model`` logs.

    Wraps Keras 3's private ``Trainer._loss_tracker`` (Keras 3.0-3.15; set by
    ``compile``): a custom ``train_step`` (:mod:`kerastl.training.micro_batch`)
    updates it as Keras' own step does.
    """
    tracker = _attr(model, "_loss_tracker", "Trainer._loss_tracker")
    if tracker is None:
        raise _missing("Trainer._loss_tracker")
    return tracker


# -- Keras: optimizers ---------------------------------------------------------------


def optimizer_var_key(optimizer, variable):
    """The hashable key ``optimizer`` files ``variable`` under.

    Wraps Keras 3's private ``Optimizer._var_key`` (Keras 3.0-3.15; the
    TensorFlow backend unwraps distributed variables to one key).
    """
    return _attr(optimizer, "_var_key", "Optimizer._var_key")(variable)


def optimizer_knows(optimizer, variable) -> bool:
    """Whether the built ``optimizer`` was built with (and so can update) ``variable``.

    Wraps Keras 3's private ``Optimizer._trainable_variables_indices`` (a dict
    ``{_var_key(v): index}``, Keras 3.0-3.15) and ``Optimizer._var_key``.
    """
    indices = _attr(optimizer, "_trainable_variables_indices",
                    "Optimizer._trainable_variables_indices")
    return optimizer_var_key(optimizer, variable) in indices


def optimizer_variable_index(optimizer, variable) -> int:
    """Position of ``variable`` among the variables ``optimizer`` was built with.

    Wraps Keras 3's private ``Optimizer._get_variable_index`` (Keras 3.0-3.15).
    """
    return _attr(optimizer, "_get_variable_index", "Optimizer._get_variable_index")(variable)


def optimizer_current_learning_rate(optimizer):
    """The learning rate of ``optimizer``'s current step (a schedule evaluated).

    Wraps Keras 3's private ``Optimizer._get_current_learning_rate`` (Keras 3.0-3.15).
    """
    return _attr(optimizer, "_get_current_learning_rate",
                 "Optimizer._get_current_learning_rate")()


def optimizer_uses_weight_decay(optimizer, variable) -> bool:
    """Whether ``optimizer`` decays ``variable`` (its ``exclude_from_weight_decay`` rules).

    Wraps Keras 3's private ``Optimizer._use_weight_decay`` (Keras 3.0-3.15).
    """
    return bool(_attr(optimizer, "_use_weight_decay", "Optimizer._use_weight_decay")(variable))


def optimizer_distribution_strategy(optimizer):
    """The ``tf.distribute.Strategy`` a TensorFlow-backend optimizer was made under.

    Wraps the private ``_distribution_strategy`` attribute of Keras 3's
    TensorFlow optimizer (``keras.src.backend.tensorflow.optimizer.TFOptimizer``,
    Keras 3.0-3.15).
    """
    return _attr(optimizer, "_distribution_strategy", "TFOptimizer._distribution_strategy")


# -- TensorFlow ----------------------------------------------------------------------


def maybe_merge_call(fn, strategy, *args, **kwargs):
    """Run ``fn(distribution, *args, **kwargs)`` in the cross-replica context of ``strategy``.

    Wraps TensorFlow's internal ``tf.__internal__.distribute.interim.maybe_merge_call``
    (TF 2.x up to 2.21), what Keras' own TensorFlow optimizer uses to apply
    weight decay under a strategy.
    """
    import tensorflow as tf

    try:
        call = tf.__internal__.distribute.interim.maybe_merge_call
    except AttributeError as err:
        raise _missing("tf.__internal__.distribute.interim.maybe_merge_call", err) from err
    return call(fn, strategy, *args, **kwargs)


def gradient_registry() -> dict:
    """TensorFlow's global gradient registry: ``{op or custom-gradient name: entry}``.

    Wraps TensorFlow's private ``tensorflow.python.framework.ops._gradient_registry
    ._registry`` (a ``Registry`` holding a dict; TF 2.x up to 2.21). kerastl removes
    the ``CustomGradient-<n>`` entries of finished models from it
    (:mod:`kerastl.memory`).

    Raises:
        PrivateAPIMissing: TensorFlow keeps it somewhere else now.
    """
    name = "tensorflow.python.framework.ops._gradient_registry._registry"
    try:
        from tensorflow.python.framework import ops
    except ImportError as err:
        raise _missing(name, err) from err
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):
        raise _missing(name)
    return registry


# -- KerasTuner ----------------------------------------------------------------------


def _kt_module(name: str):
    try:
        return importlib.import_module(PRIVATE_SYMBOLS[name].owner)
    except ImportError as err:
        raise _missing(name, err) from err


def set_keras_tuner_debug(flag: bool) -> bool:
    """Set KerasTuner's ``DEBUG`` switch (tracebacks of failed trials on stderr); returns the old value.

    Wraps KerasTuner's private ``keras_tuner.src.config.DEBUG`` (KerasTuner 1.4).
    """
    config = _kt_module("keras_tuner.src.config")
    previous = _attr(config, "DEBUG", "keras_tuner.src.config")
    config.DEBUG = flag
    return previous


def kt_distribute_utils():
    """KerasTuner's distributed-search helpers (``has_chief_oracle``, ``is_chief_oracle``).

    Wraps the private module ``keras_tuner.src.distribute.utils`` (KerasTuner 1.4).
    """
    return _kt_module("keras_tuner.src.distribute.utils")


def kt_protos():
    """KerasTuner's gRPC protocol module (``get_service_grpc()``).

    Wraps the private module ``keras_tuner.src.protos`` (KerasTuner 1.4).
    """
    return _kt_module("keras_tuner.src.protos")


def kt_oracle_chief():
    """KerasTuner's chief oracle server (``OracleServicer``, ``exit_chief``).

    Wraps the private module ``keras_tuner.src.distribute.oracle_chief`` (KerasTuner 1.4).
    """
    return _kt_module("keras_tuner.src.distribute.oracle_chief")


def tuner_is_worker(tuner) -> bool:
    """Whether ``tuner`` is a worker of a distributed search.

    Wraps KerasTuner's private ``BaseTuner._is_worker`` (KerasTuner 1.4).
    """
    return bool(_attr(tuner, "_is_worker", "BaseTuner._is_worker")())


def tuner_state_file(tuner) -> str:
    """The JSON file ``tuner`` saves its state to (``<project>/tuner0.json``).

    Wraps KerasTuner's private ``BaseTuner._get_tuner_fname`` (KerasTuner 1.4).
    """
    return _attr(tuner, "_get_tuner_fname", "BaseTuner._get_tuner_fname")()


def tuner_checkpoint_file(tuner, trial_id: str) -> str:
    """The weights file of trial ``trial_id``'s best epoch.

    Wraps KerasTuner's private ``Tuner._get_checkpoint_fname`` (KerasTuner 1.4).
    """
    return _attr(tuner, "_get_checkpoint_fname", "Tuner._get_checkpoint_fname")(trial_id)


def oracle_state_file(oracle) -> str:
    """The JSON file ``oracle`` saves its state to (``<project>/oracle.json``).

    Wraps KerasTuner's private ``Oracle._get_oracle_fname`` (KerasTuner 1.4).
    """
    return _attr(oracle, "_get_oracle_fname", "Oracle._get_oracle_fname")()


def oracle_trial_dir(oracle, trial_id: str) -> str:
    """The folder of trial ``trial_id`` (``<project>/trial_<id>``), created if missing.

    Wraps KerasTuner's private ``Oracle._get_trial_dir`` (KerasTuner 1.4).
    """
    return _attr(oracle, "_get_trial_dir", "Oracle._get_trial_dir")(trial_id)


# -- TensorFlow: tf.data ------------------------------------------------------------


def dataset_inputs(dataset) -> list:
    """The datasets ``dataset`` is built from (``[]`` for a source or a non-dataset).

    Wraps TensorFlow's private ``tf.data.Dataset._inputs()`` (TF 2.x-2.21), used
    to tell whether a dataset derived from a kerastl one inherits its augmentation.
    """
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        return []
    return list(_attr(dataset, "_inputs", "DatasetV2._inputs")())
