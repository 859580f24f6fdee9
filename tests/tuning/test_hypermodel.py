"""TransferHyperModel: documented defaults, hp.Fixed overrides, narrowing, errors."""

from __future__ import annotations

import inspect

import keras_tuner as kt
import pytest
from tuning_helpers import TINY_BACKBONE

import kerastl as ktl
from kerastl.freezing import find_backbone
from kerastl.tuning import DEFAULTS, HYPERPARAMETERS, TransferHyperModel

DOCUMENTED = {  # docs/tuning.md, "Search space"
    "backbone": TINY_BACKBONE, "head_units": 0, "dropout": 0.2, "learning_rate": 1e-3,
    "fine_tune_learning_rate": 1e-4,
    # every group of the backbones searched (mobilenet_v2: 8), i.e. the whole backbone
    "unfreeze_groups": 8, "augmentation": "none", "label_smoothing": 0.0, "optimizer": "adam",
}


def _hm(**kwargs):
    kwargs.setdefault("backbones", (TINY_BACKBONE, "mobilenet_v2"))
    return TransferHyperModel(3, 32, weights=None, **kwargs)


def test_default_build_matches_documented_defaults():
    hp = kt.HyperParameters()
    model = _hm().build(hp)
    assert hp.values == DOCUMENTED
    assert set(HYPERPARAMETERS) == set(DOCUMENTED)
    _, spec = find_backbone(model)
    assert spec.name == TINY_BACKBONE
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 3)
    names = [layer.name for layer in model.layers]
    assert not any(n.startswith("head_dense") for n in names)
    assert model.get_layer("head_dropout").rate == pytest.approx(0.2)
    assert "augmentation" not in names
    # The defaults are those of build_classifier and fine_tune (one place of truth).
    assert inspect.signature(ktl.build_classifier).parameters["dropout"].default == 0.2
    ft = inspect.signature(ktl.fine_tune).parameters
    assert ft["learning_rate"].default == DEFAULTS["learning_rate"]["default"]
    assert ft["fine_tune_learning_rate"].default == DEFAULTS["fine_tune_learning_rate"]["default"]
    assert ft["optimizer"].default == DEFAULTS["optimizer"]["default"]


def test_defaults_come_from_the_one_training_config():
    from kerastl.config import DEFAULTS as CONFIG

    assert DEFAULTS["dropout"]["default"] == CONFIG.dropout
    assert DEFAULTS["learning_rate"]["default"] == CONFIG.learning_rate
    assert DEFAULTS["fine_tune_learning_rate"]["default"] == CONFIG.fine_tune_learning_rate
    assert DEFAULTS["optimizer"]["default"] == CONFIG.optimizer
    assert DEFAULTS["label_smoothing"]["default"] == CONFIG.label_smoothing
    hm = _hm()
    assert (hm.seed, hm.patience) == (CONFIG.seed, CONFIG.patience)
    assert inspect.signature(ktl.tuning.search).parameters["seed"].default == CONFIG.seed
    # fine_tune unfreezes the whole backbone by default; so does an un-tuned trial
    assert CONFIG.unfreeze is None
    groups = hm.definitions["unfreeze_groups"]
    assert (groups["min"], groups["max"], groups["default"]) == (0, 8, 8)
    only_tiny = _hm(backbones=(TINY_BACKBONE,)).definitions["unfreeze_groups"]
    assert only_tiny["default"] == len(ktl.backbone_spec(TINY_BACKBONE).groups) == 5
    # a narrowed space defaults to the most groups it allows
    narrowed = _hm(space={"unfreeze_groups": [0, 1, 2]}).definitions["unfreeze_groups"]
    assert narrowed == {"kind": "choice", "values": [0, 1, 2], "default": 2}


def test_augmented_build_is_an_image_classifier_with_the_same_layer_names():
    hp = kt.HyperParameters()
    hp.Fixed("augmentation", "light")
    hp.Fixed("head_units", 16)
    model = _hm(class_names=["cat", "dog", "owl"]).build(hp)
    assert isinstance(model, ktl.ImageClassifier)
    names = [layer.name for layer in model.layers]
    assert names[0] == "image" and names[1] == "augmentation"
    assert names[-1] == "predictions" and "head_dense_0" in names
    assert find_backbone(model)[1].name == TINY_BACKBONE
    assert model.class_names == ("cat", "dog", "owl")
    assert model.output_shape == (None, 3)
    plain = _hm().build(kt.HyperParameters())
    assert isinstance(plain, ktl.ImageClassifier) and plain.class_names is None
    with pytest.raises(ValueError, match="one name per class"):
        _hm(class_names=["cat", "dog"])


def test_hp_fixed_overrides_the_search_space():
    hp = kt.HyperParameters()
    hp.Fixed("dropout", 0.4)
    hp.Fixed("head_units", 24)  # not among the default choices: Fixed still wins
    hp.Fixed("augmentation", "light")
    hp.Fixed("backbone", "mobilenet_v2")
    model = _hm().build(hp)
    assert hp.values["dropout"] == 0.4 and hp.values["head_units"] == 24
    assert model.get_layer("head_dense_0").units == 24
    assert model.get_layer("head_dropout").rate == pytest.approx(0.4)
    assert [layer.name for layer in model.layers][1] == "augmentation"
    assert find_backbone(model)[1].name == "mobilenet_v2"
    assert len(model.get_layer("augmentation").layers) == 3  # flip, rotation, zoom


def test_fixed_and_narrowed_space():
    hm = _hm(fixed={"optimizer": "sgd"},
             space={"learning_rate": {"min": 2e-4, "max": 5e-4, "sampling": "log"},
                    "head_units": [32, 64], "unfreeze_groups": {"min": 1, "max": 2},
                    "label_smoothing": 0.1})
    hp = kt.HyperParameters()
    hm.values(hp)
    assert hp.values["optimizer"] == "sgd"
    assert hp.values["learning_rate"] == pytest.approx(2e-4)  # default 1e-3 is outside: min
    assert hp.values["head_units"] == 32
    assert hp.values["unfreeze_groups"] == 2
    assert hp.values["label_smoothing"] == 0.1
    lr = hp.get_config()["space"]
    lr = next(p for p in lr if p["config"]["name"] == "learning_rate")["config"]
    assert (lr["min_value"], lr["max_value"], lr["sampling"]) == (2e-4, 5e-4, "log")


@pytest.mark.parametrize("kwargs, message", [
    ({"fixed": {"dropuot": 0.1}}, "Did you mean: dropout"),
    ({"space": {"optimizer": {"min": 1}}}, "must be a list of values"),
    ({"space": {"dropout": [0.1]}, "fixed": {"dropout": 0.2}}, "both in space= and fixed="),
    ({"space": {"dropout": {"min": 0.5, "max": 0.1}}}, "min must be <= max"),
    ({"space": {"learning_rate": {"min": "small", "max": 1e-2}}}, "must be a number"),
    ({"backbones": ("mobilenetv9",)}, "Unknown backbone"),
    ({"backbones": ("inception_v3",)}, "at least 75 px"),
    ({"head_epoch_fraction": 1.5}, "head_epoch_fraction"),
])
def test_bad_search_space_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _hm(**kwargs)


def test_epoch_split_between_phases():
    hm = _hm()
    assert hm.split_epochs(10) == (3, 7)
    assert hm.split_epochs(1) == (1, 0)
    assert hm.split_epochs(2) == (1, 1)
    assert hm.split_epochs(9, initial_epoch=3) == (0, 6)  # Hyperband continuation
    with pytest.raises(ValueError, match="epochs must exceed initial_epoch"):
        hm.split_epochs(3, initial_epoch=3)


def test_trials_can_train_under_a_strategy():
    from tuning_helpers import tiny_datasets

    train, val = tiny_datasets()
    hm = _hm(strategy="cpu")
    hp = kt.HyperParameters()
    model = hm.build(hp)
    metrics = hm.fit(hp, model, train, validation_data=val, epochs=2)
    assert {"val_accuracy", "val_loss"} <= set(metrics)
    # the default unfreezes every backbone group (as fine_tune), not just the top 2
    report = ktl.trainable_report(model)
    assert all(row["trainable_params"] > 0 for row in report), report
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    assert inspect.signature(ktl.tuning.search).parameters["strategy"].default is None
