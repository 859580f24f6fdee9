"""``kerastl export``: .keras in, verified TF Serving export (and TFLite) out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kerastl.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_helpers import CLASS_NAMES, tiny_classifier  # noqa: E402


@pytest.fixture
def keras_file(tmp_path):
    model = tiny_classifier()
    path = tmp_path / "pets.keras"
    model.save(path)
    (tmp_path / "pets.labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return path, model


@pytest.fixture
def example_folder(tmp_path):
    from kerastl.export.samples import sample_images

    folder = tmp_path / "examples"
    folder.mkdir()
    for i, image in enumerate(sample_images(10, (48, 40), seed=5)):
        (folder / f"{i:02d}.png").write_bytes(tf.io.encode_png(image.astype(np.uint8)).numpy())
    return folder


def test_export_with_tflite_and_verify(tmp_path, keras_file, example_folder, capsys):
    path, model = keras_file
    base = tmp_path / "SavedModels"
    status = main(["export", str(path), "--name", "pets", "--base-dir", str(base),
                   "--examples", str(example_folder), "--tflite", "float,dynamic",
                   "--verify"])
    out = capsys.readouterr().out
    assert status == 0, out
    version = base / "pets" / "1"
    assert (version / "assets" / "labels.txt").read_text().splitlines() == CLASS_NAMES
    assert (base / "models.config").is_file()
    assert sorted(p.name for p in (base / "pets" / "tflite" / "1").iterdir()) == [
        "labels.txt", "pets_dynamic.tflite", "pets_float.tflite", "tflite_report.json"]
    tflite = json.loads((base / "pets" / "tflite" / "1" / "tflite_report.json").read_text())
    assert tflite[0]["variant"] == "float" and tflite[0]["top1_agreement"] >= 0.99
    assert "signature_def['serving_default']:" in out
    assert "[PASS] predict_images vs Keras" in out and out.rstrip().endswith("OK")
    report = json.loads((base / "pets" / "verify-1.json").read_text())
    assert report["ok"] and report["metrics"]["num_images"] == 10
    # the warmup requests carry the example files' own bytes
    from kerastl.export import read_warmup_requests

    first = read_warmup_requests(version / "assets.extra" / "tf_serving_warmup_requests")[0]
    sent = tf.make_ndarray(first.predict_log.request.inputs["image_bytes"])[0]
    assert bytes(sent) == (example_folder / "00.png").read_bytes()


def test_second_export_is_next_version_and_existing_version_is_refused(tmp_path, keras_file,
                                                                        capsys):
    path, _ = keras_file
    base = tmp_path / "out"
    args = ["export", str(path), "--name", "pets", "--base-dir", str(base), "--no-warmup"]
    assert main(args) == 0
    assert main(args) == 0
    assert sorted(p.name for p in (base / "pets").iterdir()) == ["1", "2"]
    capsys.readouterr()
    assert main(args + ["--version", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kerastl: error:") and "already exists" in err
    assert len(err.splitlines()) == 1
    assert main(args + ["--version", "2", "--overwrite", "--class-names", "a,b,c"]) == 0
    assert (base / "pets" / "2" / "assets" / "labels.txt").read_text() == "a\nb\nc\n"


@pytest.mark.parametrize("extra, message", [
    (["--class-names", "a,b"], "class_names has 2 entries"),
    (["--labels", "missing.txt"], "Labels file not found"),
    (["--tflite", "float,int4"], "TFLite variants must be among"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, keras_file, capsys, extra, message):
    path, _ = keras_file
    status = main(["export", str(path), "--name", "pets", "--base-dir", str(tmp_path / "o"),
                   "--no-warmup", *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and len(err.splitlines()) == 1


def test_missing_model_file(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.keras"), "--name", "x"]) == 2
    assert "Model file not found" in capsys.readouterr().err
