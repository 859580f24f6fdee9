"""Task models carry their contract (class names, size, resize, task) through .keras files."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.models import ImageClassifier, ImageRegressor, contract_of, task_of


def _backbone(size=32, name="mobilenet_v2"):
    return ktl.build_backbone(name, weights=None, image_size=size)


def test_classifier_round_trip_keeps_its_contract(tmp_path, tiny_images):
    x, _ = tiny_images
    model = ktl.build_classifier(_backbone(), 3, hidden_units=(8,), dropout=0.1,
                                 class_names=["cat", "dog", "émeu"], resize="crop")
    assert isinstance(model, ImageClassifier) and isinstance(model, keras.Model)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, np.arange(12) % 3, epochs=1, verbose=0)  # weights differ from a fresh build
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is ImageClassifier
    assert loaded.class_names == ("cat", "dog", "émeu")
    assert loaded.resize == "crop"
    assert loaded.image_size == (32, 32)
    assert loaded.task == "multiclass" and task_of(loaded) == "multiclass"
    assert loaded.backbone_name == "mobilenet_v2"
    assert loaded.num_classes == 3 and loaded.name == "mobilenet_v2_classifier"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert contract_of(loaded) == {"kind": "image", "class_names": ["cat", "dog", "émeu"],
                                   "resize": "crop", "image_size": (32, 32),
                                   "sequence_length": None, "task": "multiclass",
                                   "backbone": "mobilenet_v2"}


def test_multilabel_and_regressor_round_trip(tmp_path, tiny_images):
    x, _ = tiny_images
    tags = ktl.build_classifier(_backbone(name="efficientnet_lite0"), 4, multilabel=True,
                                class_names=list("abcd"), resize="pad")
    reg = ktl.build_regressor(_backbone(), 2, class_names=["age", "height"])
    assert isinstance(reg, ImageRegressor)
    for model, task in ((tags, "multilabel"), (reg, "regression")):
        model.save(tmp_path / f"{task}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{task}.keras")
        assert loaded.task == task
        assert loaded.class_names == model.class_names
        assert loaded.resize == model.resize
        np.testing.assert_allclose(loaded.predict(x[:4], verbose=0),
                                   model.predict(x[:4], verbose=0), atol=1e-6)
    assert keras.saving.load_model(tmp_path / "regression.keras").num_outputs == 2


def test_contract_is_set_after_building_and_checked():
    model = ktl.build_classifier(_backbone(), 2)
    assert model.class_names is None and model.resize == "stretch"
    assert model.output_names_or_indices() == ["0", "1"]
    model.class_names = ["no", "yes"]
    model.resize = "random_crop"
    assert model.get_config()["class_names"] == ["no", "yes"]
    assert model.get_config()["resize"] == "random_crop"
    with pytest.raises(ValueError, match="class_names has 3 names but the model has 2 outputs"):
        model.class_names = ["a", "b", "c"]
    with pytest.raises(ValueError, match="class_names must be unique"):
        model.class_names = ["a", "a"]
    with pytest.raises(ValueError, match="resize must be one of stretch, crop, pad"):
        model.resize = "squash"
    with pytest.raises(ValueError, match="class_names must be a list of strings"):
        ktl.build_classifier(_backbone(), 2, class_names="ab")


def test_a_plain_functional_model_has_an_empty_contract():
    inputs = keras.Input((8,))
    plain = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(inputs))
    assert contract_of(plain) == {"kind": "image", "class_names": None, "resize": None,
                                  "image_size": None, "sequence_length": None,
                                  "task": "multilabel", "backbone": None}


@pytest.mark.slow
def test_loading_without_kerastl_names_the_import(tmp_path):
    path = tmp_path / "m.keras"
    ktl.build_classifier(_backbone(), 2, class_names=["a", "b"]).save(path)
    code = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
            "import keras\n"
            f"keras.saving.load_model({str(path)!r})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "Could not locate class 'ImageClassifier'" in last
    assert "import kerastl before keras.saving.load_model" in last[:600]
