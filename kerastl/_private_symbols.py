"""The table of every private Keras / TensorFlow / KerasTuner symbol kerastl uses.

Pure data, read by :mod:`kerastl._compat` (whose functions reach each symbol)
and checked entry by entry by ``tests/test_compat.py``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PrivateSymbol:
    """How kerastl reaches one private symbol.

    Attributes:
        library: ``"keras"``, ``"tensorflow"`` or ``"keras_tuner"``.
        owner: importable dotted path of the module or class that holds it.
        attribute: the private name on ``owner`` (``""``: ``owner`` is itself private).
        kind: ``"method"`` (called), ``"attribute"`` (read/written on instances),
            ``"module"``, ``"function"`` or ``"override"`` (kerastl subclasses
            override it).
        wrapper: the function of :mod:`kerastl._compat` that reaches it (``""`` for overrides).
        used_by: kerastl modules that use it.
    """

    library: str
    owner: str
    attribute: str
    kind: str
    wrapper: str
    used_by: tuple[str, ...]

    @property
    def reach(self) -> str:
        return f"{self.owner}.{self.attribute}" if self.attribute else self.owner


# -- the table -----------------------------------------------------------------------

_K_LAYER = "keras.layers.Layer"
_K_OPT = "keras.optimizers.Optimizer"
_K_TF_OPT = "keras.src.backend.tensorflow.optimizer.TFOptimizer"
_KT_BASE = "keras_tuner.src.engine.base_tuner.BaseTuner"
_KT_TUNER = "keras_tuner.Tuner"
_KT_ORACLE = "keras_tuner.Oracle"


def _s(library, owner, attribute, kind, wrapper, *used_by) -> PrivateSymbol:
    return PrivateSymbol(library, owner, attribute, kind, wrapper, tuple(used_by))


#: name -> how kerastl reaches it. ``tests/test_compat.py`` has one check per entry.
PRIVATE_SYMBOLS: dict[str, PrivateSymbol] = {
    "Layer._flatten_layers": _s(
        "keras", _K_LAYER, "_flatten_layers", "method", "flatten_layers",
        "backbones/builder", "training/gradual", "training/phases", "training/fine_tune",
        "training/discriminative", "distribute", "freezing", "transfer/adabn",
        "regularization"),
    "Layer._trainable_variables": _s(
        "keras", _K_LAYER, "_trainable_variables", "attribute", "own_trainable_variables",
        "training/gradual", "training/discriminative"),
    "Trainer._loss_tracker": _s(
        "keras", "keras.Model", "_loss_tracker", "attribute", "model_loss_tracker",
        "training/micro_batch"),
    "Optimizer._var_key": _s(
        "keras", _K_OPT, "_var_key", "method", "optimizer_var_key", "training/gradual"),
    "Optimizer._trainable_variables_indices": _s(
        "keras", _K_OPT, "_trainable_variables_indices", "attribute", "optimizer_knows",
        "training/gradual"),
    "Optimizer._get_variable_index": _s(
        "keras", _K_OPT, "_get_variable_index", "method", "optimizer_variable_index",
        "training/discriminative"),
    "Optimizer._get_current_learning_rate": _s(
        "keras", _K_OPT, "_get_current_learning_rate", "method",
        "optimizer_current_learning_rate", "training/discriminative"),
    "Optimizer._use_weight_decay": _s(
        "keras", _K_OPT, "_use_weight_decay", "method", "optimizer_uses_weight_decay",
        "training/discriminative"),
    "Optimizer._apply_weight_decay": _s(
        "keras", _K_OPT, "_apply_weight_decay", "override", "", "training/discriminative"),
    "TFOptimizer._distribution_strategy": _s(
        "keras", _K_TF_OPT, "_distribution_strategy", "attribute",
        "optimizer_distribution_strategy", "training/discriminative"),
    "DatasetV2._inputs": _s(
        "tensorflow", "tensorflow.data.Dataset", "_inputs", "method", "dataset_inputs",
        "data/info"),
    "tf.__internal__.distribute.interim.maybe_merge_call": _s(
        "tensorflow", "tensorflow.__internal__.distribute.interim", "maybe_merge_call",
        "function", "maybe_merge_call", "training/discriminative"),
    "tensorflow.python.framework.ops._gradient_registry._registry": _s(
        "tensorflow", "tensorflow.python.framework.ops._gradient_registry", "_registry",
        "attribute", "gradient_registry", "memory"),
    "keras_tuner.src.config": _s(
        "keras_tuner", "keras_tuner.src.config", "", "module", "set_keras_tuner_debug",
        "tuning/search"),
    "keras_tuner.src.distribute.utils": _s(
        "keras_tuner", "keras_tuner.src.distribute.utils", "", "module",
        "kt_distribute_utils", "tuning/search", "tuning/tuner"),
    "keras_tuner.src.protos": _s(
        "keras_tuner", "keras_tuner.src.protos", "", "module", "kt_protos", "tuning/tuner"),
    "keras_tuner.src.distribute.oracle_chief": _s(
        "keras_tuner", "keras_tuner.src.distribute.oracle_chief", "", "module",
        "kt_oracle_chief", "tuning/tuner"),
    "BaseTuner._populate_initial_space": _s(
        "keras_tuner", _KT_BASE, "_populate_initial_space", "override", "", "tuning/tuner"),
    "BaseTuner._run_and_update_trial": _s(
        "keras_tuner", _KT_BASE, "_run_and_update_trial", "override", "", "tuning/tuner"),
    "Tuner._build_hypermodel": _s(
        "keras_tuner", _KT_TUNER, "_build_hypermodel", "override", "", "tuning/tuner"),
    "BaseTuner._is_worker": _s(
        "keras_tuner", _KT_BASE, "_is_worker", "method", "tuner_is_worker", "tuning/tuner"),
    "BaseTuner._get_tuner_fname": _s(
        "keras_tuner", _KT_BASE, "_get_tuner_fname", "method", "tuner_state_file",
        "tuning/tuner"),
    "Tuner._get_checkpoint_fname": _s(
        "keras_tuner", _KT_TUNER, "_get_checkpoint_fname", "method", "tuner_checkpoint_file",
        "tuning/tuner"),
    "Oracle._get_oracle_fname": _s(
        "keras_tuner", _KT_ORACLE, "_get_oracle_fname", "method", "oracle_state_file",
        "tuning/tuner"),
    "Oracle._get_trial_dir": _s(
        "keras_tuner", _KT_ORACLE, "_get_trial_dir", "method", "oracle_trial_dir",
        "tuning/tuner"),
    "Oracle._save_trial": _s(
        "keras_tuner", _KT_ORACLE, "_save_trial", "override", "", "tuning/tuner"),
}
