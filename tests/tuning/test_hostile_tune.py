"""`kerastl tune` on hostile or mistaken input: nothing outside its own project is deleted,
a search where no trial completed fails, and config mistakes get a message that fits."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import pytest
import yaml
from tuning_helpers import TINY_BACKBONE, write_config, write_image_folder

import kerastl as ktl
from kerastl.cli.main import main
from kerastl.errors import SearchFailedError, SearchInputError, UserInputError
from kerastl.paths import MARKER


def _run(capsys, *argv):
    code = main(["tune", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _tree(root: pathlib.Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the empty folders), by relative path."""
    digests = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = pathlib.Path(dirpath, name)
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        for name in dirnames:
            digests[str(pathlib.Path(dirpath, name).relative_to(root)) + "/"] = "dir"
    return digests


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """The shipped layout: configs and notes in ./tuning, a data folder, a file above."""
    work = tmp_path / "work"
    (work / "tuning").mkdir(parents=True)
    (work / "tuning" / "notes.txt").write_text("keep\n")
    (work / "keep.txt").write_text("keep too\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious.txt").write_text("do not delete\n")
    write_image_folder(work / "images", per_class=4)
    monkeypatch.chdir(work)
    return tmp_path


@pytest.mark.parametrize("project_name", [".", "..", "a/b", "", "ABSOLUTE"])
def test_overwrite_with_unsafe_project_name_deletes_nothing(project_name, planted, capsys):
    if project_name == "ABSOLUTE":
        project_name = str(planted / "outside")
    config = write_config(planted / "work" / "tuning" / "mine.yaml", pathlib.Path("images"),
                          pathlib.Path("tuning"), project_name=project_name, max_trials=1)
    before = _tree(planted)
    code, _, err = _run(capsys, config, "--overwrite")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kerastl: error: project_name must be a "
                                                   "folder-safe project name")
    assert f"Received: project_name={project_name!r}" in err
    assert _tree(planted) == before


def test_library_search_refuses_unsafe_names_and_unmarked_folders(tiny_data, tmp_path):
    train, val = tiny_data
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep\n")
    before = _tree(tmp_path)
    for name in ("..", ".", "x/../..", str(tmp_path)):
        with pytest.raises(UserInputError, match="folder-safe project name"):
            ktl.tuning.search(train, val, backbones=(TINY_BACKBONE,), weights=None,
                              directory=tmp_path / "mine", project_name=name, overwrite=True)
    with pytest.raises(UserInputError, match="Refusing to overwrite .*mine: kerastl did not "
                                             "create it"):
        ktl.tuning.search(train, val, backbones=(TINY_BACKBONE,), weights=None,
                          directory=tmp_path, project_name="mine", overwrite=True)
    assert _tree(tmp_path) == before


def test_overwrite_refuses_unmarked_and_pre_marker_projects(planted, capsys):
    tuning = planted / "work" / "tuning"
    (tuning / "mine").mkdir()
    (tuning / "mine" / "mine.yaml").write_text("user: config\n")
    old = tuning / "old_project"  # what kerastl left before it marked its folders
    (old / "trial_0").mkdir(parents=True)
    (old / "oracle.json").write_text("{}")
    (old / "tuner0.json").write_text("{}")
    (tuning / "elsewhere").mkdir()
    (tuning / "elsewhere" / MARKER).write_text("{}")
    (tuning / "link").symlink_to(tuning / "elsewhere")  # a link to a marked folder
    before = _tree(planted)
    for name in ("mine", "old_project", "link"):
        config = write_config(tuning / "c.yaml", pathlib.Path("images"),
                              pathlib.Path("tuning"), project_name=name, max_trials=1)
        code, _, err = _run(capsys, config, "--overwrite")
        assert code == 2 and err.count("\n") == 1
        assert f"Refusing to overwrite tuning/{name}: kerastl did not create it" in err
        assert "Delete it yourself" in err
    (tuning / "c.yaml").unlink()
    assert _tree(planted) == before


@pytest.mark.slow
def test_overwrite_clears_only_its_own_marked_project(planted, capsys):
    tuning = planted / "work" / "tuning"
    config = write_config(tuning / "mine.yaml", pathlib.Path("images"), pathlib.Path("tuning"),
                          project_name="proj", max_trials=1)
    code, out, _ = _run(capsys, config)
    assert code == 0 and "best val_accuracy: " in out
    marker = json.loads((tuning / "proj" / MARKER).read_text())
    assert marker["created_by"] == "kerastl" and marker["kind"] == "tuning project"
    (tuning / "proj" / "left_over.txt").write_text("from the last search\n")
    before = {k: v for k, v in _tree(planted).items() if not k.startswith("work/tuning/proj")}
    code, out, _ = _run(capsys, config, "--overwrite")
    assert code == 0
    assert not (tuning / "proj" / "left_over.txt").exists()
    assert (tuning / "proj" / MARKER).is_file() and (tuning / "proj" / "trial_0").is_dir()
    after = {k: v for k, v in _tree(planted).items() if not k.startswith("work/tuning/proj")}
    assert after == before  # the config, notes, data and everything outside untouched


@pytest.mark.parametrize("max_trials", [2, 3])  # 3: KerasTuner's consecutive-failure stop
def test_tune_where_every_trial_failed_exits_2_naming_the_error(max_trials, planted, capsys):
    bad = planted / "work" / "bad.weights.h5"
    bad.write_text("not an HDF5 file\n")
    config = write_config(planted / "work" / "tuning" / "c.yaml", pathlib.Path("images"),
                          pathlib.Path("tuning"), weights=str(bad), max_trials=max_trials)
    code, out, err = _run(capsys, config)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerastl: error: ")
    assert f"failed with WeightsUnavailableError: Could not load weights file {bad}" in err
    assert "trial 0 failed" in err and "(results in tuning/tiny)" in err
    assert "best val_accuracy" not in out
    results = json.loads((planted / "work" / "tuning" / "tiny" / "results.json").read_text())
    assert [r["status"] for r in results] == ["FAILED"] * max_trials


def test_library_search_raises_when_no_trial_completed(tiny_data, tmp_path):
    train, val = tiny_data
    bad = tmp_path / "bad.weights.h5"
    bad.write_text("not an HDF5 file\n")
    with pytest.raises(SearchFailedError, match="No trial completed \\(2 failed\\)") as info:
        ktl.tuning.search(train, val, backbones=(TINY_BACKBONE,), weights=str(bad),
                          tuner="random", max_trials=2, max_epochs=1, directory=tmp_path,
                          project_name="p", plots=False)
    assert isinstance(info.value, SearchInputError) and isinstance(info.value, ValueError)
    assert info.value.trial_id == "0"
    assert info.value.result.best_trial_id is None
    assert [r["status"] for r in info.value.result.trials] == ["FAILED", "FAILED"]


def test_a_trial_error_that_is_not_the_input_is_a_plain_search_failure(tiny_data, tmp_path):
    train, val = tiny_data

    class Broken(ktl.tuning.TransferHyperModel):
        def build(self, hp):
            raise RuntimeError("a bug in the hypermodel")

    hm = Broken(3, (32, 32), backbones=(TINY_BACKBONE,), weights=None)
    with pytest.raises(SearchFailedError, match="trial 0 failed with RuntimeError: a bug in "
                                                "the hypermodel") as info:
        ktl.tuning.search(train, val, hypermodel=hm, tuner="random", max_trials=1,
                          directory=tmp_path, project_name="p", plots=False)
    assert not isinstance(info.value, UserInputError)


def test_config_that_is_a_folder_says_so(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path)
    assert code == 2
    assert err == (f"kerastl: error: Tuning config {tmp_path} is a folder; pass a YAML file "
                   "(examples in tuning/, e.g. tuning/random_quick.yaml).\n")


@pytest.mark.parametrize("where", ["config", "flag"])
def test_export_name_is_checked_before_the_search(where, planted, capsys):
    extra = {"export": {"name": "../evil"}} if where == "config" else {}
    config = write_config(planted / "work" / "tuning" / "c.yaml", pathlib.Path("images"),
                          pathlib.Path("tuning"), **extra)
    flags = ["--export", "../evil"] if where == "flag" else []
    code, _, err = _run(capsys, config, *flags)
    assert code == 2 and "folder-safe model name" in err and "'../evil'" in err
    assert not (planted / "work" / "tuning" / "tiny").exists()  # no trial ran


def test_default_project_name_is_the_config_name_made_folder_safe(tmp_path):
    from kerastl.tuning.config import load_config

    path = tmp_path / "my search (v2).yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "folder", "path": "x",
                                             "image_size": 32}}))
    assert load_config(path)["project_name"] == "my_search_v2_"
