"""``kerastl export``: .keras in, verified TF Serving export (and TFLite) out."""

from __future__ import annotations

import json
import re
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
    for consumer in ("C++ loader (TF Serving's LoadSavedModel, via the C API)",
                     "session loader (saved_model_cli run)", "tf.saved_model.load"):
        assert f"[PASS] {consumer}: predict_images vs Keras" in out
        assert re.search(rf"\[PASS\] {re.escape(consumer)}: warmup requests replay: "
                         r"(\d+)/\1 answered", out)
    assert "[PASS] LiteRT (ai_edge_litert): pets_float.tflite vs Keras" in out
    assert out.rstrip().endswith("OK")
    report = json.loads((base / "pets" / "verify-1.json").read_text())
    assert report["ok"] and report["metrics"]["num_images"] == 10
    assert report["metrics"]["litert"]["float"]["top1_agreement"] >= 0.99
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


def test_export_that_a_server_cannot_load_fails_verify_and_is_withdrawn(tmp_path, keras_file,
                                                                       capsys, monkeypatch):
    """The Keras 3 trap on purpose (keras.Variable wrappers tracked, not their tf.Variables):
    tf.saved_model.load copes, TF Serving's C++ loader finds no variable."""
    from kerastl.export import signatures

    monkeypatch.setattr(signatures, "tf_variables", lambda model: list(model.variables))
    path, _ = keras_file
    base = tmp_path / "SavedModels"
    status = main(["export", str(path), "--name", "pets", "--base-dir", str(base),
                   "--verify", "--verify-images", "8", "--no-warmup"])
    captured = capsys.readouterr()
    assert status == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith("kerastl: verification failed: C++ loader (TF Serving's "
                               "LoadSavedModel, via the C API): loads and answers:")
    assert "Could not find variable" in lines[0]
    assert "[PASS] tf.saved_model.load: predict_images vs Keras" in captured.out
    assert not (base / "pets" / "1").exists()  # TF Serving would load an integer folder
    assert (base / "pets" / "rejected-1" / "saved_model.pb").is_file()  # kept to inspect
    assert "pets" not in (base / "models.config").read_text()
    assert json.loads((base / "pets" / "verify-1.json").read_text())["ok"] is False


def test_examples_folder_with_a_decompression_bomb_is_refused(tmp_path, keras_file, capsys):
    from test_serving_bombs import png_bomb

    path, model = keras_file
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "a.png").write_bytes(tf.io.encode_png(np.zeros((40, 40, 3), np.uint8)).numpy())
    (folder / "b.png").write_bytes(png_bomb())
    base = tmp_path / "SavedModels"
    status = main(["export", str(path), "--name", "pets", "--base-dir", str(base),
                   "--examples", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("kerastl: error: ") and "b.png" in err[0]
    assert "image is 20000x20000 = 400 M pixels, over the limit of 89 M pixels" in err[0]
    assert not (base / "pets" / "1").exists()
    import kerastl as ktl

    with pytest.raises(ValueError, match=r"example_images\[0\]: image is 20000x20000"):
        ktl.export_saved_model(model, base, name="lib", example_images=[png_bomb()])
    assert not (base / "lib" / "1").exists()
