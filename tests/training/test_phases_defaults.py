"""TwoPhases' fallbacks are the public defaults (kerastl.config.DEFAULTS), not its own."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastl.config import DEFAULTS
from kerastl.training.phases import TwoPhases


def _runner(**options):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.zeros((8, 4), "float32")
    train = tf.data.Dataset.from_tensor_slices((x, np.zeros((8,), "int32"))).batch(4)
    base = dict(head_epochs=1, epochs=2, learning_rate=1e-3, fine_tune_learning_rate=1e-4,
                unfreeze={}, callbacks=[], cache_features=False, verbose=0, optimizer="adam",
                loss="sparse_categorical_crossentropy", metrics=[], patience=None,
                label_smoothing=0.0, class_weight=None, weight_decay=None, strategy=None,
                backup_dir=None, jit_compile=None, loop="keras", momentum=None, l2=None)
    base.update(options)
    return TwoPhases(model, train, None, **base), model, train


def test_without_a_schedule_option_twophases_uses_the_public_default_schedule():
    assert DEFAULTS.schedule == "cosine"
    runner, model, train = _runner()  # no "schedule"/"warmup" keys, as a direct caller
    assert runner._fingerprint()["schedule"] == DEFAULTS.schedule
    opt = runner._optimizer(model, 1e-3, train, phase=1)  # 1 epoch of 2 steps
    assert opt.get_config()["learning_rate"]["class_name"] == "CosineDecay"
    assert float(opt.learning_rate) == pytest.approx(1e-3)
    opt.iterations.assign(2)  # the end of the phase: decayed (a constant rate stays 1e-3)
    assert float(opt.learning_rate) < 1e-4


def test_an_explicit_constant_schedule_is_kept():
    runner, model, train = _runner(schedule="constant", warmup=0.0)
    assert runner._fingerprint()["schedule"] == "constant"
    opt = runner._optimizer(model, 1e-3, train, phase=1)
    opt.iterations.assign(2)
    assert float(opt.learning_rate) == pytest.approx(1e-3)
