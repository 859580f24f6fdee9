"""Text exports answer raw strings in the loaders consumers use, TF Serving's C++ loader
first, in fresh processes without kerastl or tensorflow-text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.export.verify import verify
from kerastl.text.models import TextClassifier


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    model = TextClassifier(str(tiny_bert), 3, sequence_length=24,
                           class_names=["business", "sport", "tech"])
    base = tmp_path_factory.mktemp("text_export")
    path = ktl.export_saved_model(model, base, name="news",
                                  example_images=["Shares rose.", "The team won!"])
    return model, path


def test_the_export_records_a_text_contract(exported):
    model, path = exported
    meta = json.loads((path / "assets.extra" / "kerastl.json").read_text())
    assert meta["kind"] == "text" and meta["sequence_length"] == 24
    assert meta["inputs"] == {"serving_default": "text"}
    assert meta["class_names"] == ["business", "sport", "tech"]
    assert meta["image_size"] is None and meta["warmup_records"] == 3
    assert (path / "assets" / "labels.txt").read_text() == "business\nsport\ntech\n"


@pytest.mark.slow
def test_cpp_loader_answers_raw_strings_like_keras(exported):
    model, path = exported
    texts = ["Shares rose after the results.", "", "Café naïve façade, ÅNGSTRÖM!",
             "東京でオリンピック", " ".join(["goal"] * 10_000), "\t\n"]
    report = verify(path, model, images=texts, consumers=("cpp", "saved_model_load"))
    assert report.ok, report.summary()
    assert report.metrics["num_texts"] == 6
    for consumer in ("cpp", "saved_model_load"):
        assert report.metrics["consumers"][consumer]["keras_max_abs_diff"] <= 1e-5
    names = [c.name for c in report.checks if c.passed]
    assert any("empty batch" in n for n in names)
    assert any("warmup requests replay" in n for n in names)
    assert "fresh processes without kerastl or tensorflow-text" in names


def test_predict_takes_strings_and_txt_files(exported, tmp_path):
    model, _ = exported
    (tmp_path / "a.txt").write_text("The striker scored twice.", encoding="utf-8")
    rows = ktl.predict(model, ["Shares rose.", str(tmp_path / "a.txt")], top_k=2)
    assert [r["file"] for r in rows] == ["0", str(tmp_path / "a.txt")]
    expected = model.predict(tf.constant(["Shares rose.", "The striker scored twice."]),
                             verbose=0)
    for row, probs in zip(rows, expected, strict=True):
        assert row["top_k"][0]["index"] == int(np.argmax(probs))
        assert abs(row["top_k"][0]["score"] - float(probs.max())) < 1e-6
        assert row["top_k"][0]["class"] == ["business", "sport", "tech"][int(np.argmax(probs))]
