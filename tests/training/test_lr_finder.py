import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl


def _toy(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=seed).batch(16)


def _dense_model():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_lr_find_restores_weights_and_suggests_a_finite_rate(tmp_path):
    model = _dense_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    result = ktl.lr_find(model, _toy(), loss="sparse_categorical_crossentropy",
                         start_lr=1e-5, end_lr=100.0, num_steps=80, plot=tmp_path / "lr.png")
    for a, b in zip(before, model.get_weights()):  # BatchNorm moving statistics too
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(3e-4)  # compiled one untouched
    assert np.isfinite(result.suggestion) and 1e-5 <= result.suggestion <= 100.0
    assert set(result.suggestions) == {"valley", "steepest", "minimum"}
    assert result.suggestion == result.suggestions["valley"]
    # the rate grows exponentially and the sweep stops once the loss diverges
    ratios = np.array(result.learning_rates[1:]) / np.array(result.learning_rates[:-1])
    np.testing.assert_allclose(ratios, (100.0 / 1e-5) ** (1 / 79), rtol=1e-6)
    assert len(result.losses) < 80
    assert min(result.smoothed) < result.smoothed[0]  # the loss did fall somewhere
    assert 1e-4 < result.suggestion < 10  # neither the crawl nor the blow-up region
    assert (tmp_path / "lr.png").stat().st_size > 5000 and result.plot == str(tmp_path / "lr.png")


def test_lr_find_on_a_kerastl_classifier_uses_default_loss():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    y = (np.arange(32) % 3).astype("int32")
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32),
                                 3)
    ktl.freeze(model)
    before = [w.copy() for w in model.get_weights()]
    result = ktl.lr_find(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
                         num_steps=12, end_lr=1.0)
    assert len(result.learning_rates) >= 5 and np.isfinite(result.suggestion)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_lr_find_errors():
    model = _dense_model()
    data = _toy()
    with pytest.raises(ValueError, match="end_lr must be a finite number > 1e-05"):
        ktl.lr_find(model, data, loss="sparse_categorical_crossentropy", start_lr=1e-5,
                    end_lr=1e-6)
    with pytest.raises(ValueError, match="num_steps must be an int >= 5"):
        ktl.lr_find(model, data, loss="sparse_categorical_crossentropy", num_steps=2)
    with pytest.raises(ValueError, match="Unknown method 'best'"):
        ktl.lr_find(model, data, loss="sparse_categorical_crossentropy", method="best")
    model.trainable = False
    with pytest.raises(ValueError, match="has no trainable weights"):
        ktl.lr_find(model, data, loss="sparse_categorical_crossentropy")
