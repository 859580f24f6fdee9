import json

import numpy as np
import pytest
from PIL import Image

from kerastl.cli.main import main
from kerastl.transfer.run import AUTO_FEATURE_EXTRACTION_MAX_PER_CLASS, choose_mode


def _folder(root, per_class=8, size=32):
    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True)
        colour = np.array([200, 40, 40]) if c == 0 else np.array([40, 40, 200])
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


def test_choose_mode():
    limit = AUTO_FEATURE_EXTRACTION_MAX_PER_CLASS
    assert choose_mode("auto", train_examples=10 * limit, num_classes=10) == "feature-extraction"
    assert choose_mode("auto", train_examples=10 * limit + 10, num_classes=10) == "fine-tune"
    assert choose_mode("fine-tune", train_examples=5, num_classes=5) == "fine-tune"
    assert choose_mode("feature-extraction", train_examples=10**6,
                       num_classes=2) == "feature-extraction"
    with pytest.raises(ValueError, match="Unknown mode 'linear'"):
        choose_mode("linear", train_examples=5, num_classes=5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["feature-extraction", "auto"])
def test_train_feature_extraction_mode_end_to_end(tmp_path, capsys, mode):
    import keras

    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", str(data), "--backbone", "mobilenet_v2", "--weights", "none",
            "--image-size", "32", "--batch-size", "4", "--validation-split", "0.25",
            "--mode", mode, "--C", "1.0", "--features-cache", str(tmp_path / "cache"),
            "--output", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mode: feature extraction (logistic, C=1)" in printed
    for name in ("model.keras", "report.json", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "feature-extraction"
    assert report["linear_head"]["kind"] == "logistic" and report["linear_head"]["C"] == 1.0
    assert report["config"]["mode"] == mode
    assert report["val_metrics"]["examples"] == 4
    assert set(report["timings"]) == {"feature_extraction", "fit_linear_head", "total"}
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # train and val features
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 2)
    images = np.stack([np.asarray(Image.open(p), dtype="float32")
                       for p in sorted((data / "red").glob("*.png"))[:2]])
    probs = model.predict(images, verbose=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_augment_is_refused_in_feature_extraction_mode(tmp_path, capsys):
    data = _folder(tmp_path / "data", per_class=2)
    code = main(["train", str(data), "--weights", "none", "--image-size", "32",
                 "--mode", "feature-extraction", "--augment", "light"])
    assert code == 2
    assert "--augment has no effect with --mode feature-extraction" in capsys.readouterr().err


def test_unknown_classifier_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path), "--mode", "feature-extraction", "--classifier", "svm"])
    assert exc.value.code == 2
