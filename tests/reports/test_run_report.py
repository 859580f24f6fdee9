import json

import numpy as np
import tensorflow as tf

from kerastl.data.splits import Splits
from kerastl.training.run import train_and_report


def _ds(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype("int32")
    x = np.zeros((n, 32, 32, 3), "float32")
    x[..., 0] = np.where(y == 1, 220.0, 30.0)[:, None, None]
    x += rng.normal(0, 20, x.shape).astype("float32")
    return tf.data.Dataset.from_tensor_slices((np.clip(x, 0, 255), y)).batch(8)


def test_training_run_writes_report_and_errors_grid(tmp_path):
    splits = Splits(train=_ds(16, 0), val=_ds(8, 1), test=_ds(12, 2), class_names=["a", "b"],
                    counts={"train": 16, "val": 8, "test": 12}, image_size=(32, 32))
    report = train_and_report(splits, backbone="mobilenet_v2", weights=None, output=tmp_path,
                              head_epochs=1, epochs=0, verbose=0)
    saved = json.loads((tmp_path / "report.json").read_text())
    m = saved["test_metrics"]
    assert m["examples"] == 12 and sum(map(sum, m["confusion_matrix"])) == 12
    correct = sum(m["confusion_matrix"][i][i] for i in range(2))
    assert m["accuracy"] == correct / 12
    assert set(m["per_class"]) == {"a", "b"}
    assert saved["history"]["phase"] == [1] and "phase1" in saved["timings"]
    for name in ("model.keras", "curves.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert report["files"]["errors"].endswith("errors.png")
    assert (tmp_path / "errors.png").stat().st_size > 0
