"""`kerastl tune`: config errors are one line and exit 2; config parsing."""

from __future__ import annotations

import os

import pytest
import yaml
from tuning_helpers import write_config

from kerastl.cli.main import main
from kerastl.tuning.config import load_config, search_kwargs


def _run(capsys, *argv):
    code = main(["tune", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("content, message", [
    ({"tuner": "random"}, "'data:' is required"),
    ({"data": {"source": "folder", "path": "x", "image_size": 32}, "max_epoch": 3},
     "Did you mean: max_epochs"),
    ({"data": {"source": "s3", "image_size": 32}}, "data.source must be one of"),
    ({"data": {"source": "folder", "path": "x"}}, "data.image_size is required"),
    ({"data": {"source": "folder", "path": "x", "image_size": 32, "colour": 1}},
     "Unknown key(s) ['colour']"),
    ({"data": {"source": "folder", "path": "x", "image_size": 32}, "space": [1]},
     "'space:' must be a mapping"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_bad_config_is_one_line_exit_2(content, message, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    code, _, err = _run(capsys, path)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kerastl: error:")
    assert message in err


def test_missing_config_and_missing_data_folder(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path / "nope.yaml")
    assert code == 2 and "does not exist" in err
    config = write_config(tmp_path / "c.yaml", tmp_path / "no_images", tmp_path / "tuning")
    code, _, err = _run(capsys, config)
    assert code == 2 and "no_images" in err and err.count("\n") == 1


def test_worker_id_must_not_say_chief_and_env_is_restored(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tmp_path, tmp_path / "tuning")
    before = {k: os.environ.get(k) for k in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP")}
    code, _, err = _run(capsys, config, "--worker", "--tuner-id", "chief2")
    assert code == 2 and "must not contain 'chief'" in err
    assert {k: os.environ.get(k) for k in before} == before


def test_config_to_search_arguments(tmp_path):
    path = write_config(tmp_path / "c.yaml", tmp_path, tmp_path / "tuning",
                        weights="none", isolate_trials=True)
    kwargs = search_kwargs(load_config(path))
    assert kwargs["weights"] is None and kwargs["isolate_trials"] is True
    assert kwargs["tuner"] == "random" and kwargs["max_trials"] == 4
    assert kwargs["space"]["learning_rate"] == {"min": 1e-4, "max": 1e-2, "sampling": "log"}
    assert kwargs["project_name"] == "tiny"


@pytest.mark.parametrize("name", ["fashion_mnist_hyperband", "image_folder_bayesian",
                                  "random_quick"])
def test_example_configs_are_valid(name):
    from kerastl.tuning import TransferHyperModel

    root = os.path.join(os.path.dirname(__file__), "..", "..", "tuning")
    config = load_config(os.path.join(root, f"{name}.yaml"))
    kwargs = search_kwargs(config)
    hm = TransferHyperModel(10, config["data"]["image_size"], backbones=kwargs["backbones"],
                            space=kwargs["space"], fixed=kwargs["fixed"])
    assert hm.definitions["backbone"]["default"] == kwargs["backbones"][0]
