import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kerastl.cli.main import main


def _folder(root, classes=("cat", "dog"), per_class=8, size=24):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = np.array([200, 40, 40]) if c == 0 else np.array([40, 40, 200])
            pixels = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root



def _train_args(data, *flags) -> list[str]:
    """``kerastl train`` on the tiny folder: MobileNetV2, no weights, 32 px, then ``flags``."""
    return ["train", str(data), "--backbone", "mobilenet_v2", "--weights", "none",
            "--image-size", "32", *flags]

def test_train_missing_folder_is_one_line_exit_2(capsys):
    assert main(["train", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kerastl: error: DATA_DIR /nonexistent does not exist"]


def test_cli_subprocess_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "kerastl", "train", "/nonexistent"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "kerastl: error: DATA_DIR /nonexistent does not exist"]
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train"])
    assert info.value.code == 2
    assert "kerastl: error:" in capsys.readouterr().err
    assert main(["train", "/tmp", "--backbone", "resnet5O"]) == 2
    assert "Unknown backbone 'resnet5O'" in capsys.readouterr().err


def test_single_class_folder_is_refused(tmp_path, capsys):
    _folder(tmp_path / "data", classes=("only",))
    code = main(["train", str(tmp_path / "data"), "--weights", "none", "--image-size", "32"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class" in err[0].lower()


def test_backbones_table(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "convnext_xlarge" in out
    row = next(line for line in out.splitlines() if line.startswith("efficientnet_lite0 "))
    assert row.split()[1:3] == ["224", "4.7"] and row.rstrip().endswith("yes")
    text = next(line for line in out.splitlines() if line.startswith("minilm_l6 "))
    assert text.split()[1:5] == ["128", "22.7", "mean", "384"] and text.endswith("yes")
    assert main(["backbones", "--json", "--family", "vgg"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["vgg16", "vgg19"]


@pytest.mark.slow
def test_train_writes_model_report_and_plots(tmp_path, capsys):
    import keras

    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    args = _train_args(data, "--head-epochs", "2", "--epochs", "1", "--batch-size", "4",
                       "--validation-split", "0.25", "--output", str(out))
    assert main(args) == 0
    for name in ("model.keras", "report.json", "curves.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "labels.txt").read_text().split() == ["cat", "dog"]
    report = json.loads((out / "report.json").read_text())
    assert report["class_names"] == ["cat", "dog"]
    assert report["history"]["phase"][:2] == [1, 1]
    assert report["counts"]["val"] == 4
    val = report["val_metrics"]
    assert val["examples"] == 4
    assert np.array(val["confusion_matrix"]).sum() == 4
    assert set(val["per_class"]) == {"cat", "dog"}
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 2)
    # never overwrite a trained model by accident
    assert main(args) == 2
    assert "already holds a trained model" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.weights
def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "Test accuracy on 100 Fashion-MNIST test images" in out
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["backbone"] == "efficientnet_lite0"
    assert report["counts"] == {"train": 100, "val": 50, "test": 100}
    assert 0.0 <= report["test_metrics"]["accuracy"] <= 1.0
    assert (tmp_path / "demo" / "confusion_matrix.png").exists()
    for key in ("model", "labels", "report", "curves", "confusion_matrix", "errors"):
        assert f"  {key:<17}{report['files'][key]}" in out  # every file written is listed


def test_train_schedule_per_group_rates_and_gradual_unfreezing_flags(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    args = _train_args(data, "--head-epochs", "1", "--epochs", "3", "--batch-size", "4",
                       "--validation-split", "0.25", "--schedule", "onecycle", "--warmup", "0.3",
                       "--layerwise-lr-decay", "0.5", "--gradual-unfreeze-every", "1",
                       "--unfreeze-groups", "3", "--patience", "10", "--output", str(out))
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    assert (config["schedule"], config["warmup"]) == ("onecycle", 0.3)
    assert (config["layerwise_lr_decay"], config["gradual_unfreeze_every"]) == (0.5, 1)
    assert report["history"]["phase"] == [1, 2, 2, 2]
    # A bad combination is one line and exit 2 (gradual unfreezing cannot resume).
    bad = args[:-2] + ["--backup-dir", str(tmp_path / "b"), "--output", str(tmp_path / "r2")]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gradual_unfreeze_every" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(args[:-2] + ["--schedule", "warm", "--output", str(tmp_path / "r3")])
    assert exit_info.value.code == 2


def test_train_optimizer_momentum_and_l2_flags(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    args = _train_args(data, "--head-epochs", "1", "--epochs", "1", "--batch-size", "4",
                       "--validation-split", "0.25", "--optimizer", "sgd", "--momentum", "0.8",
                       "--l2", "1e-4", "--output", str(out))
    assert main(args) == 0
    config = json.loads((out / "report.json").read_text())["config"]
    assert (config["optimizer"], config["momentum"], config["l2"]) == ("sgd", 0.8, 1e-4)
    import keras

    model = keras.models.load_model(out / "model.keras")
    head = model.get_layer("predictions").get_config()
    assert head["kernel_regularizer"]["config"]["l2"] == pytest.approx(1e-4)
    # momentum with Adam: one line, exit 2, nothing written.
    bad = args[:-4] + ["--optimizer", "adam", "--output", str(tmp_path / "r2")]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "momentum applies" in err[0]
    assert not (tmp_path / "r2").exists()  # refused before any folder was made
    assert main(args[:-2] + ["--l2", "0", "--output", str(tmp_path / "r3")]) == 2
    assert "--l2 must be a positive number" in capsys.readouterr().err


def test_train_lr_find_writes_its_plot_and_uses_the_suggestion(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    args = _train_args(data, "--head-epochs", "1", "--epochs", "1", "--batch-size", "4",
                       "--validation-split", "0.25", "--schedule", "constant", "--lr-find",
                       "--output", str(out))
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    found = report["lr_find"]
    assert 1e-7 <= found["suggestion"] <= 10.0 and found["steps"] >= 5
    assert report["history"]["learning_rate"][0] == pytest.approx(found["suggestion"], rel=1e-5)
    assert (out / "lr_find.png").stat().st_size > 0
    assert report["files"]["lr_find"] == str(out / "lr_find.png")
    bad = args[:-2] + ["--mode", "feature-extraction", "--output", str(tmp_path / "r2")]
    assert main(bad) == 2
    assert "--lr-find chooses a fine-tuning rate" in capsys.readouterr().err
