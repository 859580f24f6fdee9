"""ktl.tuning.search: results, best model, Hyperband continuation, other tuners, errors."""

from __future__ import annotations

import csv
import json

import keras_tuner as kt
import numpy as np
import pytest
from tuning_helpers import TINY_BACKBONE

import kerastl as ktl

FIXED = {"augmentation": "none", "head_units": 0, "optimizer": "adam"}


def _search(train, val, tmp_path, **kwargs):
    kwargs.setdefault("backbones", (TINY_BACKBONE,))
    kwargs.setdefault("weights", None)
    kwargs.setdefault("seed", 1)
    return ktl.tuning.search(train, val, directory=tmp_path, **kwargs)


@pytest.mark.slow
def test_random_search_results_files_and_best_model(tiny_data, tmp_path):
    train, val = tiny_data
    result = _search(train, val, tmp_path, tuner="random", max_trials=2, max_epochs=2,
                     project_name="rand",
                     fixed={**FIXED, "label_smoothing": 0.1, "unfreeze_groups": 9})
    assert result.project_dir == tmp_path / "rand"
    assert [r["trial_id"] for r in result.trials] == ["0", "1"]
    assert all(r["status"] == "COMPLETED" and r["label_smoothing"] == 0.1
               for r in result.trials)
    assert all(r["epochs"] == 2 and r["seconds"] > 0 for r in result.trials)
    best = max(result.trials, key=lambda r: r["score"])
    assert result.best_trial_id == best["trial_id"] and result.best_score == best["score"]
    assert result.best_hyperparameters == {n: best[n] for n in ktl.tuning.HYPERPARAMETERS}
    with open(result.files["results_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == ["0", "1"]
    assert float(rows[int(best["trial_id"])]["score"]) == pytest.approx(best["score"])
    saved = json.loads(result.files["best_json"].read_text())
    assert saved["hyperparameters"] == result.best_hyperparameters
    assert saved["score"] == pytest.approx(result.best_score)
    for key in ("score_plot", "hyperparameter_plot"):
        assert result.files[key].read_bytes()[:4] == b"\x89PNG"
    assert "trial" in result.table() and "val_accuracy" in result.table()
    # The best model is the checkpoint of the reported epoch: same validation accuracy.
    model = result.best_model()
    loss, accuracy = model.evaluate(val, verbose=0)
    assert accuracy == pytest.approx(best["val_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_hyperband_continues_brackets_from_checkpoints(tiny_data, tmp_path):
    train, val = tiny_data
    result = _search(train, val, tmp_path, tuner="hyperband", max_epochs=2, factor=2,
                     project_name="hb", fixed=FIXED, max_trials=3)
    rows = result.trials
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    continued = [r for r in rows if r.get("tuner/trial_id")]
    fresh = [r for r in rows if not r.get("tuner/trial_id")]
    assert fresh and all(r["tuner/initial_epoch"] == 0 for r in fresh)
    for r in continued:  # only the new epochs run, all of them fine-tuning
        assert r["epochs"] == r["tuner/epochs"] - r["tuner/initial_epoch"]
        parent = next(p for p in rows if p["trial_id"] == r["tuner/trial_id"])
        assert {k: r[k] for k in FIXED} == {k: parent[k] for k in FIXED}
    assert (result.project_dir / f"trial_{result.best_trial_id}" /
            "checkpoint.weights.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["bayesian", "grid"])
def test_bayesian_and_grid_run(tuner, tiny_data, tmp_path):
    train, val = tiny_data
    result = _search(train, val, tmp_path, tuner=tuner, max_trials=1, max_epochs=1,
                     fixed=FIXED)
    assert result.project_dir.name == f"{tuner}_{TINY_BACKBONE}"
    assert len(result.trials) == 1 and result.trials[0]["status"] == "COMPLETED"
    lr = result.best_hyperparameters["learning_rate"]
    if tuner == "grid":  # the grid starts from the default configuration
        assert lr == pytest.approx(1e-3)
    else:
        assert 1e-4 <= lr <= 1e-2


@pytest.mark.slow
def test_isolated_trials_run_in_their_own_process(tiny_data, tmp_path):
    train, val = tiny_data
    result = _search(train, val, tmp_path, tuner="random", max_trials=1, max_epochs=1,
                     project_name="iso", isolate_trials=True, fixed=FIXED)
    row = result.trials[0]
    assert row["status"] == "COMPLETED" and 0 <= row["val_accuracy"] <= 1
    # The copy of the data the trial read is gone with the search (keep_cache=False).
    assert not (result.project_dir / "isolated_data").exists()
    model = result.best_model()
    _, accuracy = model.evaluate(val, verbose=0)
    assert accuracy == pytest.approx(row["val_accuracy"], abs=1e-6)


def test_splits_infers_classes_and_size(tmp_path):
    import tensorflow as tf

    from kerastl.tuning.arguments import _infer_image_size, _infer_num_classes

    x = np.zeros((6, 40, 48, 3), "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.array([0, 4, 1, 2, 0, 1]))).batch(3)
    assert _infer_image_size(ds) == (40, 48)
    assert _infer_num_classes(ds, ds) == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"tuner": "annealing"}, "Unknown tuner 'annealing'"),
    ({"max_epochs": 0}, "max_epochs must be an int >= 1"),
    ({"max_trials": 0}, "max_trials must be an int >= 1"),
    ({"val": None}, "needs validation data"),
    ({"backbones": ("mobilenetv9",)}, "Unknown backbone"),
    ({"fixed": {"learning_rte": 1e-3}}, "Did you mean: learning_rate"),
    ({"hypermodel": object()}, "hypermodel must be a keras_tuner.HyperModel"),
])
def test_bad_arguments_fail_before_any_trial(kwargs, message, tiny_data, tmp_path):
    train, val = tiny_data
    val = kwargs.pop("val", val)
    with pytest.raises(ValueError, match=message):
        _search(train, val, tmp_path, **kwargs)
    assert not (tmp_path / "random_mobilenet_v3_small").exists()


def test_hp_fixed_given_to_search_reaches_the_oracle(tiny_data, tmp_path):
    from kerastl.tuning.arguments import _oracle

    hp = kt.HyperParameters()
    hp.Fixed("dropout", 0.35)
    oracle = _oracle("random", kt.Objective("val_accuracy", "max"), max_trials=1, max_epochs=1,
                     seed=0, hyperparameters=hp, factor=3, hyperband_iterations=1)
    assert oracle.get_space().get("dropout") == 0.35
