"""Exports started at the same time never lose one another: distinct, complete versions.

Two ``kerastl export`` runs used to pick the same "next" version; both reported
success and one export was lost. A version is now claimed by renaming the
complete export onto its number, which fails when another export took it first,
and the loser takes the next number. ``models.config`` is listed and written
under a lock.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import CLASS_NAMES, tiny_classifier
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

import kerastl as ktl
from kerastl.export import saved_model
from kerastl.export.consumers import run_consumers
from kerastl.export.samples import sample_images
from kerastl.export.verify import requests

pytestmark = pytest.mark.slow


def _claim(staging: str, model_dir: str, barrier, queue) -> None:
    barrier.wait()  # all children rename at once
    metadata = json.loads((Path(staging) / "assets.extra" / "kerastl.json").read_text())
    version = saved_model._claim_next_version(Path(staging), Path(model_dir), 1, metadata)
    saved_model.write_models_config(Path(model_dir).parent)
    queue.put(version)


def test_twenty_exports_claim_versions_1_to_20(tmp_path):
    model = tiny_classifier(seed=2)
    first = ktl.export_saved_model(model, tmp_path / "template", name="pets",
                                   class_names=CLASS_NAMES)
    base = tmp_path / "SavedModels"
    model_dir = base / "pets"
    model_dir.mkdir(parents=True)
    stagings = []
    for i in range(20):  # 20 complete exports, as export_saved_model stages them
        staging = model_dir / f".incomplete-1-{i}-00000000"
        shutil.copytree(first, staging)
        stagings.append(staging)
    context = multiprocessing.get_context("fork")  # the children touch files only
    barrier, queue = context.Barrier(20), context.Queue()
    children = [context.Process(target=_claim, args=(str(s), str(model_dir), barrier, queue))
                for s in stagings]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0] * 20
    claimed = sorted(queue.get(timeout=10) for _ in range(20))
    assert claimed == list(range(1, 21))
    assert saved_model.versions(model_dir) == list(range(1, 21))
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".incomplete")]
    for version in range(1, 21):
        meta = json.loads((model_dir / str(version) / "assets.extra" / "kerastl.json")
                          .read_text())
        assert meta["version"] == version
    config = text_format.Parse((base / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == ["pets"]
    images = sample_images(4, (32, 32), seed=1)
    results = run_consumers({f"cpp@{v}": model_dir / str(v) for v in range(1, 21)},
                            requests(images))
    expected = model(images, training=False).numpy()
    for key, result in results.items():
        assert result.ok, (key, result.error)
        np.testing.assert_allclose(result.outputs["png/probabilities"], expected, atol=1e-5)


def test_concurrent_kerastl_export_processes_keep_every_version(tmp_path):
    model = tiny_classifier(seed=3)
    model.save(tmp_path / "pets.keras")
    base = tmp_path / "SavedModels"
    command = [sys.executable, "-m", "kerastl", "export", str(tmp_path / "pets.keras"),
               "--name", "pets", "--base-dir", str(base), "--no-warmup"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outputs]
    assert saved_model.versions(base / "pets") == [1, 2, 3]
    reported = sorted(int(line.rsplit("/", 1)[1].split()[0]) for out, err in outputs
                      for line in (out + err).splitlines() if line.startswith("Exported"))
    assert reported == [1, 2, 3], outputs
    for version in (1, 2, 3):
        assert (base / "pets" / str(version) / "variables" / "variables.index").is_file()
