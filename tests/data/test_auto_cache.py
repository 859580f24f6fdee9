"""cache="auto": memory under a budget, else a temporary file cache that is removed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from data_helpers import collect, make_class_folder

import kerastl as ktl
from kerastl.data import pipeline


def caches(folder) -> list[str]:
    """The automatic cache folders in ``folder`` (TensorFlow's autograph also writes there)."""
    return sorted(n for n in os.listdir(folder) if n.startswith("kerastl-cache-"))


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """A private $TMPDIR and a fresh automatic cache folder for this test."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setattr(pipeline, "_auto_dir", None)
    yield root
    pipeline.remove_auto_caches()


def test_split_over_the_memory_budget_is_cached_in_a_temporary_file(class_folder, own_tmp,
                                                                    monkeypatch, caplog):
    monkeypatch.setattr(pipeline, "AUTO_CACHE_BYTES", 1000)  # 16 images of 8x8x3 = 3072 bytes
    with caplog.at_level("INFO", logger="kerastl.data.pipeline"):
        s = ktl.data.image_folder(class_folder, image_size=8, validation_split=0.2, seed=3,
                                  deterministic=True)
    assert "Caching the train split on disk" in caplog.text
    assert "Caching the val split" not in caplog.text  # 4 images: 768 bytes, in memory
    (folder,) = caches(own_tmp)
    assert folder.startswith(f"kerastl-cache-{os.getpid()}-")
    (split_dir,) = os.listdir(own_tmp / folder)
    assert split_dir.startswith("train-")
    x1, y1 = collect(s.train)  # the first pass writes the cache
    assert sorted(os.listdir(own_tmp / folder / split_dir)) == [
        "images.data-00000-of-00001", "images.index"]
    # The cache holds uint8 images: 16 x 8 x 8 x 3 bytes of pixels at least.
    assert os.path.getsize(own_tmp / folder / split_dir / "images.data-00000-of-00001") >= 3072
    x2, y2 = collect(s.train)  # read back from the file: the same images
    assert x1.shape == (16, 8, 8, 3) and x1.dtype == np.float32
    assert sorted(map(bytes, np.sort(x1.reshape(16, -1), axis=1))) == \
        sorted(map(bytes, np.sort(x2.reshape(16, -1), axis=1)))
    assert sorted(y1.tolist()) == sorted(y2.tolist())
    pipeline.remove_auto_caches()
    assert caches(own_tmp) == []


def test_file_cache_gives_the_same_epochs_as_the_memory_cache(class_folder, own_tmp,
                                                               monkeypatch):
    kwargs = dict(image_size=8, validation_split=0, seed=5, deterministic=True)
    memory = ktl.data.image_folder(class_folder, **kwargs)
    monkeypatch.setattr(pipeline, "AUTO_CACHE_BYTES", 0)
    disk = ktl.data.image_folder(class_folder, **kwargs)
    for _ in range(2):  # epoch orders keyed by the same pass counter
        xm, ym = collect(memory.train)
        xd, yd = collect(disk.train)
        np.testing.assert_array_equal(xm, xd)
        np.testing.assert_array_equal(ym, yd)
    assert len(caches(own_tmp)) == 1


def test_split_over_both_budgets_is_not_cached(class_folder, own_tmp, monkeypatch, caplog):
    monkeypatch.setattr(pipeline, "AUTO_CACHE_BYTES", 0)
    monkeypatch.setattr(pipeline, "AUTO_DISK_CACHE_BYTES", 100)
    with caplog.at_level("INFO", logger="kerastl.data.pipeline"):
        s = ktl.data.image_folder(class_folder, image_size=8, validation_split=0)
    assert "Not caching the train split (0.0 GiB of images, over the memory and disk" \
        in caplog.text
    x, _ = collect(s.train)
    assert len(x) == 20
    (folder,) = caches(own_tmp)
    assert os.listdir(own_tmp / folder) == []  # no split folder was made


def test_folders_of_killed_processes_are_removed(own_tmp):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = own_tmp / f"kerastl-cache-{int(gone.stdout)}-abc"
    (dead / "train-x").mkdir(parents=True)
    (dead / "train-x" / "images.index").write_bytes(b"x" * 10)
    alive = own_tmp / f"kerastl-cache-{os.getppid()}-def"  # pytest's parent: running
    alive.mkdir()
    other = own_tmp / "kerastl-cache-notapid"
    other.mkdir()
    mine = pipeline.auto_cache_dir()
    assert caches(own_tmp) == sorted([alive.name, other.name, os.path.basename(mine)])


@pytest.mark.slow  # a fresh Python with TensorFlow: ~10 s
def test_the_file_cache_is_removed_when_the_process_ends(tmp_path):
    root = tmp_path / "imgs"
    make_class_folder(str(root), ["a", "b"], [3, 3], np.random.default_rng(0))
    script = (
        "import os, tempfile, kerastl as ktl\n"
        "from kerastl.data import pipeline\n"
        f"tempfile.tempdir = {str(tmp_path)!r}\n"
        "pipeline.AUTO_CACHE_BYTES = 0\n"
        f"s = ktl.data.image_folder({str(root)!r}, image_size=8, validation_split=0)\n"
        "n = sum(int(x.shape[0]) for x, _ in s.train)\n"
        "d = pipeline.auto_cache_dir()\n"
        "print(n, os.path.basename(d), sorted(os.listdir(os.path.join(d, os.listdir(d)[0]))))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    count, name, files = out.stdout.strip().split(" ", 2)
    assert count == "6" and name.startswith("kerastl-cache-")
    assert files == "['images.data-00000-of-00001', 'images.index']"
    assert caches(tmp_path) == []  # the cache folder went with the process


def test_shuffle_buffer_is_bounded_in_images_and_bytes():
    assert pipeline.shuffle_buffer(100, (16, 16), "stretch") == 100
    assert pipeline.shuffle_buffer(10_000, (16, 16), "stretch") == 2048
    # 224 px: 150,528 bytes an image, 64 MiB / 150,528 = 445 images
    assert pipeline.shuffle_buffer(10_000, (224, 224), "stretch") == 445
    assert pipeline.shuffle_buffer(0, (224, 224), "stretch") == 1


def test_a_forked_child_leaves_its_parents_folder_alone(own_tmp, monkeypatch):
    parent = own_tmp / f"kerastl-cache-{os.getpid() + 1}-abc"  # made by another process
    (parent / "train-x").mkdir(parents=True)
    monkeypatch.setattr(pipeline, "_auto_dir", str(parent))
    pipeline.remove_auto_caches()
    assert pipeline._auto_dir is None and os.listdir(parent) == ["train-x"]
    mine = pipeline.auto_cache_dir()
    pipeline.remove_auto_caches()
    assert not os.path.exists(mine)
