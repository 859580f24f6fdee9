"""Micro-batching (kerastl.training.micro_batch): the same step in pieces, and its options."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import build_parser, main
from kerastl.config import DEFAULTS, FineTuneConfig
from kerastl.training.distributed import StrategyTrainer
from kerastl.training.micro_batch import (
    AUTO_BUDGET_BYTES,
    activation_bytes_per_example,
    micro_batching,
    resolve_micro_batch_size,
)


def _images(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    return x, (np.arange(n) % 3).astype("int32")


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    return ktl.build_classifier(backbone, 3, dropout=0.0)


def _tiny(seed=0):
    """Conv, frozen BatchNorm, an L2-regularised head: 16 px, dropout-free."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3)(inputs / 255.0)
    h = keras.layers.BatchNormalization(trainable=False)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, activation="softmax",
                                 kernel_regularizer=keras.regularizers.L2(1e-2))(h)
    return keras.Model(inputs, outputs)


def _max_difference(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b, strict=True))


@pytest.mark.slow
def test_a_phase2_step_in_pieces_is_the_same_update():
    batch, micro = 20, 6  # pieces of 6, 6, 6 and 2
    x, y = _images(batch)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    start = _classifier().get_weights()
    results = {}
    for size in (None, micro):
        model = _classifier()
        model.set_weights(start)
        result = ktl.fine_tune(model, train, head_epochs=0, epochs=1, micro_batch_size=size,
                               schedule="constant", patience=None, cache_features=False,
                               optimizer="sgd", fine_tune_learning_rate=0.5, l2=1e-3,
                               class_weight={0: 1.0, 1: 2.0, 2: 0.5}, verbose=0)
        assert model.optimizer.iterations.numpy() == 1  # one step per batch either way
        assert "train_step" not in vars(model)  # the step is the model's own again
        results[size] = (model.get_weights(), result.history)
    # SGD: the update is the gradient (Adam's first step is ~lr x sign(gradient) whatever it is)
    assert _max_difference(results[None][0], start) > 1e-2
    assert _max_difference(results[None][0], results[micro][0]) < 1e-5
    for key in ("loss", "accuracy"):
        assert results[micro][1][key] == pytest.approx(results[None][1][key], rel=1e-5)


def test_the_custom_loop_step_in_pieces_is_the_same_update():
    x, y = _images(20, size=16)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
    weights, logs = {}, {}
    for size in (None, 8):
        model = _tiny()
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        trainer = StrategyTrainer(model, tf.distribute.get_strategy(),
                                  loss=keras.losses.SparseCategoricalCrossentropy(),
                                  metrics=[keras.metrics.SparseCategoricalAccuracy()],
                                  class_weight={0: 1.0, 1: 2.0, 2: 0.5}, micro_batch_size=size)
        logs[size] = trainer.fit(train, epochs=2)
        weights[size] = model.get_weights()
    assert _max_difference(weights[None], _tiny().get_weights()) > 1e-3
    assert _max_difference(weights[None], weights[8]) < 1e-5
    for key in ("loss", "sparse_categorical_accuracy"):
        assert logs[8][key] == pytest.approx(logs[None][key], rel=1e-5)


@pytest.mark.parametrize(("batch", "micro"), [(32, 8), (12, 5)])  # 5: pieces 5, 5, 2
def test_the_keras_step_in_pieces_is_the_same_update(batch, micro):
    x, y = _images(batch, size=16)
    w = np.linspace(0.5, 2.0, batch).astype("float32")
    results = {}
    for size in (None, micro):
        model = _tiny()
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        with micro_batching(model, size):
            history = model.fit(x, y, sample_weight=w, batch_size=batch, epochs=2, verbose=0,
                                shuffle=False).history
        assert "train_step" not in vars(model) and model.optimizer.iterations.numpy() == 2
        results[size] = (model.get_weights(), history)
    assert _max_difference(results[None][0], _tiny().get_weights()) > 1e-3
    assert _max_difference(results[None][0], results[micro][0]) < 1e-5
    for key in ("loss", "accuracy"):
        assert results[micro][1][key] == pytest.approx(results[None][1][key], rel=1e-5)


def test_auto_size_comes_from_the_activation_estimate():
    small = _classifier()
    ktl.unfreeze(small)
    assert resolve_micro_batch_size("auto", small, 32) is None  # 32 px: whole batches fit
    assert resolve_micro_batch_size(None, small, 32) is None
    assert resolve_micro_batch_size(0, small, 32) is None
    assert resolve_micro_batch_size(8, small, 32) == 8
    assert resolve_micro_batch_size(64, small, 32) is None  # a piece as large as the batch
    per_example = activation_bytes_per_example(small)
    assert 0 < per_example < AUTO_BUDGET_BYTES // 32
    large = ktl.build_classifier(ktl.build_backbone("efficientnet_lite0", weights=None,
                                                    image_size=224), 10)
    ktl.unfreeze(large)
    assert resolve_micro_batch_size("auto", large, 32) == 8  # the 2 GB target at 224 px
    assert resolve_micro_batch_size("auto", large, 12) == 6  # evened out: 6 + 6, not 8 + 4
    ktl.unfreeze(large, train_bn=True)
    assert resolve_micro_batch_size("auto", large, 32) is None  # batch statistics: off
    with pytest.raises(ValueError, match="exact only while BatchNorm is frozen"):
        resolve_micro_batch_size(8, large, 32)


@pytest.mark.parametrize("value", [-1, 1.5, "big", True, "8"])
def test_a_bad_micro_batch_size_is_one_clear_error(value):
    message = r"micro_batch_size must be 'auto', an int >= 1 .* Received: micro_batch_size="
    with pytest.raises(ValueError, match=message):
        FineTuneConfig(micro_batch_size=value)
    x, y = _images(4)
    with pytest.raises(ValueError, match=message):
        ktl.fine_tune(_classifier(), tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
                      micro_batch_size=value, verbose=0)


def test_a_size_with_batchnorm_training_is_refused_up_front():
    with pytest.raises(ValueError, match="exact only while BatchNorm is frozen"):
        FineTuneConfig(micro_batch_size=8, unfreeze={"train_bn": True})
    assert FineTuneConfig(unfreeze={"train_bn": True}).micro_batch_size == "auto"
    assert FineTuneConfig(micro_batch_size=0).micro_batch_size == 0


def test_cli_flag(capsys, tmp_path):
    args = build_parser().parse_args(["train", "data"])
    assert args.micro_batch_size == DEFAULTS.micro_batch_size == "auto"
    from kerastl.cli.train import config_from_args, micro_batch_option

    assert config_from_args(args).micro_batch_size == "auto"
    assert [micro_batch_option(v) for v in ("auto", "none", "OFF", "0", "8")] == [
        "auto", None, None, 0, 8]
    assert main(["train", str(tmp_path), "--micro-batch-size", "lots"]) == 2
    err = capsys.readouterr().err
    assert "micro_batch_size must be 'auto', an int >= 1" in err and "'lots'" in err
    assert main(["train", str(tmp_path), "--micro-batch-size", "4", "--train-bn"]) == 2
    assert "exact only while BatchNorm is frozen" in capsys.readouterr().err
