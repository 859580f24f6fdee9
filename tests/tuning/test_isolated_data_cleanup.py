"""--isolate-trials: the copy of the data is removed when the search ends, unless kept."""

from __future__ import annotations

import os

import numpy as np
import pytest
from tuning_helpers import TINY_BACKBONE

import kerastl as ktl
from kerastl.errors import SearchFailedError
from kerastl.tuning import isolate
from kerastl.tuning.tuner import KerastlTuner

FIXED = {"augmentation": "none", "head_units": 0, "optimizer": "adam"}


def _files(root) -> list[str]:
    """Every file under ``root``, relative, sorted."""
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def _search_without_trials(tiny_data, tmp_path, monkeypatch, **kwargs):
    """An isolated search whose tuner runs no trial (so it fails fast, as a real one can)."""
    seen = {}

    def no_trials(self, *args, **kw):
        seen["files"] = _files(self.data_dir)  # what the trials would have read
        seen["saved_at"] = os.stat(self.data_dir / "complete").st_mtime_ns

    monkeypatch.setattr(KerastlTuner, "search", no_trials)
    train, val = tiny_data
    with pytest.raises(SearchFailedError, match="No trial completed"):
        ktl.tuning.search(train, val, backbones=(TINY_BACKBONE,), weights=None, seed=1,
                          directory=tmp_path, project_name="iso", tuner="random",
                          max_trials=1, max_epochs=1, isolate_trials=True, fixed=FIXED,
                          plots=False, **kwargs)
    return seen["files"], seen["saved_at"]


def test_data_copy_is_removed_when_the_search_ends(tiny_data, tmp_path, monkeypatch):
    saved, _ = _search_without_trials(tiny_data, tmp_path, monkeypatch)
    assert "complete" in saved
    assert any(f.startswith("train/") for f in saved) and any(f.startswith("val/") for f in saved)
    project = tmp_path / "iso"
    assert project.is_dir() and not (project / "isolated_data").exists()
    assert not any(f.startswith("isolated_data") for f in _files(project))


def test_keep_cache_keeps_the_copy_and_a_resume_reuses_it(tiny_data, tmp_path, monkeypatch):
    saved, saved_at = _search_without_trials(tiny_data, tmp_path, monkeypatch,
                                             keep_cache=True)
    copy = tmp_path / "iso" / "isolated_data" / "local"
    assert _files(copy) == saved
    # The next search (a resume) reads the kept copy, not a new one, then removes it.
    assert _search_without_trials(tiny_data, tmp_path, monkeypatch) == (saved, saved_at)
    assert (tmp_path / "iso").is_dir() and not (tmp_path / "iso" / "isolated_data").exists()


def test_save_remove_and_per_worker_folders(tiny_data, tmp_path):
    train, val = tiny_data
    project = tmp_path / "proj"
    project.mkdir()
    w1 = isolate.data_dir_for(project, "worker1")
    w2 = isolate.data_dir_for(project, "tuner/../2")
    assert w1 == str(project / "isolated_data" / "worker1")
    assert w2 == str(project / "isolated_data" / "tuner_.._2")
    assert isolate.data_dir_for(project) == str(project / "isolated_data" / "local")
    # A copy killed while saving (no "complete" marker) is saved again from scratch.
    os.makedirs(os.path.join(w1, "train"))
    with open(os.path.join(w1, "train", "stale"), "w") as f:
        f.write("half")
    isolate.save_datasets(train, val, w1)
    assert "train/stale" not in _files(w1) and "complete" in _files(w1)
    isolate.save_datasets(train, val, w2)
    loaded_train, loaded_val = isolate.load_datasets(w1)
    x, y = next(iter(loaded_val))
    assert x.shape == (12, 32, 32, 3) and sorted(np.asarray(y).tolist()) == [0] * 4 + [1] * 4 \
        + [2] * 4
    assert sum(int(b[0].shape[0]) for b in loaded_train) == 24
    isolate.remove_datasets(w1)  # the other worker's copy stays, and so does the parent
    assert sorted(os.listdir(project / "isolated_data")) == ["tuner_.._2"]
    isolate.remove_datasets(w2)
    assert os.listdir(project) == []


def test_keep_cache_must_be_a_bool(tiny_data, tmp_path):
    train, val = tiny_data
    with pytest.raises(ValueError, match=r"keep_cache must be True or False\. Received: 'yes'"):
        ktl.tuning.search(train, val, backbones=(TINY_BACKBONE,), weights=None,
                          directory=tmp_path, keep_cache="yes")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("keep", [False, True])
def test_cli_keep_cache_flag(keep, tmp_path, monkeypatch, capsys):
    from tuning_helpers import write_config, write_image_folder

    from kerastl.cli.main import main

    monkeypatch.setattr(KerastlTuner, "search", lambda self, *a, **k: None)  # no trial
    config = write_config(tmp_path / "c.yaml", write_image_folder(tmp_path / "imgs", 4),
                          tmp_path / "tuning")
    argv = ["tune", str(config), "--isolate-trials"] + (["--keep-cache"] if keep else [])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "No trial completed" in err, err
    copy = tmp_path / "tuning" / "tiny" / "isolated_data"
    if keep:
        assert sorted(os.listdir(copy)) == ["local"] and "complete" in _files(copy / "local")
    else:
        assert not copy.exists() and (tmp_path / "tuning" / "tiny").is_dir()
