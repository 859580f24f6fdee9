import json

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import main
from kerastl.reports.evaluate import evaluate_classifier
from kerastl.reports.plots import most_confident_errors, plot_errors


def test_most_confident_errors_order():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.99, 0.01]])
    labels = np.array([1, 1, 1, 0, 0])  # wrong: 0 (p .9), 2 (p .6), 3 (p .7)
    assert most_confident_errors(probs, labels) == [0, 3, 2]
    assert most_confident_errors(probs, labels, count=1) == [0]
    assert most_confident_errors(probs, np.eye(2)[labels]) == [0, 3, 2]  # one-hot
    assert most_confident_errors(probs, probs.argmax(1)) == []


def test_plot_errors_writes_a_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (6, 16, 16, 3))
    probs = np.array([[0.9, 0.1]] * 6)
    labels = np.array([1, 0, 1, 0, 1, 1])
    path, shown = plot_errors(images, probs, labels, ["a", "b"], tmp_path / "e.png")
    assert shown == [0, 2, 4, 5]
    assert (tmp_path / "e.png").stat().st_size > 3000
    _, none = plot_errors(images, probs, np.zeros(6, int), ["a", "b"], tmp_path / "n.png")
    assert none == [] and (tmp_path / "n.png").exists()


class _Fixed:
    """A 'model' whose prediction is the image's mean red value (for exact numbers)."""

    output_shape = (None, 2)

    def __call__(self, images, training=False):
        red = tf.reduce_mean(images[..., 0], axis=[1, 2]) / 255.0
        return tf.stack([1 - red, red], axis=1)


def test_evaluate_report_contains_the_right_numbers(tmp_path):
    reds = np.array([250, 200, 20, 30, 240, 10, 180, 60], dtype="float32")  # p(class 1)
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 0], dtype="int32")  # wrong: idx 4 (.94), 5 (.96)
    images = np.zeros((8, 8, 8, 3), "float32")
    images[..., 0] = reds[:, None, None]
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)
    report = evaluate_classifier(_Fixed(), data, ["neg", "pos"], output=tmp_path, split="val")
    saved = json.loads((tmp_path / "report.json").read_text())
    m = saved["metrics"]
    assert m["examples"] == 8 and m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["per_class"]["pos"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert saved["split"] == "val" and saved["class_names"] == ["neg", "pos"]
    assert saved["timings"]["predict_seconds"] > 0 and "tensorflow" in saved["environment"]
    for key in ("report", "confusion_matrix", "errors"):
        assert (tmp_path / report["files"][key].split("/")[-1]).stat().st_size > 0
    with pytest.raises(ValueError, match="predicts 2 classes but the data has 3"):
        evaluate_classifier(_Fixed(), data, ["a", "b", "c"])


def test_shuffled_dataset_gives_no_errors_grid(tmp_path):
    images = np.zeros((8, 8, 8, 3), "float32")
    images[..., 0] = np.linspace(0, 255, 8)[:, None, None]
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype="int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(8, seed=1,
                                                                      reshuffle_each_iteration=True)
    report = evaluate_classifier(_Fixed(), data.batch(2), ["neg", "pos"], output=tmp_path)
    assert report["metrics"]["examples"] == 8
    assert ("errors" in report["files"]) == (tmp_path / "errors.png").exists()


@pytest.fixture
def folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate([(230, 30, 30), (30, 30, 230)]):
        (tmp_path / "data" / f"class{c}").mkdir(parents=True)
        for i in range(4):
            arr = np.clip(np.array(colour) + rng.normal(0, 10, (16, 16, 3)), 0, 255)
            Image.fromarray(arr.astype("uint8")).save(tmp_path / "data" / f"class{c}" / f"{i}.png")
    return tmp_path


@pytest.mark.slow
def test_cli_evaluate_writes_report_and_plots(folder, capsys):
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32),
                                 2)
    model.save(folder / "model.keras")
    out = folder / "eval"
    assert main(["evaluate", str(folder / "model.keras"), str(folder / "data"),
                 "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "all" and report["metrics"]["examples"] == 8
    assert sum(map(sum, report["metrics"]["confusion_matrix"])) == 8
    assert (out / "confusion_matrix.png").exists()
    assert "all accuracy:" in capsys.readouterr().out
    assert main(["evaluate", str(folder / "model.keras"), str(folder / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(folder / "model.keras"), str(folder / "data"),
                 "--split", "test"]) == 2
    assert "has no test/ subfolder" in capsys.readouterr().err
