"""Files kerastl writes: atomic, with the umask's mode, and no stale temporary files."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kerastl.atomic import (
    TEMP_PREFIX,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temp_files,
    temp_name,
)
from kerastl.cli.main import main


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_follows_the_umask(mask, mode, tmp_path):
    with _umask(mask):
        path = atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert path.read_text() == '{"x": 1}'
    assert _mode(path) == mode
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "model.keras", "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as tmp:
        assert tmp.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
        assert tmp.name.endswith("-model.keras") and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_stale_temporaries_of_dead_processes_go_live_ones_and_others_stay(tmp_path):
    dead = tmp_path / temp_name("model.keras", pid=_dead_pid())
    live = tmp_path / temp_name("model.keras")  # this process: a write in progress
    dead.write_text("stale")
    live.write_text("in progress")
    kept = ["tmpab12cd34.keras", f"{TEMP_PREFIX}notapid-model.keras", "notes.txt"]
    for name in kept:
        (tmp_path / name).write_text("user")
    (tmp_path / temp_name("folder", pid=_dead_pid())).mkdir()  # never a folder
    assert remove_stale_temp_files(tmp_path) == [dead]
    assert not dead.exists() and live.read_text() == "in progress"
    assert all((tmp_path / name).read_text() == "user" for name in kept)
    assert len(os.listdir(tmp_path)) == 5


def _images(root, size=24, per_class=6):
    rng = np.random.default_rng(0)
    for c, colour in enumerate(([200, 40, 40], [40, 40, 200])):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_train_run_files_follow_the_umask_and_stale_temporaries_are_removed(tmp_path, capsys):
    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    stale = run / temp_name("model.keras", pid=_dead_pid())  # a train killed while saving
    stale.write_bytes(b"PK half a zip")
    live = run / temp_name("report.json")  # another process still writing
    live.write_text("{")
    with _umask(0o022):
        code = main(["train", str(data), "--backbone", "mobilenet_v2", "--weights", "none",
                     "--image-size", "32", "--head-epochs", "1", "--epochs", "1",
                     "--batch-size", "4", "--validation-split", "0.25", "--output", str(run)])
    assert code == 0, capsys.readouterr().err
    assert not stale.exists() and live.read_text() == "{"
    live.unlink()
    written = sorted(p.name for p in run.iterdir())
    assert {"model.keras", "report.json", "labels.txt", "curves.png"} <= set(written)
    assert not [n for n in written if n.startswith(TEMP_PREFIX) or n.startswith("tmp")]
    modes = {p.name: oct(_mode(p)) for p in run.rglob("*")}
    assert modes == {name: "0o644" for name in written}  # not mkstemp's 0o600
