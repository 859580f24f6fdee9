"""The strategy.run loop (kerastl.training.distributed.StrategyTrainer) takes what
``model.compile`` takes: loss names and callables, and ``"accuracy"`` meaning what
Keras makes of it for the loss and the output (sparse, binary or categorical)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastl.errors import UserInputError
from kerastl.training.distributed import StrategyTrainer


def _tiny(units: int, activation: str, seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(h))


def _data(kind: str, n: int = 24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = (np.arange(n) % 3).astype("int32")
    if kind == "sparse":
        return x, labels
    if kind == "categorical":
        return x, np.eye(3, dtype="float32")[labels]
    return x, (labels == 0).astype("float32")[:, None]  # binary


CASES = [  # (labels, output units, activation, loss as the user writes it)
    ("sparse", 3, "softmax", "sparse_categorical_crossentropy"),
    ("sparse", 3, "softmax", keras.losses.sparse_categorical_crossentropy),
    ("categorical", 3, "softmax", "categorical_crossentropy"),
    ("binary", 1, "sigmoid", "binary_crossentropy"),
]


@pytest.mark.parametrize(("kind", "units", "activation", "loss"), CASES,
                         ids=["sparse-name", "sparse-callable", "categorical-name", "binary-name"])
def test_loss_names_and_accuracy_match_keras_fit(kind, units, activation, loss):
    x, y = _data(kind)
    results = {}
    for loop in ("keras", "strategy"):
        model = _tiny(units, activation)
        model.compile(optimizer=keras.optimizers.SGD(0.3), loss=loss, metrics=["accuracy"])
        if loop == "keras":
            history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history
            logs = {k: v[-1] for k, v in history.items()}
        else:
            train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
            history = StrategyTrainer(model, tf.distribute.get_strategy(), loss=loss,
                                      metrics=["accuracy"]).fit(train, epochs=3)
            logs = {k: v[-1] for k, v in history.items()}
        results[loop] = (model.get_weights(), logs)
    keras_weights, keras_logs = results["keras"]
    loop_weights, loop_logs = results["strategy"]
    for a, b in zip(keras_weights, loop_weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert loop_logs["loss"] == pytest.approx(keras_logs["loss"], rel=1e-4)
    # the last epoch's accuracy: a fraction of 24 examples, exactly Keras's
    assert loop_logs["accuracy"] == pytest.approx(keras_logs["accuracy"], abs=1e-6)
    assert 0.0 < loop_logs["accuracy"] <= 1.0


def test_an_unknown_loss_name_is_one_clear_error():
    model = _tiny(3, "softmax")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises((UserInputError, ValueError), match="no_such_loss"):
        StrategyTrainer(model, tf.distribute.get_strategy(), loss="no_such_loss")
