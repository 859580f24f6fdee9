"""A checkpoint's fingerprint comes from FineTuneConfig's fields, not from a hand-made list."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.config import (
    DEFAULTS,
    FINE_TUNE_FIELDS,
    RESUME_NEUTRAL,
    FineTuneConfig,
    resume_fingerprint,
)
from kerastl.training import phases
from kerastl.training.checkpoint import CheckpointManager

NEUTRAL = {f.name for f in dataclasses.fields(FineTuneConfig) if f.metadata.get(RESUME_NEUTRAL)}


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, np.arange(8, dtype="int32") % 2)).batch(4)


def _model():
    keras.utils.set_random_seed(0)
    return ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32), 2)


def test_every_field_but_the_neutral_ones_counts():
    assert NEUTRAL == {"max_pixels", "micro_batch_size", "mode", "classifier", "C"}
    found = resume_fingerprint(DEFAULTS.to_dict())
    assert list(found) == [f.name for f in dataclasses.fields(FineTuneConfig)
                           if f.name not in NEUTRAL]
    # Only fields count (an output folder, verbosity... are not), made JSON-ready.
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    assert resume_fingerprint({"verbose": 2, "backup_dir": "x", "learning_rate": schedule,
                               "hidden_units": (4, 2)}) == {
        "hidden_units": [4, 2],
        "learning_rate": {"class": "ExponentialDecay", "config": schedule.get_config()}}


def test_fine_tune_fingerprints_every_option_it_receives(monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def run(self):
        seen.append(self._fingerprint())
        raise Stop

    monkeypatch.setattr(phases.TwoPhases, "run", run)
    with pytest.raises(Stop):
        ktl.fine_tune(_model(), _data(), head_epochs=1, epochs=0, verbose=0, warmup=0.3)
    keys = set(seen[0]) - {"model", "weights"}
    assert keys == set(FINE_TUNE_FIELDS) - NEUTRAL
    assert seen[0]["warmup"] == 0.3 and seen[0]["mixed_precision"] is None


def test_a_key_one_checkpoint_does_not_record_is_not_compared(tmp_path):
    arrays = {"model": [np.zeros(2, "float32")]}
    CheckpointManager(tmp_path, fingerprint={"epochs": 3}).save({"status": "phase1"}, arrays)
    # written before "warmup" was recorded: still this run's checkpoint
    assert CheckpointManager(tmp_path, fingerprint={"epochs": 3, "warmup": 0.1}).latest()
    with pytest.raises(ValueError, match=r"epochs: 3 there vs 4 now"):
        CheckpointManager(tmp_path, fingerprint={"epochs": 4, "warmup": 0.1}).latest()


def test_resume_refuses_a_changed_option_and_ignores_verbosity(tmp_path):
    def run(**changes):
        return ktl.fine_tune(_model(), _data(), **{
            "head_epochs": 1, "epochs": 0, "verbose": 0, "cache_features": False,
            "backup_dir": tmp_path / "bk", **changes})

    assert run().resumed_from is None
    # Verbosity and callbacks are not options of the training result: the finished run returns.
    assert run(verbose=2, callbacks=[keras.callbacks.History()]).resumed_from is not None
    # warmup, weight_decay... were missing from the former hand-made list.
    with pytest.raises(ValueError, match=r"different run \(warmup: 0\.1 there vs 0\.5 now\)"):
        run(warmup=0.5)
    with pytest.raises(ValueError, match=r"weight_decay: None there vs 0\.01 now"):
        run(weight_decay=0.01)
