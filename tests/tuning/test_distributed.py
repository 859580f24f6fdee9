"""Distributed search on KerasTuner's chief/worker mechanism: `kerastl tune --chief/--worker`.

A chief and two workers on 127.0.0.1 share one oracle (gRPC); together they
complete the budget with no trial run twice and every result in the chief's oracle.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
from tuning_helpers import write_config, write_image_folder

BUDGET = 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_complete_the_budget(tmp_path):
    data = write_image_folder(tmp_path / "images")
    config = write_config(tmp_path / "tiny.yaml", data, tmp_path / "tuning", max_trials=BUDGET)
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    base = [sys.executable, "-m", "kerastl", "tune", str(config), "--oracle-ip", "127.0.0.1",
            "--oracle-port", port]
    procs = {}
    try:
        procs["chief"] = subprocess.Popen(base + ["--chief", "--overwrite"], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)
        for worker in ("tuner0", "tuner1"):
            procs[worker] = subprocess.Popen(base + ["--worker", "--tuner-id", worker], env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True)
        outputs = {}
        for name in ("tuner0", "tuner1", "chief"):
            out, err = procs[name].communicate(timeout=420)
            outputs[name] = (procs[name].returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (code, out, err) in outputs.items():
        assert code == 0, f"{name} exited {code}:\n{out[-2000:]}\n{err[-3000:]}"

    ran = {}
    for worker in ("tuner0", "tuner1"):
        match = re.search(r"ran (\d+) trials \(([^)]*)\)", outputs[worker][1])
        assert match, outputs[worker][1]
        ran[worker] = [t for t in match.group(2).split(", ") if t and t != "none"]
        assert len(ran[worker]) == int(match.group(1))
    all_run = ran["tuner0"] + ran["tuner1"]
    assert sorted(all_run) == [str(i) for i in range(BUDGET)]  # no duplicates, none lost

    project = tmp_path / "tuning" / "tiny"
    oracle = json.loads((project / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == [str(i) for i in range(BUDGET)]
    assert oracle["ongoing_trials"] == {}
    trials = [json.loads(p.read_text()) for p in sorted(project.glob("trial_*/trial.json"))]
    assert [t["trial_id"] for t in trials] == [str(i) for i in range(BUDGET)]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert all("val_accuracy" in t["metrics"]["metrics"] for t in trials)
    rows = json.loads((project / "results.json").read_text())
    assert [r["trial_id"] for r in rows] == [str(i) for i in range(BUDGET)]
    assert all(r["score"] is not None for r in rows)
    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert best["score"] == max(r["score"] for r in rows)
    assert "best val_accuracy" in outputs["chief"][1]
