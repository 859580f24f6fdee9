import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.transfer.adabn import batchnorm_layers


def _toy(n, seed, shift=False):
    """Two classes of 8x8 one-channel images: bright top half vs bright bottom half.

    The shifted domain has a fifth of the contrast and a brightness offset, the kind of
    shift a new camera brings: labels depend on the same pattern.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0, 1, (n, 8, 8, 1))
    x[y == 0, :4] += 1.5
    x[y == 1, 4:] += 1.5
    if shift:
        x = 0.2 * x + 3.0
    return x.astype("float32"), y


def _model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _accuracy(model, x, y):
    return float((model.predict(x, verbose=0).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = _toy(400, seed=0)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model


def test_adabn_recovers_accuracy_under_shift_and_changes_only_bn_statistics(trained):
    model = keras.models.clone_model(trained)
    model.set_weights(trained.get_weights())
    x_src, y_src = _toy(200, seed=1)
    x_tgt, y_tgt = _toy(200, seed=2, shift=True)
    source_acc = _accuracy(model, x_src, y_src)
    before = _accuracy(model, x_tgt, y_tgt)
    assert source_acc > 0.9
    assert before < source_acc - 0.2  # the shift hurts
    old = {v.path: np.array(v) for v in model.weights}

    result = ktl.adapt_batchnorm(model, x_tgt, batch_size=50)  # no labels
    assert result is model
    after = _accuracy(model, x_tgt, y_tgt)
    assert after > before + 0.2 and after > 0.85

    changed = {p for p, v in old.items() if not np.array_equal(v, np.array(
        next(w for w in model.weights if w.path == p)))}
    bn = batchnorm_layers(model)[0]
    assert changed == {bn.moving_mean.path, bn.moving_variance.path}
    # the new statistics are the target's: mean/variance of the BN inputs over all images
    conv_out = np.asarray(model.layers[1](x_tgt)).reshape(-1, 4)
    np.testing.assert_allclose(np.array(bn.moving_mean), conv_out.mean(0), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(np.array(bn.moving_variance), conv_out.var(0), rtol=1e-3)


def test_nested_backbone_and_dataset_with_labels(colour_images):
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    model = ktl.build_classifier(backbone, 3)
    x, y = colour_images
    bns = batchnorm_layers(model)
    assert len(bns) == len(batchnorm_layers(backbone)) > 10
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(12)
    old_gamma = np.array(bns[5].gamma)
    old_mean = np.array(bns[5].moving_mean)
    ktl.adapt_batchnorm(model, dataset, max_batches=1)
    assert not np.array_equal(np.array(bns[5].moving_mean), old_mean)
    np.testing.assert_array_equal(np.array(bns[5].gamma), old_gamma)
    # BN layers behave normally again afterwards (their class's call)
    assert "call" not in vars(bns[5])
    out1, out2 = model(x[:4], training=False), model(x[:4], training=False)
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))


def test_errors():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no BatchNormalization layer"):
        ktl.adapt_batchnorm(plain, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="non-empty array"):
        ktl.adapt_batchnorm(_model(), np.zeros((0, 8, 8, 1)))
    with pytest.raises(ValueError, match="empty"):
        ktl.adapt_batchnorm(_model(), tf.data.Dataset.from_tensor_slices(
            np.zeros((0, 8, 8, 1), "float32")).batch(4))
