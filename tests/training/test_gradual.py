import math

import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.training.gradual import GradualUnfreezing, prebuild_optimizer


def _setup():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 3
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32),
                                 3)
    return model, x, y


def _trainable_params(model):
    return sum(r["trainable_params"] for r in ktl.trainable_report(model))


def test_one_more_group_every_k_epochs():
    model, x, y = _setup()
    groups = ktl.backbone_spec("mobilenet_v2").groups
    stem_before = np.array(model.layers[1].get_layer("Conv1").kernel.numpy())
    ktl.freeze(model)
    opt = prebuild_optimizer(keras.optimizers.Adam(1e-3), model)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    counts = []

    class Count(keras.callbacks.Callback):  # runs after GradualUnfreezing in the list
        def on_epoch_begin(self, epoch, logs=None):
            counts.append(sum(math.prod(v.shape) for v in self.model.trainable_weights))

    gradual = GradualUnfreezing(every=2, start_groups=1, max_groups=3)
    model.fit(x, y, batch_size=8, epochs=7, verbose=0, callbacks=[gradual, Count()])
    assert [e["epoch"] for e in gradual.events] == [0, 2, 4]
    assert [e["groups"] for e in gradual.events] == [1, 2, 3]
    # trainable counts change exactly at epochs 0, 2, 4 and match freezing's own report
    assert counts[0] == counts[1] < counts[2] == counts[3] < counts[4] == counts[5] == counts[6]
    assert [e["trainable_params"] for e in gradual.events] == [counts[0], counts[2], counts[4]]
    assert counts[-1] == _trainable_params(model)
    rows = {r["group"]: r for r in ktl.trainable_report(model)}
    top3 = groups[-3:]
    assert all(rows[g]["trainable_params"] > 0 for g in top3)
    assert all(rows[g]["trainable_params"] == 0 for g in groups[:-3])
    assert all(r["frozen_bn"] for r in rows.values())  # BatchNorm stays in inference mode
    # the third group from the top was trained after it was unfrozen; the stem never was
    third = model.layers[1].get_layer("block_15_project")  # MobileNetV2 stage6
    assert third.trainable
    np.testing.assert_array_equal(stem_before, model.layers[1].get_layer("Conv1").kernel.numpy())


def test_fresh_optimizer_is_built_for_all_groups_but_a_used_one_is_refused():
    model, x, y = _setup()
    ktl.freeze(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    gradual = GradualUnfreezing(every=1)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[gradual])
    assert [e["groups"] for e in gradual.events] == [1, 2]
    ktl.freeze(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # builds it for the head only
    with pytest.raises(ValueError, match="already built for fewer variables"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradualUnfreezing(every=1)])


def test_bad_arguments():
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        GradualUnfreezing(every=0)
    with pytest.raises(ValueError, match="max_groups must be an int >= start_groups"):
        GradualUnfreezing(start_groups=3, max_groups=2)


def test_fine_tune_options_schedule_layerwise_decay_and_gradual_unfreezing():
    import tensorflow as tf

    model, x, y = _setup()
    train = tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(8)  # 2 steps/epoch
    result = ktl.fine_tune(model, train, train, head_epochs=2, epochs=3, schedule="onecycle",
                           warmup=0.25, layerwise_lr_decay=0.5, gradual_unfreeze_every=1,
                           unfreeze={"groups": 2}, cache_features=False, patience=None,
                           verbose=0)
    lr = result.history["learning_rate"]
    # one-cycle per phase: after the last step of each phase the rate is near its floor
    assert lr[1] == pytest.approx(1e-3 / 25 / 1e4, rel=1e-3)
    assert lr[4] == pytest.approx(1e-4 / 25 / 1e4, rel=1e-3)
    assert lr[0] > lr[1] and lr[2] > lr[3] > lr[4]
    assert type(result.model.optimizer).__name__ == "DiscriminativeAdam"
    groups = ktl.backbone_spec("mobilenet_v2").groups
    rows = {r["group"]: r["trainable_params"] for r in ktl.trainable_report(result.model)}
    assert rows[groups[-1]] > 0 and rows[groups[-2]] > 0 and rows[groups[-3]] == 0
    with pytest.raises(ValueError, match="Unknown schedule 'step'"):
        ktl.fine_tune(model, train, schedule="step")
    with pytest.raises(ValueError, match="layerwise_lr_decay must be a number in"):
        ktl.fine_tune(model, train, layerwise_lr_decay=2)
    with pytest.raises(ValueError, match="cannot be combined with backup_dir"):
        ktl.fine_tune(model, train, gradual_unfreeze_every=1, backup_dir="x")
