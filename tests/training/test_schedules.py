import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kerastl.training.schedules import (
    OneCycle,
    WarmupCosine,
    current_rate,
    make_schedule,
    warmup_cosine,
)


def _values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_one_cycle_rises_to_peak_then_anneals():
    s = OneCycle(1e-2, total_steps=100, pct_start=0.25, div_factor=25, final_div_factor=1e4)
    v = _values(s, [0, 12, 25, 60, 100, 150])
    assert v[0] == pytest.approx(1e-2 / 25, rel=1e-5)
    assert v[0] < v[1] < v[2]
    assert v[2] == pytest.approx(1e-2, rel=1e-5)  # peak at the end of the warm-up
    assert v[2] > v[3] > v[4]
    assert v[4] == pytest.approx(1e-2 / 25 / 1e4, rel=1e-4)
    assert v[5] == pytest.approx(v[4], rel=1e-6)  # stays at the final rate afterwards


def test_warmup_cosine_shape():
    s = WarmupCosine(1e-3, total_steps=110, warmup_steps=10, min_ratio=0.1)
    v = _values(s, [0, 9, 10, 60, 110])
    assert v[0] == pytest.approx(1e-3 / 11, rel=1e-5)
    assert v[1] == pytest.approx(1e-3 * 10 / 11, rel=1e-5)
    assert v[2] == pytest.approx(1e-3, rel=1e-5)
    assert v[3] == pytest.approx(1e-4 + 0.9e-3 * 0.5, rel=1e-5)  # halfway: cos = 0
    assert v[4] == pytest.approx(1e-4, rel=1e-5)


def test_make_schedule_names_and_errors():
    assert make_schedule("constant", 3e-4) == pytest.approx(3e-4)
    assert isinstance(make_schedule("one_cycle", 1e-3, total_steps=10), OneCycle)
    cos = make_schedule("cosine", 1e-3, total_steps=100, warmup=0.2)
    assert type(cos) is keras.optimizers.schedules.CosineDecay  # Keras's own, nothing of ours
    assert (cos.warmup_steps, cos.warmup_target, cos.decay_steps) == (20, 1e-3, 80)
    assert cos.initial_learning_rate == pytest.approx(1e-3 / 21)
    with pytest.raises(ValueError, match="Unknown schedule 'linear'. Known: constant"):
        make_schedule("linear", 1e-3, total_steps=10)
    with pytest.raises(ValueError, match="needs total_steps"):
        make_schedule("onecycle", 1e-3)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        make_schedule("constant", -1.0)
    with pytest.raises(ValueError, match=r"warmup_steps must be an int in \[0, total_steps=5\)"):
        WarmupCosine(1e-3, total_steps=5, warmup_steps=5)
    with pytest.raises(ValueError, match=r"warmup_steps must be an int in \[0, total_steps=5\)"):
        warmup_cosine(1e-3, total_steps=5, warmup_steps=-1)
    with pytest.raises(ValueError, match=r"min_ratio must be in \[0, 1\)"):
        warmup_cosine(1e-3, total_steps=5, min_ratio=1.0)


def test_schedules_serialise_and_drive_an_optimizer():
    for schedule in (OneCycle(1e-2, 40), WarmupCosine(1e-2, 40, warmup_steps=4),
                     warmup_cosine(1e-2, 40, warmup_steps=4)):
        config = keras.saving.serialize_keras_object(schedule)
        clone = keras.saving.deserialize_keras_object(config)
        np.testing.assert_allclose(_values(clone, range(0, 45, 5)),
                                   _values(schedule, range(0, 45, 5)), rtol=1e-6)
        opt = keras.optimizers.SGD(schedule)
        var = keras.Variable(np.ones(3, "float32"))
        for _ in range(7):
            opt.apply([np.ones(3, "float32")], [var])
        assert current_rate(opt) == pytest.approx(float(schedule(7)), rel=1e-5)


def _hand_written(base_lr, total_steps, warmup_steps, min_ratio, steps):
    """The float32 formula kerastl's own WarmupCosine computed before it became CosineDecay."""
    step = ops.cast(steps, "float32")
    low = base_lr * min_ratio
    progress = ops.clip((step - warmup_steps) / (total_steps - warmup_steps), 0.0, 1.0)
    cosine = low + (base_lr - low) * (1 + ops.cos(math.pi * progress)) / 2
    if warmup_steps:
        cosine = ops.where(step < warmup_steps, base_lr * (step + 1) / (warmup_steps + 1), cosine)
    return ops.convert_to_numpy(cosine).astype("float64")


@pytest.mark.parametrize("base_lr,total,warmup,min_ratio", [
    (1e-3, 110, 10, 0.1), (1e-3, 300, 30, 0.0), (1e-4, 300, 30, 0.0), (1e-4, 57, 0, 0.0),
    (1e-3, 7, 3, 0.1)])
def test_keras_cosine_decay_equals_the_hand_written_schedule(base_lr, total, warmup, min_ratio):
    steps = tf.range(total + 6)  # beyond total_steps it stays at the final rate
    expected = _hand_written(base_lr, total, warmup, min_ratio, steps)
    for schedule in (warmup_cosine(base_lr, total, warmup, min_ratio),
                     WarmupCosine(base_lr, total, warmup, min_ratio)):
        got = tf.function(lambda s, f=schedule: tf.map_fn(f, s, fn_output_signature="float32"))
        diff = np.abs(got(steps).numpy().astype("float64") - expected).max()
        # float32 rounding of a different operation order: at most 2 ulps of base_lr
        # (measured 2.3e-10 at 1e-3, 1.5e-11 at 1e-4)
        assert diff <= 2 * np.spacing(np.float32(base_lr)), diff
        if base_lr <= 1e-4:
            assert diff <= 1e-10, diff


def test_old_saved_warmup_cosine_still_loads():
    """.keras files written before the switch name kerastl>WarmupCosine with the old keys."""
    old = {"module": "kerastl.training.schedules", "class_name": "WarmupCosine",
           "config": {"base_lr": 0.001, "total_steps": 110, "warmup_steps": 10,
                      "min_ratio": 0.1},
           "registered_name": "kerastl>WarmupCosine"}
    schedule = keras.saving.deserialize_keras_object(old)
    assert isinstance(schedule, WarmupCosine)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert keras.saving.serialize_keras_object(schedule)["config"] == old["config"]
    assert float(schedule(0)) == pytest.approx(1e-3 / 11, rel=1e-6)
    assert float(schedule(60)) == pytest.approx(1e-4 + 0.9e-3 * 0.5, rel=1e-6)


def test_models_save_with_either_cosine_schedule(tmp_path):
    for schedule in (make_schedule("cosine", 1e-3, total_steps=50, warmup=0.1),
                     WarmupCosine(1e-3, 50, warmup_steps=5)):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
        model.optimizer.build(model.trainable_variables)
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras").optimizer._learning_rate
        assert type(loaded) is type(schedule)
        assert [float(loaded(s)) for s in (0, 4, 5, 30, 60)] == \
            [float(schedule(s)) for s in (0, 4, 5, 30, 60)]
