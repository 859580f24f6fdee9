"""``kerastl train`` / ``evaluate`` / ``predict`` / ``export`` on a folder of .txt files,
as a user types them (the CLI's main(argv), in this process)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastl.cli.main import main
from kerastl.text.models import TextClassifier


@pytest.fixture(scope="module")
def text_run(tiny_bert, tmp_path_factory):
    from tests.text.conftest import TOPICS

    root = tmp_path_factory.mktemp("cli_text")
    data = root / "news"
    for topic, texts in TOPICS.items():
        (data / topic).mkdir(parents=True)
        for i, text in enumerate(texts):
            (data / topic / f"{i}.txt").write_text(text, encoding="utf-8")
    (data / "sport" / "notes.md").write_text("not a .txt file")
    (data / "tech" / "empty.txt").write_text("   \n")
    out = root / "run"
    code = main(["train", str(data), "--backbone", str(tiny_bert), "--sequence-length", "16",
                 "--head-epochs", "2", "--epochs", "1", "--batch-size", "4",
                 "--validation-split", "0.25", "--output", str(out), "--seed", "3"])
    assert code == 0
    return data, out


def test_train_detects_text_and_writes_the_run(text_run):
    data, out = text_run
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "text" and report["mode"] == "fine-tune"
    assert report["class_names"] == ["business", "sport", "tech"]
    assert report["sequence_length"] == 16 and report["config"]["sequence_length"] == 16
    assert report["counts"] == {"train": 9, "val": 3} or sum(report["counts"].values()) == 12
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in report["skipped_files"]}
    assert set(reasons) == {"notes.md", "empty.txt"}
    for name in ("model.keras", "labels.txt", "curves.png", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    model = keras.saving.load_model(out / "model.keras")
    assert isinstance(model, TextClassifier) and model.sequence_length == 16
    assert model.class_names == ("business", "sport", "tech")


def test_evaluate_run_reproduces_its_val_accuracy(text_run, capsys):
    _, out = text_run
    report = json.loads((out / "report.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["metrics"]["accuracy"] == report["val_metrics"]["accuracy"]


def test_predict_text_and_txt_files(text_run, capsys, tmp_path):
    data, out = text_run
    capsys.readouterr()
    assert main(["predict", str(out / "model.keras"), str(data / "sport" / "0.txt"),
                 "--text", "Shares fell sharply.", "--format", "json", "--top-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == ["text:1", str(data / "sport" / "0.txt")]
    model = keras.saving.load_model(out / "model.keras")
    probs = model.predict(tf.constant(["Shares fell sharply."]), verbose=0)[0]
    assert rows[0]["top_k"][0]["class"] == model.class_names[int(np.argmax(probs))]
    assert abs(rows[0]["top_k"][0]["score"] - float(probs.max())) < 1e-5


def test_export_then_predict_through_the_savedmodel(text_run, capsys, tmp_path):
    _, out = text_run
    assert main(["export", str(out / "model.keras"), "--name", "news",
                 "--base-dir", str(tmp_path / "SM")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "SM" / "news"), "--text", "A faster chip.",
                 "--format", "json"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert main(["predict", str(out / "model.keras"), "--text", "A faster chip.",
                 "--format", "json"]) == 0
    keras_rows = json.loads(capsys.readouterr().out)
    assert served[0]["top_k"][0]["class"] == keras_rows[0]["top_k"][0]["class"]
    assert abs(served[0]["top_k"][0]["score"] - keras_rows[0]["top_k"][0]["score"]) < 1e-5


def test_text_flag_errors_are_one_line(text_run, capsys, tmp_path):
    data, out = text_run
    assert main(["train", str(data), "--backbone", "mobilenet_v2", "--task", "text"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image backbone" in err[0]
    assert main(["train", str(data), "--sequence-length", "2"]) == 2
    assert "sequence_length must be an int >= 3" in capsys.readouterr().err


@pytest.mark.slow
def test_text_demo_quick_runs_offline_end_to_end(tmp_path, capsys):
    assert main(["demo", "--text", "--quick", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "held-out BBC News articles" in out
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["task"] == "text" and report["backbone"] == "minilm_l6"
    assert report["counts"] == {"train": 20, "val": 10, "test": 20}
    assert report["class_names"] == ["business", "entertainment", "politics", "sports", "tech"]
    assert 0.0 <= report["test_metrics"]["accuracy"] <= 1.0
    model = keras.saving.load_model(tmp_path / "demo" / "model.keras")
    assert model.sequence_length == 32
