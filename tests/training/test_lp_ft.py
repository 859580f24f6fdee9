"""LP-FT: fine_tune(head_init="linear_probe") starts the head from a fitted logistic regression."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.errors import UserInputError
from kerastl.freezing import find_backbone

pytest.importorskip("sklearn")


def _data(n=30, size=32):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    palette = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], "float32")
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 60, (n, size, size, 3)), 0, 255)
    return x.astype("float32"), y.astype("int32")


def _model(**kwargs):
    backbone = ktl.build_backbone("mobilenet_v3_small", weights=None, image_size=32)
    return ktl.build_classifier(backbone, 3, **kwargs)


def test_linear_probe_head_predicts_the_logistic_regressions_probabilities():
    x, y = _data()
    train = tf.data.Dataset.from_tensor_slices((x[:24], y[:24])).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[24:], y[24:])).batch(8)
    model = _model()
    result = ktl.fine_tune(model, train, val, head_init="linear_probe", epochs=0, verbose=0)
    probe = result.linear_head  # scaler + LogisticRegressionCV (C chosen by CV)
    assert type(probe.steps[-1][1]).__name__ == "LogisticRegressionCV"
    features, _ = ktl.extract_features(find_backbone(model)[0], (x, y))
    expected = probe.predict_proba(features)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4)
    # One phase-1 row: the probe's own scores, which the best-weights restore kept.
    assert result.history["phase"] == [1] and result.cached_features
    val_accuracy = np.mean(probe.predict(features[24:]) == y[24:])
    assert result.history["val_accuracy"] == [pytest.approx(val_accuracy)]
    assert result.best_val_metrics["val_loss"] == result.history["val_loss"][0]


def test_linear_probe_then_phase_2_trains_on_from_the_probe():
    x, y = _data()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    model = _model()
    result = ktl.fine_tune(model, train, head_init="linear_probe", head_epochs=0, epochs=1,
                           verbose=0, patience=None)
    assert result.history["phase"] == [1, 2] and result.history["epoch"] == [1, 2]
    assert any(w.trainable for w in find_backbone(model)[0].weights)  # phase 2 unfroze


class _ZeroHeadAtPhase2(keras.callbacks.Callback):
    """Phase 2 (the only fit of an LP-FT run) starts from an all-zero head: it must end worse."""

    def on_train_begin(self, logs=None):
        dense = self.model.get_layer("predictions")
        dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])


def test_with_phase_2_the_result_is_fine_tuned_even_when_the_probe_scored_better():
    # LP-FT is fine-tuning from the probe: the probe's own row does not compete for
    # the best epoch (it would otherwise be restored whenever phase 2's validation
    # loss, which fine-tuning lowers later than its error, is not below it yet).
    x, y = _data()
    train = tf.data.Dataset.from_tensor_slices((x[:24], y[:24])).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[24:], y[24:])).batch(8)
    model = _model()
    result = ktl.fine_tune(model, train, val, head_init="linear_probe", epochs=1, verbose=0,
                           patience=None, callbacks=[_ZeroHeadAtPhase2()])
    probe_loss, tuned_loss = result.history["val_loss"]
    assert tuned_loss > probe_loss  # the probe scored better ...
    assert result.best_val_metrics["phase"] == 2  # ... and the result is still phase 2's
    assert result.best_val_metrics["val_loss"] == tuned_loss
    features, _ = ktl.extract_features(find_backbone(model)[0], (x[24:], y[24:]))
    probe = result.linear_head.predict_proba(features)
    assert np.abs(model.predict(x[24:], verbose=0) - probe).max() > 1e-2


def test_linear_probe_needs_a_single_linear_head():
    x, y = _data(n=12)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    with pytest.raises(UserInputError, match="reads the backbone's pooled features directly"):
        ktl.fine_tune(_model(hidden_units=(8,)), train, head_init="linear_probe", epochs=0,
                      verbose=0)
    with pytest.raises(UserInputError, match="head_init must be one of random, linear_probe"):
        ktl.fine_tune(_model(), train, head_init="lp", verbose=0)
    with pytest.raises(UserInputError, match="head_init must be one of"):
        ktl.FineTuneConfig(head_init="probe")
    assert ktl.FineTuneConfig(head_init="linear_probe", head_epochs=0, epochs=0).head_init


def test_suggest_linear_probe_only_for_few_images_per_class_of_a_softmax_head():
    from kerastl.training.lp_ft import FEW_PER_CLASS, suggest_linear_probe

    model = _model()
    backbone = find_backbone(model)[0]
    few = np.arange(3 * FEW_PER_CLASS) % 3  # 30 per class
    assert suggest_linear_probe(model, backbone, few, epochs=2)
    assert suggest_linear_probe(model, backbone, np.eye(3)[few], epochs=2)  # one-hot
    assert not suggest_linear_probe(model, backbone, np.arange(3 * FEW_PER_CLASS + 1) % 3, 2)
    assert not suggest_linear_probe(model, backbone, few, epochs=0)  # no phase 2 to start
    assert not suggest_linear_probe(model, backbone, few.astype("float32"), 2)  # regression
    hidden = _model(hidden_units=(8,))
    assert not suggest_linear_probe(hidden, find_backbone(hidden)[0], few, 2)

