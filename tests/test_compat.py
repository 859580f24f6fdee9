"""One check per private Keras / TensorFlow / KerasTuner symbol kerastl uses (kerastl._compat).

Each check fails, naming the symbol, when a new release moves or changes it.
"""

from __future__ import annotations

import os
import pathlib
import re

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from kerastl import _compat
from kerastl._compat import PRIVATE_SYMBOLS

# -- helpers --------------------------------------------------------------------------


def _nested_model():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")],
                             name="inner")
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(2, name="outer_dense")(inner(inputs))
    return keras.Model(inputs, outputs, name="outer")


def _built_adam(*variables):
    opt = keras.optimizers.Adam(learning_rate=0.01)
    opt.build(list(variables))
    return opt


def _variables(n=3):
    return [keras.Variable(np.zeros((2,), "float32"), name=f"v{i}") for i in range(n)]


def _called_by(caller, name: str) -> bool:
    """Whether ``caller``'s code (nested functions included) refers to attribute ``name``."""
    codes = [caller.__code__]
    while codes:
        code = codes.pop()
        if name in code.co_names:
            return True
        codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return False


def _tuner(tmp_path):
    def build(hp):
        units = hp.Int("units", 1, 2)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(units)])

    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    return kt.Tuner(oracle=oracle, hypermodel=build, directory=str(tmp_path),
                    project_name="p", overwrite=True)


# -- one check per symbol ------------------------------------------------------------


def check_flatten_layers(tmp_path):
    model = _nested_model()
    names = [layer.name for layer in _compat.flatten_layers(model)]
    assert "inner" in names and "inner_dense" in names and "outer_dense" in names
    assert "outer" not in names
    with_self = _compat.flatten_layers(model, include_self=True)
    assert with_self[0] is model and len(with_self) == len(names) + 1
    shallow = [layer.name for layer in _compat.flatten_layers(model, recursive=False)]
    assert "inner_dense" not in shallow and "inner" in shallow


def check_trainable_variables(tmp_path):
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    layer.trainable = False
    assert layer.trainable_variables == []  # the public view is empty while frozen
    own = _compat.own_trainable_variables(layer)
    assert [tuple(v.shape) for v in own] == [(4, 3), (3,)]
    assert own[0] is layer.kernel


def check_var_key(tmp_path):
    v = _variables()
    opt = _built_adam(v[0], v[1])
    key = _compat.optimizer_var_key(opt, v[1])
    assert hash(key) == hash(_compat.optimizer_var_key(opt, v[1]))
    assert opt._trainable_variables_indices[key] == 1
    assert key != _compat.optimizer_var_key(opt, v[0])


def check_trainable_variables_indices(tmp_path):
    v = _variables()
    opt = _built_adam(v[0], v[1])
    assert isinstance(opt._trainable_variables_indices, dict)
    assert [_compat.optimizer_knows(opt, x) for x in v] == [True, True, False]


def check_get_variable_index(tmp_path):
    v = _variables()
    opt = _built_adam(*v)
    assert [_compat.optimizer_variable_index(opt, x) for x in v] == [0, 1, 2]


def check_current_learning_rate(tmp_path):
    opt = keras.optimizers.SGD(
        keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5))
    opt.build(_variables(1))
    assert float(_compat.optimizer_current_learning_rate(opt)) == pytest.approx(0.1)
    opt.iterations.assign(2)
    assert float(_compat.optimizer_current_learning_rate(opt)) == pytest.approx(0.025)


def check_use_weight_decay(tmp_path):
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    opt = keras.optimizers.AdamW(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build([kernel, bias])
    assert _compat.optimizer_uses_weight_decay(opt, kernel) is True
    assert _compat.optimizer_uses_weight_decay(opt, bias) is False


def check_apply_weight_decay(tmp_path):
    # kerastl's per-variable-rate optimizers override it; Keras must still call it from apply.
    assert callable(_compat.resolve("Optimizer._apply_weight_decay"))
    calls = []

    class Spy(keras.optimizers.SGD):
        def _apply_weight_decay(self, variables):
            calls.append(len(variables))
            return super()._apply_weight_decay(variables)

    v = keras.Variable(np.ones((2,), "float32"))
    Spy(0.1, weight_decay=0.5).apply([tf.ones((2,))], [v])
    assert calls == [1]
    np.testing.assert_allclose(v.numpy(), [1 - 0.1 * 0.5 - 0.1] * 2, rtol=1e-6)


def check_distribution_strategy(tmp_path):
    opt = keras.optimizers.Adam()
    assert _compat.optimizer_distribution_strategy(opt) is tf.distribute.get_strategy()
    assert isinstance(_compat.optimizer_distribution_strategy(opt), tf.distribute.Strategy)


def check_maybe_merge_call(tmp_path):
    strategy = tf.distribute.get_strategy()
    seen = []

    def fn(distribution, values, scale=1):
        seen.append(distribution)
        return [x * scale for x in values]

    assert _compat.maybe_merge_call(fn, strategy, [1, 2], scale=3) == [3, 6]
    assert seen == [strategy]


def check_gradient_registry(tmp_path):
    registry = _compat.gradient_registry()
    assert isinstance(registry, dict)
    assert "MatMul" in registry  # TensorFlow's own gradients live there too

    @tf.custom_gradient
    def double(x):
        return 2.0 * x, lambda dy: 2.0 * dy

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = double(x)
        return tape.gradient(y, x)

    before = {k for k in registry if k.startswith("CustomGradient-")}
    assert float(step(tf.constant(1.0))) == 2.0
    after = {k for k in _compat.gradient_registry() if k.startswith("CustomGradient-")}
    assert len(after - before) == 1


def check_kt_config(tmp_path):
    previous = _compat.set_keras_tuner_debug(False)
    try:
        assert isinstance(previous, bool)
        from keras_tuner.src import config

        assert config.DEBUG is False
        assert _compat.set_keras_tuner_debug(True) is False
        assert config.DEBUG is True
    finally:
        _compat.set_keras_tuner_debug(previous)


def check_kt_distribute_utils(tmp_path):
    utils = _compat.kt_distribute_utils()
    env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("KERASTUNER_")}
    try:
        assert utils.has_chief_oracle() is False and utils.is_chief_oracle() is False
        os.environ.update(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT="1",
                          KERASTUNER_TUNER_ID="chief")
        assert utils.has_chief_oracle() is True and utils.is_chief_oracle() is True
        os.environ["KERASTUNER_TUNER_ID"] = "tuner0"
        assert utils.is_chief_oracle() is False
    finally:
        for k in [k for k in os.environ if k.startswith("KERASTUNER_")]:
            del os.environ[k]
        os.environ.update(env)


def check_kt_protos(tmp_path):
    service = _compat.kt_protos().get_service_grpc()
    assert callable(service.add_OracleServicer_to_server)


def check_kt_oracle_chief(tmp_path):
    chief = _compat.kt_oracle_chief()
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    servicer = chief.OracleServicer(oracle)
    assert servicer.stop_triggered is False
    assert callable(chief.exit_chief)


def check_populate_initial_space(tmp_path):
    base = _compat.resolve("BaseTuner._populate_initial_space")
    assert callable(base)
    assert _called_by(kt.Tuner.__mro__[1].__init__, "_populate_initial_space")
    tuner = _tuner(tmp_path)  # __init__ populated the space by building the hypermodel
    assert [hp.name for hp in tuner.oracle.get_space().space] == ["units"]


def check_run_and_update_trial(tmp_path):
    assert callable(_compat.resolve("BaseTuner._run_and_update_trial"))
    base = kt.Tuner.__mro__[1]
    assert _called_by(base._try_run_and_update_trial, "_run_and_update_trial")
    assert _called_by(base._run_and_update_trial, "run_trial")


def check_build_hypermodel(tmp_path):
    assert callable(_compat.resolve("Tuner._build_hypermodel"))
    assert _called_by(kt.Tuner._try_build, "_build_hypermodel")
    tuner = _tuner(tmp_path)
    hp = tuner.oracle.get_space()
    model = tuner._build_hypermodel(hp)
    assert isinstance(model, keras.Model) and model.layers[-1].units == 1


def check_is_worker(tmp_path):
    assert _compat.tuner_is_worker(_tuner(tmp_path)) is False


def check_tuner_fname(tmp_path):
    path = pathlib.Path(_compat.tuner_state_file(_tuner(tmp_path)))
    assert path == tmp_path / "p" / "tuner0.json"


def check_checkpoint_fname(tmp_path):
    path = pathlib.Path(_compat.tuner_checkpoint_file(_tuner(tmp_path), "07"))
    assert path.parent == tmp_path / "p" / "trial_07"
    assert path.name.endswith(".weights.h5")


def check_oracle_fname(tmp_path):
    tuner = _tuner(tmp_path)
    assert pathlib.Path(_compat.oracle_state_file(tuner.oracle)) == tmp_path / "p" / "oracle.json"


def check_trial_dir(tmp_path):
    tuner = _tuner(tmp_path)
    path = pathlib.Path(_compat.oracle_trial_dir(tuner.oracle, "03"))
    assert path == tmp_path / "p" / "trial_03" and path.is_dir()


def check_save_trial(tmp_path):
    # kerastl's oracles override it (atomic trial.json); the oracle must still call it.
    assert callable(_compat.resolve("Oracle._save_trial"))
    saved = []

    class Spy(kt.oracles.RandomSearchOracle):
        def _save_trial(self, trial):
            saved.append(trial.trial_id)
            return super()._save_trial(trial)

    oracle = Spy(objective="val_loss", max_trials=2)
    oracle._set_project_dir(str(tmp_path), "p")
    hp = oracle.get_space()
    hp.Int("units", 1, 2)
    oracle.update_space(hp)
    trial = oracle.create_trial("tuner0")
    assert saved == [trial.trial_id]
    assert (tmp_path / "p" / f"trial_{trial.trial_id}" / "trial.json").is_file()


def check_dataset_inputs(tmp_path):
    source = tf.data.Dataset.range(4)
    mapped = source.map(lambda x: x + 1)
    assert _compat.dataset_inputs(mapped) == [source]
    zipped = tf.data.Dataset.zip((source, mapped))
    assert _compat.dataset_inputs(zipped) == [source, mapped]
    assert _compat.dataset_inputs(source) == []
    assert _compat.dataset_inputs(object()) == []


def check_loss_tracker(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    tracker = _compat.model_loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss"
    model.fit(np.ones((4, 2), "float32"), np.zeros((4, 1), "float32"), verbose=0)
    assert float(tracker.result()) > 0  # what fit logs as "loss"
    with pytest.raises(_compat.PrivateAPIMissing, match="_loss_tracker"):
        _compat.model_loss_tracker(keras.Sequential([keras.Input((2,))]))


CHECKS = {
    "DatasetV2._inputs": check_dataset_inputs,
    "Layer._flatten_layers": check_flatten_layers,
    "Layer._trainable_variables": check_trainable_variables,
    "Trainer._loss_tracker": check_loss_tracker,
    "Optimizer._var_key": check_var_key,
    "Optimizer._trainable_variables_indices": check_trainable_variables_indices,
    "Optimizer._get_variable_index": check_get_variable_index,
    "Optimizer._get_current_learning_rate": check_current_learning_rate,
    "Optimizer._use_weight_decay": check_use_weight_decay,
    "Optimizer._apply_weight_decay": check_apply_weight_decay,
    "TFOptimizer._distribution_strategy": check_distribution_strategy,
    "tf.__internal__.distribute.interim.maybe_merge_call": check_maybe_merge_call,
    "tensorflow.python.framework.ops._gradient_registry._registry": check_gradient_registry,
    "keras_tuner.src.config": check_kt_config,
    "keras_tuner.src.distribute.utils": check_kt_distribute_utils,
    "keras_tuner.src.protos": check_kt_protos,
    "keras_tuner.src.distribute.oracle_chief": check_kt_oracle_chief,
    "BaseTuner._populate_initial_space": check_populate_initial_space,
    "BaseTuner._run_and_update_trial": check_run_and_update_trial,
    "Tuner._build_hypermodel": check_build_hypermodel,
    "BaseTuner._is_worker": check_is_worker,
    "BaseTuner._get_tuner_fname": check_tuner_fname,
    "Tuner._get_checkpoint_fname": check_checkpoint_fname,
    "Oracle._get_oracle_fname": check_oracle_fname,
    "Oracle._get_trial_dir": check_trial_dir,
    "Oracle._save_trial": check_save_trial,
}


@pytest.mark.parametrize("name", sorted(PRIVATE_SYMBOLS))
def test_private_symbol_is_where_kerastl_expects_it(name, tmp_path):
    symbol = PRIVATE_SYMBOLS[name]
    assert _compat.resolve(name) is not None
    if symbol.wrapper:
        assert callable(getattr(_compat, symbol.wrapper))
    assert name in CHECKS, f"{name} is in PRIVATE_SYMBOLS without a check here"
    CHECKS[name](tmp_path)


def test_every_check_names_a_listed_symbol():
    assert sorted(CHECKS) == sorted(PRIVATE_SYMBOLS)


def test_a_moved_symbol_fails_loudly_naming_it():
    class NoFlatten:
        pass

    with pytest.raises(_compat.PrivateAPIMissing,
                       match=r"keras\.layers\.Layer\._flatten_layers.*Keras 3\.15"):
        _compat.flatten_layers(NoFlatten())
    with pytest.raises(_compat.PrivateAPIMissing, match="_var_key"):
        _compat.optimizer_var_key(object(), None)


#: Private names that may appear in kerastl only inside _compat.py (overrides are ``def``s).
_PRIVATE_USE = re.compile(
    r"\._flatten_layers\b|\._trainable_variables\b|\._var_key\b|_trainable_variables_indices"
    r"|\._get_variable_index\b|\._get_current_learning_rate\b|\._use_weight_decay\b"
    r"|\._distribution_strategy\b|\._loss_tracker\b|__internal__|keras_tuner\.src"
    r"|tensorflow\.python"
    r"|\._is_worker\b|\._get_tuner_fname\b|\._get_checkpoint_fname\b|\._get_oracle_fname\b"
    r"|\._get_trial_dir\b|keras\.src\b|\._inputs\(")


def test_no_module_reaches_a_private_symbol_except_through_compat():
    root = pathlib.Path(_compat.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name in ("_compat.py", "_private_symbols.py"):  # the wrappers and their table
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if _PRIVATE_USE.search(code) and not code.lstrip().startswith(('"', "'")):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []
