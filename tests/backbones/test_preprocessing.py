"""Preprocess computes each mode with Keras layers, as the formulas did, and old files load.

data/preprocess_outputs_v1.npz holds the outputs of the Preprocess of before this
change (plain ops) for every mode. A .keras file of a model with one Preprocess per
mode is written by the test itself: the former layer's saved config was exactly
{name, trainable, dtype, mode, backbone} per layer (checked below), so a file written
now is the file it wrote, and no model file is kept in the repository.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from kerastl._compat import flatten_layers
from kerastl.backbones.preprocessing import Preprocess
from kerastl.backbones.registry import PREPROCESSING_MODES
from kerastl.loading import load_keras_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "preprocess_outputs_v1.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("mode", PREPROCESSING_MODES)
def test_each_mode_matches_the_former_outputs(mode, reference):
    layer = Preprocess(mode)
    out = np.asarray(layer(reference["images"]))
    assert out.dtype == np.float32
    assert np.max(np.abs(out - reference[mode])) <= 1e-6
    # No weights and no nested layers: layer counts and saved files are unchanged.
    assert layer.weights == [] and flatten_layers(layer) == []
    assert layer.get_config()["mode"] == mode


def test_uses_keras_preprocessing_layers():
    kinds = {mode: [type(x).__name__ for x in Preprocess(mode)._steps.layers]
             for mode in PREPROCESSING_MODES}
    assert kinds == {"tf": ["Rescaling"], "lite": ["Rescaling"], "unit": ["Rescaling"],
                     "torch": ["Normalization"], "caffe": ["Normalization"],
                     "builtin": [], "none": []}


#: What the former Preprocess wrote in a .keras config, per layer.
FORMER_CONFIG_KEYS = {"name", "trainable", "dtype", "mode", "backbone"}


def _modes_model_file(path: Path) -> Path:
    """A model with one Preprocess per mode (8x8 input, outputs keyed by mode), saved."""
    image = keras.Input((8, 8, 3), name="image")
    outputs = {mode: Preprocess(mode, backbone=f"test_{mode}", name=f"preprocess_{mode}")(image)
               for mode in PREPROCESSING_MODES}
    keras.Model(image, outputs, name="preprocess_modes").save(path)
    return path


def test_a_model_saved_with_the_former_layer_loads_and_answers_the_same(reference, tmp_path):
    path = _modes_model_file(tmp_path / "preprocess_modes_v1.keras")
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    saved = [layer["config"] for layer in config["config"]["layers"]
             if layer["class_name"] == "Preprocess"]
    assert len(saved) == len(PREPROCESSING_MODES)
    assert all(set(c) == FORMER_CONFIG_KEYS for c in saved), saved
    model = load_keras_model(path)
    out = model.predict(reference["images"], verbose=0)
    for mode in PREPROCESSING_MODES:
        assert np.max(np.abs(out[mode] - reference[mode])) <= 1e-6
        assert model.get_layer(f"preprocess_{mode}").backbone == f"test_{mode}"
    model.save(tmp_path / "again.keras")  # and round-trips with the new layer
    again = keras.saving.load_model(tmp_path / "again.keras")
    assert np.array_equal(again.predict(reference["images"], verbose=0)["torch"], out["torch"])


def test_mixed_precision_computes_in_the_policy():
    layer = Preprocess("torch", dtype="mixed_float16")
    out = layer(np.full((1, 2, 2, 3), 255.0, "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert np.allclose(np.asarray(out, "float32")[0, 0, 0],
                       (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], atol=3e-3)
