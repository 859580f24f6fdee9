import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.transfer import linear_head_model
from kerastl.transfer.linear import DEFAULT_C_GRID


@pytest.mark.parametrize("kind", ["logistic", "linear_svm", "ridge"])
@pytest.mark.parametrize("standardize", [True, False])
def test_dense_layer_predicts_exactly_what_sklearn_predicts(kind, standardize, blobs):
    x, y = blobs()
    x_test, _ = blobs(n=500, seed=1)
    head = ktl.fit_linear_head(x, y, kind=kind, C=0.5, standardize=standardize)
    assert head.kind == kind and head.C == 0.5 and head.num_classes == 5
    keras_probs = np.asarray(head.to_keras()(x_test))
    sk_pred = head.estimator.predict(x_test)
    np.testing.assert_array_equal(keras_probs.argmax(1), sk_pred)
    np.testing.assert_allclose(keras_probs.sum(1), 1.0, rtol=1e-5)
    if kind == "logistic":
        np.testing.assert_allclose(keras_probs, head.estimator.predict_proba(x_test),
                                   atol=1e-5)
    else:  # softmax of the decision function, scaler folded into the weights
        decision = head.estimator.decision_function(x_test)
        np.testing.assert_allclose(head.logits(x_test), decision, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["logistic", "linear_svm", "ridge"])
def test_binary_head_has_two_outputs(kind, blobs):
    x, y = blobs(n=200, classes=2)
    head = ktl.fit_linear_head(x, y, kind=kind, C=1.0)
    probs = np.asarray(head.to_keras()(x))
    assert probs.shape == (200, 2)
    np.testing.assert_array_equal(probs.argmax(1), head.predict(x))
    if kind == "logistic":
        np.testing.assert_allclose(probs, head.estimator.predict_proba(x), atol=1e-5)


def test_cross_validated_C_is_the_best_of_the_grid(blobs):
    x, y = blobs(n=150, dim=40, spread=0.6)
    head = ktl.fit_linear_head(x, y)
    assert set(head.cv_scores) == set(DEFAULT_C_GRID)
    assert head.C == max(head.cv_scores, key=head.cv_scores.get)
    assert all(0.0 <= s <= 1.0 for s in head.cv_scores.values())
    assert ktl.fit_linear_head(x, y, C=0.1).cv_scores == {}


def test_missing_class_is_never_predicted_and_one_hot_labels_work(blobs):
    x, y = blobs(n=120, classes=3)
    y = np.where(y == 1, 3, y)  # classes 0, 2, 3; class 1 absent
    one_hot = np.eye(4)[y]
    head = ktl.fit_linear_head(x, one_hot, C=1.0)
    probs = np.asarray(head.to_keras()(x))
    assert probs.shape == (120, 4)
    assert probs[:, 1].max() < 1e-6
    np.testing.assert_array_equal(probs.argmax(1), head.predict(x))


def test_class_weight_balanced_changes_the_fit(blobs):
    x, y = blobs(n=220, classes=2, spread=0.4)
    keep = (y == 0) | (np.arange(220) % 10 == 1)  # class 1 rare
    plain = ktl.fit_linear_head(x[keep], y[keep], C=1.0)
    balanced = ktl.fit_linear_head(x[keep], y[keep], C=1.0, class_weight="balanced")
    assert (balanced.predict(x) == 1).sum() > (plain.predict(x) == 1).sum()


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "svm"}, "Unknown kind 'svm'"),
    ({"C": -1.0}, "C must be a positive number"),
    ({"C_grid": ()}, "C must be a positive number"),
    ({"cv": 1}, "cv must be an int >= 2"),
    ({"num_classes": 3}, "num_classes=3 but a label is 4"),
])
def test_bad_arguments(kwargs, message, blobs):
    x, y = blobs(n=50)
    with pytest.raises(ValueError, match=message):
        ktl.fit_linear_head(x, y, **kwargs)


def test_bad_data(blobs):
    x, y = blobs(n=50)
    with pytest.raises(ValueError, match="one label per row"):
        ktl.fit_linear_head(x, y[:10])
    with pytest.raises(ValueError, match="at least 2 classes"):
        ktl.fit_linear_head(x, np.zeros(50, int))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ktl.fit_linear_head(np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match="integer class indices"):
        ktl.fit_linear_head(x, y + 0.5)


def test_model_on_backbone_matches_sklearn_on_its_features(backbone, colour_images):
    x, y = colour_images
    features, labels = ktl.extract_features(backbone, (x, y), verbose=0)
    head = ktl.fit_linear_head(features, labels, C=1.0)
    model = linear_head_model(backbone, head)
    assert model.input.name == "image" or model.inputs[0].name == "image"
    assert model.get_layer("predictions").activation.__name__ == "softmax"
    probs = model.predict(x, verbose=0)
    np.testing.assert_array_equal(probs.argmax(1), head.predict(features))
    np.testing.assert_allclose(probs, head.estimator.predict_proba(features), atol=1e-5)
    # the backbone inside is the one kerastl's freezing knows
    assert ktl.trainable_report(model)[-1]["group"] == "head"


def test_head_of_another_size_is_refused(backbone, blobs):
    head = ktl.fit_linear_head(*blobs(n=60, dim=8), C=1.0)
    with pytest.raises(ValueError, match="fitted on 8-D features but backbone"):
        linear_head_model(backbone, head)


@pytest.mark.slow
def test_linear_model_saves_and_exports_like_any_classifier(tmp_path, backbone, colour_images):
    import keras

    x, y = colour_images
    features, labels = ktl.extract_features(backbone, (x, y), verbose=0)
    head = ktl.fit_linear_head(features, labels, C=1.0)
    model = linear_head_model(backbone, head)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=1e-6)
    path = ktl.export_saved_model(model, tmp_path / "SavedModels", name="linear",
                                  class_names=["red", "green", "blue"], warmup=False)
    served = tf.saved_model.load(str(path)).signatures["predict_images"](
        images=tf.constant(x[:8]))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected[:8], atol=1e-5)
    np.testing.assert_array_equal(served["classes"].numpy(), head.predict(features[:8]))
