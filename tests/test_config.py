"""FineTuneConfig: every training default once, validated once, and what derives from it."""

import dataclasses
import inspect
import json

import pytest

import kerastl as ktl
from kerastl.cli.main import build_parser
from kerastl.config import DEFAULTS, FINE_TUNE_FIELDS, FineTuneConfig


def test_defaults_are_the_documented_ones_and_json_ready():
    c = FineTuneConfig()
    assert (c.backbone, c.head_epochs, c.epochs, c.seed) == ("efficientnet_lite0", 3, 10, 1337)
    assert (c.learning_rate, c.fine_tune_learning_rate) == (1e-3, 1e-4)
    assert (c.schedule, c.resize, c.validation_split) == ("cosine", "stretch", 0.2)
    as_dict = c.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert FineTuneConfig.from_dict(as_dict) == c
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3


def test_fine_tune_keyword_defaults_come_from_the_config():
    params = inspect.signature(ktl.fine_tune).parameters
    for name in FINE_TUNE_FIELDS:
        default = params[name].default
        assert default == getattr(DEFAULTS, name) or (name == "unfreeze" and default is None), (
            name, default, getattr(DEFAULTS, name))


def test_cli_flag_defaults_come_from_the_config():
    parser = build_parser()
    args = parser.parse_args(["train", "data"])
    flags = {"lr": "learning_rate", "ft_lr": "fine_tune_learning_rate"}
    for dest, field in [*flags.items(), *((f, f) for f in (
            "backbone", "batch_size", "head_epochs", "epochs", "validation_split", "dropout",
            "seed", "optimizer", "patience", "schedule", "warmup", "label_smoothing", "mode",
            "classifier", "resize"))]:
        assert getattr(args, dest) == getattr(DEFAULTS, field), dest
    from kerastl.cli.train import config_from_args

    assert config_from_args(args) == FineTuneConfig(weights="imagenet")


@pytest.mark.parametrize(("options", "message"), [
    ({"epochs": -1}, r"epochs must be an int >= 0\. Received: epochs=-1"),
    ({"head_epochs": 0, "epochs": 0}, "Nothing to do: head_epochs and epochs are both 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
    ({"validation_split": 1.0}, r"validation_split must be a number in \[0, 1\)"),
    ({"batch_size": 0}, r"batch_size must be an int >= 1\. Received: batch_size=0"),
    ({"resize": "squash"}, "resize must be one of stretch, crop, pad, random_crop"),
    ({"optimizer": "lion"}, "optimizer must be one of adam, adamw, sgd, rmsprop, adagrad"),
    ({"unfreeze": {"groups": 2, "fraction": 0.5}}, "one of groups, fraction or from_layer"),
    ({"unfreeze": {"layers": 2}}, "unfreeze takes groups, fraction, from_layer, train_bn"),
    ({"l2": 0.0}, r"l2 must be a positive number \(e\.g\. 1e-4\)"),
    ({"mixed_precision": "float16"}, "mixed_precision must be one of mixed_float16"),
    ({"image_size": 5000}, "image_size must be an int from 1 to 4096"),
    ({"patience": -1}, r"patience must be an int >= 0 or None"),
])
def test_every_bad_option_is_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        FineTuneConfig(**options)
    with pytest.raises(ValueError, match=message):
        DEFAULTS.replace(**options)


def test_unknown_options_name_the_close_ones():
    with pytest.raises(ValueError, match="Unknown FineTuneConfig option 'epoch'. Did you mean "
                                         "epochs"):
        FineTuneConfig.from_dict({"epoch": 2})
    with pytest.raises(ValueError, match="Unknown FineTuneConfig option 'lr'"):
        DEFAULTS.replace(lr=0.1)


def test_weights_none_string_and_fine_tune_kwargs():
    c = FineTuneConfig(weights="none", unfreeze={"groups": 2}, hidden_units=[8])
    assert c.weights is None and c.hidden_units == (8,)
    kwargs = c.fine_tune_kwargs()
    assert set(kwargs) == set(FINE_TUNE_FIELDS) and kwargs["unfreeze"] == {"groups": 2}
