"""Temperature scaling: fitted on validation data, folded exactly into the last layer."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerastl as ktl
from kerastl.backbones import Preprocess
from kerastl.calibration import (
    calibrated_model_path,
    expected_calibration_error,
    logits_and_labels,
    softmax,
)
from kerastl.cli.main import main

SIZE = 16
#: The model's logits are SCALE times those the labels were drawn from: over-confident.
SCALE = 4.0


def colour_model(scale: float = SCALE) -> keras.Model:
    """A classifier whose logits are ``scale * channel means / 50``: its features are the
    mean colour (Preprocess + average pooling), its kernel a scaled identity."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = Preprocess("none", backbone="tiny")(inputs)
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="colour")
    model = ktl.build_classifier(backbone, 3, dropout=0.0, class_names=["r", "g", "b"])
    dense = model.get_layer("predictions")
    dense.kernel.assign(np.eye(3, dtype="float32") * scale / 50.0)
    dense.bias.assign(np.array([0.1, -0.2, 0.05], "float32") * scale)
    return model


def colour_data(count: int, seed: int):
    """Flat-colour images with labels drawn from the scale-1 model's own probabilities:
    that model is calibrated, the SCALE one over-confident by a temperature of SCALE."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 255, size=(count, 3)).astype("float32")
    images = np.broadcast_to(colours[:, None, None, :], (count, SIZE, SIZE, 3)).copy()
    p = softmax(colours / 50.0 + np.array([0.1, -0.2, 0.05]))
    labels = np.array([rng.choice(3, p=row) for row in p])
    return images, labels


def _dataset(images, labels):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(64)


@pytest.fixture(scope="module")
def val_data():
    return colour_data(800, seed=0)


def test_ece_of_known_probabilities():
    probs = np.tile([[0.9, 0.1]], (10, 1))
    assert expected_calibration_error(probs, np.zeros(10, int)) == pytest.approx(0.1)
    assert expected_calibration_error(probs, np.array([0] * 9 + [1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.eye(2)[[0] * 9 + [1]]) == pytest.approx(0.0)


def test_over_confident_model_gets_its_temperature_back(val_data, tmp_path):
    model = colour_model()
    result = ktl.calibrate(model, _dataset(*val_data), plot=tmp_path / "reliability.png")
    assert result.temperature == pytest.approx(SCALE, rel=0.15)
    assert result.ece_after < result.ece_before / 2
    assert result.nll_after < result.nll_before
    assert result.examples == 800 and result.bins == 15
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    # held-out data: calibrated better too
    images, labels = colour_data(800, seed=1)
    before = model.predict(images, verbose=0)
    after = result.model.predict(images, verbose=0)
    assert (expected_calibration_error(after, labels)
            < expected_calibration_error(before, labels) / 2)
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))


def test_folding_is_exact_and_copies_by_default(val_data):
    model = colour_model()
    kernel = model.get_layer("predictions").kernel.numpy().copy()
    result = ktl.calibrate(model, _dataset(*val_data))
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(), kernel)
    images = colour_data(64, seed=2)[0]
    logits, _ = logits_and_labels(model, _dataset(images, np.zeros(64, int)))
    served = result.model.predict(images, verbose=0)
    np.testing.assert_allclose(served, softmax(logits / result.temperature), atol=1e-6)
    assert result.model.class_names == ("r", "g", "b")
    again = ktl.calibrate(model, _dataset(*val_data), in_place=True)
    assert again.model is model
    assert again.temperature == pytest.approx(result.temperature, rel=1e-6)
    np.testing.assert_allclose(model.predict(images, verbose=0), served, atol=1e-6)


def test_calibrated_model_saves_and_loads(val_data, tmp_path):
    result = ktl.calibrate(colour_model(), _dataset(*val_data))
    result.model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    images = colour_data(16, seed=3)[0]
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               result.model.predict(images, verbose=0), atol=1e-7)
    assert calibrated_model_path(tmp_path / "m.keras").name == "m.calibrated.keras"


def test_refuses_what_it_cannot_calibrate(val_data):
    regressor = ktl.build_regressor(colour_model().backbone, 2)
    with pytest.raises(ktl.UserInputError, match="needs a softmax classifier"):
        ktl.calibrate(regressor, _dataset(*val_data))
    empty = _dataset(*val_data).take(0)
    with pytest.raises(ktl.UserInputError, match="empty"):
        ktl.calibrate(colour_model(), empty)


@pytest.mark.slow
def test_export_serves_the_calibrated_probabilities(val_data, tmp_path):
    """The C++ loader TF Serving links answers the calibrated Keras model within 1e-5."""
    from kerastl.export.verify import verify

    result = ktl.calibrate(colour_model(), _dataset(*val_data))
    path = ktl.export_saved_model(result.model, tmp_path, name="colours")
    report = verify(path, result.model, consumers=("cpp",), tflite=False, num_images=8)
    assert report.ok, report.summary()
    assert report.metrics["consumers"]["cpp"]["keras_max_abs_diff"] <= 1e-5


def _folder(root, per_class=12):
    rng = np.random.default_rng(0)
    colours = {"red": (200, 40, 40), "blue": (40, 40, 200)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 60, (24, 24, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_cli_train_and_evaluate_calibrate(tmp_path, capsys):
    data, run = _folder(tmp_path / "data"), tmp_path / "run"
    args = ["train", str(data), "--backbone", "mobilenet_v2", "--weights", "none",
            "--image-size", "32", "--mode", "feature-extraction", "--validation-split", "0.5",
            "--output", str(run), "--calibrate"]
    assert main(args) == 0
    assert "calibration: temperature" in capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    cal = report["calibration"]
    assert cal["temperature"] > 0 and cal["val"]["examples"] == 12
    assert (run / "model.keras").is_file() and (run / "model.calibrated.keras").is_file()
    assert report["files"]["reliability"] == str(run / "reliability.png")
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(run), "--calibrate", "--tta", "--output", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calibration"]["temperature"] == pytest.approx(cal["temperature"])
    assert summary["calibration"]["evaluated"]["split"] == "val"
    assert summary["tta"]["views"] == ["identity", "horizontal_flip"]
    assert (out / "reliability.png").is_file()
    saved = json.loads((out / "report.json").read_text())
    assert saved["calibration"]["files"]["calibrated_model"] == str(
        run / "model.calibrated.keras")
    assert main(["train", str(data), "--validation-split", "0", "--calibrate",
                 "--weights", "none", "--backbone", "mobilenet_v2", "--image-size", "32"]) == 2
    assert "--calibrate fits a temperature" in capsys.readouterr().err
