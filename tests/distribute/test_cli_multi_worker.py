"""``kerastl train --strategy multi_worker`` end to end: two localhost workers (TF_CONFIG)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _folder(root, per_class=8, size=24):
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = np.array([200, 40, 40]) if c == 0 else np.array([40, 40, 200])
            pixels = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_kerastl_train_on_two_localhost_workers(tmp_path):
    data = _folder(tmp_path / "data")
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    cmd = [sys.executable, "-m", "kerastl", "train", str(data), "--backbone", "mobilenet_v2",
           "--weights", "none", "--image-size", "32", "--head-epochs", "1", "--epochs", "1",
           "--batch-size", "4", "--validation-split", "0.25", "--strategy", "multi_worker",
           "--patience", "5"]
    procs, logs = [], []
    try:
        for index in range(2):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            out = open(tmp_path / f"out-{index}.txt", "w")  # noqa: SIM115
            logs.append(out)
            # Both in one folder, without --output: the chief names the run, the other
            # worker writes nothing.
            procs.append(subprocess.Popen(
                cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="3",
                         PYTHONPATH=ROOT)))
        codes = [p.wait(timeout=540) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    text = [(tmp_path / f"out-{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], text[0][-3000:] + text[1][-3000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mobilenet_v2"]
    run = tmp_path / "runs" / "mobilenet_v2"
    assert {"model.keras", "report.json", "labels.txt", "curves.png"} <= {
        p.name for p in run.iterdir()}
    report = json.loads((run / "report.json").read_text())
    assert report["config"]["strategy"] == "multi_worker"
    assert report["history"]["phase"] == [1, 2]
    assert all(np.isfinite(report["history"]["loss"]))
    # Same weights on both workers: both evaluate the validation split identically.
    accuracy = [[line for line in t.splitlines() if line.startswith("val accuracy:")]
                for t in text]
    assert accuracy[0] and accuracy[0] == accuracy[1]
    assert f"model            {os.path.join('runs', 'mobilenet_v2', 'model.keras')}" in text[0]
    assert "model.keras" not in text[1]
