import keras
import numpy as np
import pytest

from kerastl.training.schedules import OneCycle, WarmupCosine, current_rate, make_schedule


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
    assert isinstance(cos, WarmupCosine) and cos.warmup_steps == 20
    with pytest.raises(ValueError, match="Unknown schedule 'linear'. Known: constant"):
        make_schedule("linear", 1e-3, total_steps=10)
    with pytest.raises(ValueError, match="needs total_steps"):
        make_schedule("onecycle", 1e-3)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        make_schedule("constant", -1.0)
    with pytest.raises(ValueError, match=r"warmup_steps must be an int in \[0, total_steps=5\)"):
        WarmupCosine(1e-3, total_steps=5, warmup_steps=5)


def test_schedules_serialise_and_drive_an_optimizer():
    for schedule in (OneCycle(1e-2, 40), WarmupCosine(1e-2, 40, warmup_steps=4)):
        config = keras.saving.serialize_keras_object(schedule)
        clone = keras.saving.deserialize_keras_object(config)
        np.testing.assert_allclose(_values(clone, range(0, 45, 5)),
                                   _values(schedule, range(0, 45, 5)), rtol=1e-6)
        opt = keras.optimizers.SGD(schedule)
        var = keras.Variable(np.ones(3, "float32"))
        for _ in range(7):
            opt.apply([np.ones(3, "float32")], [var])
        assert current_rate(opt) == pytest.approx(float(schedule(7)), rel=1e-5)
