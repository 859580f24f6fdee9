"""``kerastl predict``: top-k of a .keras model or a SavedModel, as table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_helpers import CLASS_NAMES, tiny_backbone, tiny_classifier  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    from kerastl.export.samples import sample_images

    model = tiny_classifier()
    model.save(tmp_path / "pets.keras")
    (tmp_path / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    saved = ktl.export_saved_model(model, tmp_path / "SM", name="pets",
                                   class_names=CLASS_NAMES, warmup=False)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    images = sample_images(5, (32, 32), seed=9)
    files = []
    for i, image in enumerate(images):
        files.append(folder / ("sub" if i > 2 else "") / f"p{i}.png")
        files[-1].write_bytes(tf.io.encode_png(image.astype(np.uint8)).numpy())
    (folder / "notes.txt").write_text("not an image")  # ignored in folders
    expected = model.predict(images, verbose=0)
    return tmp_path, saved, folder, files, expected


def test_saved_model_csv_matches_keras(setup, capsys):
    tmp_path, saved, folder, files, expected = setup
    assert main(["predict", str(saved.parent), str(folder), "--format", "csv",
                 "--top-k", "2"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2 * len(files)
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"], []).append(row)
    assert sorted(by_file) == sorted(str(f) for f in files)
    for f, probs in zip(files, expected, strict=True):
        top = by_file[str(f)]
        assert [int(r["rank"]) for r in top] == [1, 2]
        assert int(top[0]["index"]) == probs.argmax()
        assert top[0]["class"] == CLASS_NAMES[probs.argmax()]
        assert float(top[0]["score"]) == pytest.approx(probs.max(), abs=1e-5)


def test_keras_file_json_and_table(setup, capsys, tmp_path):
    _, saved, _, files, expected = setup
    model_file = saved.parents[2] / "pets.keras"
    assert main(["predict", str(model_file), *map(str, files[:2]), "--format", "json",
                 "--labels", str(saved.parents[2] / "labels.txt")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in result] == [str(f) for f in files[:2]]
    assert result[0]["top_k"][0]["class"] == CLASS_NAMES[expected[0].argmax()]
    assert result[0]["top_k"][0]["score"] == pytest.approx(expected[0].max(), abs=1e-5)
    assert len(result[0]["top_k"]) == 3  # top-5 capped at 3 classes

    out_file = tmp_path / "table.txt"
    assert main(["predict", str(saved), str(files[0]), "--output", str(out_file)]) == 0
    lines = out_file.read_text().splitlines()
    assert lines[0].split() == ["file", "rank", "index", "class", "score"]
    assert lines[1].split()[0] == str(files[0]) and lines[1].split()[1] == "1"
    assert lines[2].split()[0] == "2"  # the file name is shown once


def test_regressor_outputs(tmp_path, setup, capsys):
    _, _, _, files, _ = setup
    regressor = ktl.build_regressor(tiny_backbone(), 2)
    saved = ktl.export_saved_model(regressor, tmp_path / "R", name="ages", warmup=False)
    assert main(["predict", str(saved), str(files[0]), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "output_0", "output_1"]
    np.testing.assert_allclose([float(v) for v in rows[1][1:]],
                               regressor.predict(_decode(files[0]), verbose=0)[0], rtol=1e-4)


def _decode(path):
    return tf.io.decode_png(path.read_bytes())[None].numpy().astype(np.float32)


def test_bad_inputs_exit_2_with_one_line(setup, capsys):
    tmp_path, saved, folder, _, _ = setup
    bad = folder / "broken.png"
    bad.write_bytes(b"definitely not a png")
    assert main(["predict", str(saved), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.png is not a JPEG, PNG" in err and len(err.splitlines()) == 1
    assert main(["predict", str(tmp_path / "nothing"), str(folder)]) == 2
    assert "No such model file or SavedModel folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(folder)]) == 2  # a folder without versions
    assert "is not a SavedModel" in capsys.readouterr().err
    plain = tmp_path / "plain" / "1"  # a SavedModel not exported by kerastl
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x * 2},
                           input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(plain), signatures={"serving_default": module.f})
    assert main(["predict", str(plain), str(folder)]) == 2
    assert "no serving_default signature taking image_bytes" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(saved), str(empty)]) == 2
    assert "No images" in capsys.readouterr().err
