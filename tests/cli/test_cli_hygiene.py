"""The command line's own manners: --version, --help without TensorFlow, help on every
flag, --json summaries, train --export and --tensorboard."""

import configparser
import pathlib

import pytest

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
