"""A run's contract reaches every consumer: resize, class names and the validation split.

One tiny ``kerastl train --resize crop`` run (EfficientNet-Lite0, ImageNet weights: an
untrained backbone answers the same for every image) on non-square images, then, with no
flag repeating what the run used:

- the ``.keras`` file says crop, its class names and size;
- ``kerastl evaluate RUN`` reproduces the run's own validation metrics exactly;
- ``kerastl export`` serves crop: TensorFlow's C++ loader (what TF Serving links)
  answers ``serving_default`` on the images' own bytes within 1e-5 of Keras on
  the data layer's crops.
"""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerastl.cli.main import main
from kerastl.data import decode
from kerastl.export.consumers import run_consumers
from kerastl.export.verify import requests

CLASSES = ("blue", "green", "red")
COLOURS = {"red": (210, 40, 40), "green": (40, 200, 60), "blue": (40, 50, 210)}


def _photo(rng, centre, height=24, width=56):
    """A wide image: the class colour in the central square, noise in the side bands."""
    pixels = rng.uniform(0, 255, (height, width, 3))
    left = (width - height) // 2
    pixels[:, left:left + height] = np.array(centre) + rng.normal(0, 20, (height, height, 3))
    return np.clip(pixels, 0, 255).astype("uint8")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    rng = np.random.default_rng(3)
    for name in CLASSES:
        (root / "data" / name).mkdir(parents=True)
        for i in range(7):
            Image.fromarray(_photo(rng, COLOURS[name])).save(root / "data" / name / f"{i}.png")
    argv = ["train", str(root / "data"), "--backbone", "efficientnet_lite0",
            "--image-size", "32", "--resize", "crop", "--seed", "7",
            "--validation-split", "0.3", "--head-epochs", "1", "--epochs", "1",
            "--batch-size", "4", "--output", str(root / "run")]
    assert main(argv) == 0
    return root


@pytest.mark.slow
@pytest.mark.weights
def test_the_model_file_keeps_the_runs_contract(run):
    model = keras.saving.load_model(run / "run" / "model.keras")
    assert model.resize == "crop"
    assert model.class_names == CLASSES
    assert model.image_size == (32, 32) and model.task == "multiclass"
    assert model.backbone_name == "efficientnet_lite0"
    report = json.loads((run / "run" / "report.json").read_text())
    assert report["config"]["resize"] == "crop"
    assert (run / "run" / "labels.txt").read_text().split() == list(CLASSES)  # for people


@pytest.mark.slow
@pytest.mark.weights
def test_evaluate_run_reproduces_the_runs_own_validation(run, capsys):
    capsys.readouterr()
    out = run / "eval"
    assert main(["evaluate", str(run / "run"), "--output", str(out)]) == 0
    evaluation = json.loads((out / "report.json").read_text())
    trained = json.loads((run / "run" / "report.json").read_text())["val_metrics"]
    assert evaluation["split"] == "val"
    assert evaluation["data_dir"] == str(run / "data")
    assert evaluation["metrics"]["examples"] == trained["examples"] == 6  # 2 of 7 per class (0.2 would hold out 1)
    assert evaluation["metrics"]["accuracy"] == trained["accuracy"]
    assert evaluation["metrics"]["confusion_matrix"] == trained["confusion_matrix"]
    assert f"val accuracy: {trained['accuracy']:.4f} on 6 images" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.weights
def test_evaluate_needs_data_when_the_model_has_no_run(run, tmp_path, capsys):
    lone = tmp_path / "lone.keras"
    lone.write_bytes((run / "run" / "model.keras").read_bytes())
    assert main(["evaluate", str(lone)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Give DATA_DIR" in err[0]
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is a folder without model.keras" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.weights
def test_export_without_a_resize_flag_serves_crop_in_the_cpp_loader(run):
    assert main(["export", str(run / "run" / "model.keras"), "--name", "wide",
                 "--base-dir", str(run / "served"), "--no-warmup"]) == 0
    version = run / "served" / "wide" / "1"
    meta = json.loads((version / "assets.extra" / "kerastl.json").read_text())
    assert meta["resize"] == "crop" and meta["class_names"] == list(CLASSES)

    files = sorted((run / "data").glob("*/*.png"))
    originals = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    crops = np.stack([decode.resize_image(decode.decode_bytes(tf.io.read_file(str(f))),
                                          (32, 32), "crop").numpy() for f in files])
    stretched = np.stack([decode.resize_image(tf.constant(o), (32, 32), "stretch").numpy()
                          for o in originals])
    model = keras.saving.load_model(run / "run" / "model.keras")
    expected = model.predict(crops.astype("float32"), verbose=0)
    wrong = model.predict(stretched.astype("float32"), verbose=0)
    assert np.abs(wrong - expected).max() > 1e-3  # stretch would answer differently

    results = run_consumers({"cpp": version}, requests(crops.astype("float32"), originals))
    cpp = results["cpp"]
    assert cpp.error is None, cpp.error
    np.testing.assert_allclose(cpp.outputs["large_png/probabilities"], expected, atol=1e-5)
    names = [str(n) for n in cpp.outputs["large_png/class_names"]]
    assert names == [CLASSES[i] for i in expected.argmax(-1)]
    assert pathlib.Path(version / "variables").is_dir()


@pytest.mark.slow
@pytest.mark.weights
def test_the_run_level_api_gives_the_clis_answers(run):
    import kerastl as ktl

    loaded = ktl.load_run(run / "run")
    assert loaded.class_names == list(CLASSES) and loaded.model.resize == "crop"
    assert loaded.config["resize"] == "crop" and loaded.config["seed"] == 7
    evaluation = ktl.evaluate(loaded)  # no output folder: writes nothing
    assert evaluation["split"] == "val" and "files" not in evaluation
    assert evaluation["metrics"]["accuracy"] == loaded.metrics("val")["accuracy"]
    assert evaluation["metrics"]["confusion_matrix"] == loaded.metrics("val")["confusion_matrix"]

    files = sorted((run / "data").glob("*/*.png"))[:5]
    crops = np.stack([decode.resize_image(decode.decode_bytes(tf.io.read_file(str(f))),
                                          (32, 32), "crop").numpy() for f in files])
    probs = loaded.model.predict(crops.astype("float32"), verbose=0)
    rows = ktl.predict(run / "run", files, top_k=2, batch_size=2)  # a run folder, 3 batches
    assert [r["file"] for r in rows] == [str(f) for f in files]
    assert [r["top_k"][0]["class"] for r in rows] == [CLASSES[i] for i in probs.argmax(-1)]
    np.testing.assert_allclose([r["top_k"][0]["score"] for r in rows], probs.max(-1),
                               atol=1e-5)
    from_arrays = ktl.predict(loaded.model, crops.astype("float32"), top_k=3)
    assert [r["file"] for r in from_arrays] == ["0", "1", "2", "3", "4"]
    assert len(from_arrays[0]["top_k"]) == 3
    with pytest.raises(ValueError, match=r"images must have shape \(N, 32, 32, 3\)"):
        ktl.predict(loaded.model, np.zeros((2, 16, 16, 3)))
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        ktl.predict(loaded.model, files, top_k=0)
