"""The command line's own manners: --version, --help without TensorFlow, help on every
flag, --json summaries, train --export and --tensorboard."""

import argparse
import configparser
import contextlib
import io
import json
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
from test_cli import _folder, _train_args

import kerastl
from kerastl.cli.main import main

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"kerastl {kerastl.__version__}\n"


def test_version_is_the_distributions_or_setup_cfgs(monkeypatch):
    import importlib.metadata

    from kerastl import _version

    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(REPO / "setup.cfg")
    assert kerastl.__version__ == setup_cfg["metadata"]["version"]

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert _version.version() == setup_cfg["metadata"]["version"]


# The console script is a file named kerastl; a script of that name is the command too.
_AS_THE_COMMAND = """\
import sys
from kerastl.cli.main import build_parser

build_parser()
loaded = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print(",".join(loaded) or "none")
"""


def test_building_the_parser_imports_no_tensorflow(tmp_path):
    script = tmp_path / "kerastl"
    script.write_text(_AS_THE_COMMAND)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "none"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["--version"]])
def test_help_and_version_import_no_tensorflow(argv):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "kerastl", *argv],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: kerastl" if "--help" in argv else "kerastl ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "kerastl.cli.main" in imported
    assert not {"tensorflow", "keras", "numpy"} & imported


def test_every_public_name_resolves():
    import keras

    names = set(kerastl.__all__)
    assert {"build_classifier", "fine_tune", "export_saved_model", "data", "tuning",
            "distribute", "UserInputError"} <= names <= set(dir(kerastl))
    for name in names:
        assert getattr(kerastl, name) is not None
    assert callable(kerastl.data.image_folder) and callable(kerastl.tuning.search)
    assert callable(kerastl.distribute.get_strategy)
    assert keras.saving.get_registered_object("kerastl>Preprocess") is not None
    with pytest.raises(AttributeError, match="no attribute 'build_clasifier'"):
        kerastl.build_clasifier  # noqa: B018


_LAZY_NAMES = """\
import sys
import kerastl as ktl
assert "tensorflow" not in sys.modules
from kerastl import build_classifier, data
assert ktl.build_classifier is build_classifier and ktl.data is data
assert "tensorflow" in sys.modules
ktl._import_all()
import keras
assert keras.saving.get_registered_object("kerastl>Preprocess") is not None
assert all(getattr(ktl, name) is not None for name in ktl.__all__)
print("ok")
"""


@pytest.mark.slow
def test_the_command_imports_public_names_on_first_use(tmp_path):
    """In the kerastl command, ``ktl.X`` and ``from kerastl import X`` load TensorFlow
    (its C++ start-up lines filtered) when first used."""
    script = tmp_path / "kerastl"
    script.write_text(_LAZY_NAMES)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""


def _flags(parser, command=()):
    """(command, action) for every action of ``parser`` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, (*command, name))
        else:
            yield command, action


def test_every_flag_has_help():
    from kerastl.cli.main import SUBCOMMANDS, build_parser

    flags = list(_flags(build_parser()))
    assert {command[0] for command, _ in flags if command} == set(SUBCOMMANDS)
    missing = [(" ".join(command), action.option_strings or action.dest)
               for command, action in flags
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert missing == []


def test_augment_takes_only_known_policies(capsys):
    from kerastl.data.augment import POLICIES

    with pytest.raises(SystemExit) as info:
        main(["train", "data", "--augment", "heavy"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--augment: invalid choice: 'heavy'" in err
    assert all(repr(name) in err for name in POLICIES)


def _json_run(argv) -> tuple[int, dict | None, str]:
    """``main(argv)``: its status, stdout parsed as one JSON object (None when empty),
    and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    text = out.getvalue()
    return status, (json.loads(text) if text else None), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny ``kerastl train --json --export --tensorboard`` run shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    data = _folder(root / "data")
    argv = _train_args(data, "--head-epochs", "1", "--epochs", "1", "--batch-size", "4",
                       "--validation-split", "0.25", "--output", str(root / "run"), "--json",
                       "--export", "pets", "--export-dir", str(root / "served"),
                       "--tensorboard", str(root / "tb"))
    status, summary, err = _json_run(argv)
    assert status == 0, err
    return SimpleNamespace(root=root, data=data, summary=summary, stderr=err)


@pytest.mark.slow
def test_train_json_is_the_only_stdout(trained):
    summary = trained.summary
    assert summary["command"] == "train" and summary["kerastl_version"] == kerastl.__version__
    assert summary["run_dir"] == str(trained.root / "run") and summary["mode"] == "fine-tune"
    assert summary["class_names"] == ["cat", "dog"]
    assert summary["metrics"]["val"]["examples"] == 4
    assert 0.0 <= summary["metrics"]["val"]["accuracy"] <= 1.0
    assert "confusion_matrix" not in summary["metrics"]["val"]  # stays in report.json
    assert pathlib.Path(summary["files"]["model"]).is_file()
    report = json.loads(pathlib.Path(summary["files"]["report"]).read_text())
    assert report["val_metrics"]["accuracy"] == summary["metrics"]["val"]["accuracy"]
    assert "val accuracy:" in trained.stderr  # the human summary moved to stderr


@pytest.mark.slow
def test_evaluate_json(trained):
    model = trained.summary["files"]["model"]
    output = trained.root / "evaluation"
    status, summary, _ = _json_run(["evaluate", model, str(trained.data), "--output",
                                    str(output), "--json"])
    assert status == 0
    # the run's own data: its own validation split, the same figures as training's
    assert summary["command"] == "evaluate" and summary["split"] == "val"
    assert summary["metrics"]["examples"] == 4
    assert summary["metrics"]["accuracy"] == trained.summary["metrics"]["val"]["accuracy"]
    assert summary["output"] == str(output)
    assert json.loads((output / "report.json").read_text())["metrics"]["accuracy"] == (
        summary["metrics"]["accuracy"])


@pytest.mark.slow
def test_export_json(trained):
    model = trained.summary["files"]["model"]
    base = trained.root / "SavedModels"
    status, summary, _ = _json_run(["export", model, "--name", "pets", "--base-dir",
                                    str(base), "--no-warmup", "--json"])
    assert status == 0
    assert summary["command"] == "export" and summary["name"] == "pets"
    assert summary["version"] == 1 and summary["path"] == str(base / "pets" / "1")
    assert (base / "pets" / "1" / "saved_model.pb").is_file()
    assert summary["class_names"] == ["cat", "dog"]


def test_a_failing_command_prints_no_json():
    status, summary, err = _json_run(["evaluate", "missing.keras", "/nonexistent", "--json"])
    assert (status, summary) == (2, None)
    assert err.startswith("kerastl: error: DATA_DIR /nonexistent")


@pytest.mark.slow
def test_train_export_writes_a_version_folder(trained):
    version = trained.root / "served" / "pets" / "1"
    assert trained.summary["export"] == str(version)
    assert (version / "saved_model.pb").is_file()
    assert (version / "assets" / "labels.txt").read_text().split() == ["cat", "dog"]
    assert f"exported         {version}" in trained.stderr


@pytest.mark.slow
def test_train_tensorboard_writes_event_files(trained):
    tb = trained.root / "tb"
    assert trained.summary["tensorboard"] == str(tb)
    for subset in ("train", "validation"):
        assert list((tb / subset).glob("events.out.tfevents.*")), subset


@pytest.mark.parametrize("flags, message", [
    (["--export", "../pets"], "--export"),
    (["--export-dir", "served"], "--export-dir is the export root of --export NAME"),
    (["--tensorboard", "tb", "--mode", "feature-extraction"], "--tensorboard logs Keras"),
])
def test_train_export_and_tensorboard_flags_are_checked_first(tmp_path, capsys, flags, message):
    data = _folder(tmp_path / "data")
    assert main(_train_args(data, *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "runs").exists() and not list(data.parent.glob("served"))
