import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.transfer.cross_validation import stratified_folds


def test_stratified_folds_spread_every_class_evenly():
    y = np.repeat([0, 1, 2], [10, 7, 5])
    folds = stratified_folds(y, 5, seed=0)
    for cls in range(3):
        counts = np.bincount(folds[y == cls], minlength=5)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(folds)
    assert sizes.sum() == 22 and sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(folds, stratified_folds(y, 5, seed=0))
    assert not np.array_equal(folds, stratified_folds(y, 5, seed=1))


def _dense():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                  name="predictions")(inputs))


def test_cross_validate_with_fit_fn_reports_every_fold(blobs):
    x, y = blobs(n=60, classes=3, dim=4, spread=4.0)
    seen = []

    def fit(model, train, val):
        seen.append((sum(int(b[1].shape[0]) for b in train),
                     sum(int(b[1].shape[0]) for b in val)))
        model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy")
        model.fit(train, epochs=20, verbose=0, shuffle=False)
        return model

    result = ktl.cross_validate(_dense, (x, y), k=3, fit_fn=fit, batch_size=16)
    assert seen == [(40, 20)] * 3
    assert [f["fold"] for f in result.folds] == [0, 1, 2]
    assert all(f["test_examples"] == 20 and f["train_examples"] == 40 for f in result.folds)
    accs = [f["accuracy"] for f in result.folds]
    assert result.mean["accuracy"] == pytest.approx(np.mean(accs))
    assert result.std["accuracy"] == pytest.approx(np.std(accs, ddof=1))
    assert result.mean["accuracy"] > 0.8
    assert set(result.mean) == {"accuracy", "macro_f1"}
    assert "accuracy" in result.summary() and "±" in result.summary()


def test_untrained_model_scores_like_chance(blobs):
    x, y = blobs(n=60, classes=3, dim=4, spread=4.0)
    result = ktl.cross_validate(_dense, (x, y), k=2, fit_fn=lambda m, t, v: m)
    assert len(result.folds) == 2
    assert 0.0 <= result.mean["accuracy"] <= 1.0


@pytest.mark.slow
def test_default_fit_is_fine_tune(colour_images):
    x, y = colour_images

    def build():
        return ktl.build_classifier(
            ktl.build_backbone("mobilenet_v2", weights=None, image_size=32), 3)

    result = ktl.cross_validate(build, (x, y), k=2, head_epochs=2, epochs=0,
                                learning_rate=0.05, batch_size=8)
    assert [f["test_examples"] for f in result.folds] == [12, 12]
    assert all(0.0 <= f["accuracy"] <= 1.0 for f in result.folds)


def test_errors(blobs):
    x, y = blobs(n=12, classes=3, dim=4)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        ktl.cross_validate(_dense, (x, y), k=1)
    with pytest.raises(ValueError, match="smallest class has 4"):
        ktl.cross_validate(_dense, (x, y), k=5)
    with pytest.raises(ValueError, match="either fit_fn or fine_tune options"):
        ktl.cross_validate(_dense, (x, y), k=2, fit_fn=lambda m, t, v: m, epochs=3)
    with pytest.raises(ValueError, match="equally long"):
        ktl.cross_validate(_dense, (x, y[:5]), k=2)
    with pytest.raises(ValueError, match="must return a keras.Model"):
        ktl.cross_validate(lambda: "model", (x, y), k=2, fit_fn=lambda m, t, v: m)
