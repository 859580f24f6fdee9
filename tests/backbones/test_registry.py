import re

import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.freezing import backbone_units, layer_groups

FAMILIES = {"xception", "vgg", "resnet", "resnet_v2", "inception_v3", "inception_resnet_v2",
            "mobilenet", "mobilenet_v2", "mobilenet_v3", "densenet", "nasnet", "efficientnet",
            "efficientnet_v2", "convnext", "efficientnet_lite"}


def test_registry_has_every_family_and_at_least_45_names():
    names = ktl.list_backbones()
    assert len(names) >= 45
    assert {ktl.backbone_spec(n).family for n in names} == FAMILIES
    for expected in ("mobilenet_v2", "efficientnet_b0", "efficientnet_lite0", "resnet50",
                     "convnext_tiny", "efficientnet_v2_l", "nasnet_large", "vgg19",
                     "efficientnet_lite4", "mobilenet_v3_large", "inception_resnet_v2"):
        assert expected in names


def test_spec_is_frozen_pure_data():
    spec = ktl.backbone_spec("efficientnet_lite0")
    assert spec.default_image_size == 224
    assert spec.preprocessing == "lite"
    assert spec.feature_dim == 1280
    assert spec.groups[0] == "stem" and spec.groups[-1] == "top"
    assert spec.weights == ("imagenet",)
    with pytest.raises(AttributeError):
        spec.feature_dim = 3


def test_unknown_backbone_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown backbone 'mobilenetv9'.*mobilenet") as info:
        ktl.backbone_spec("mobilenetv9")
    assert "Received: name='mobilenetv9'" in str(info.value)
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        ktl.build_backbone("efficientnet-lite-0", weights=None)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="pooling must be"):
        ktl.build_backbone("mobilenet_v2", weights=None, image_size=32, pooling="mean")
    with pytest.raises(ValueError, match="at least 75 px"):
        ktl.build_backbone("inception_v3", weights=None, image_size=40)
    with pytest.raises(FileNotFoundError, match="Weights file not found.*nope.weights.h5"):
        ktl.build_backbone("mobilenet_v2", weights="/nope.weights.h5", image_size=32)


@pytest.fixture
def zero_init(monkeypatch):
    """Random initializers return zeros: this test checks structure (shapes, groups,
    parameter counts), and drawing ~100M random numbers for the largest backbones
    took about half its time."""
    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype or "float32")

    for name in ("RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
                 "Orthogonal"):
        monkeypatch.setattr(getattr(keras.initializers, name), "__call__", zeros)


@pytest.mark.slow
@pytest.mark.parametrize("name", ktl.list_backbones())
def test_every_backbone_builds_with_spec_feature_dim_and_groups(name, zero_init):
    spec = ktl.backbone_spec(name)
    size = max(32, spec.min_image_size)
    model = ktl.build_backbone(name, weights=None, image_size=size)
    assert model.name == name
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, spec.feature_dim)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    assert np.asarray(model(x)).shape == (1, spec.feature_dim)
    groups = layer_groups(model)
    assert list(groups) == list(spec.groups)
    empty = [g for g, layers in groups.items() if not layers]
    assert not empty, f"{name}: empty groups {empty}"
    units = backbone_units(model, spec)
    assert sum(int(np.prod(w.shape)) for u in units for w in u.variables()) == \
        model.count_params()
    keras.backend.clear_session()


def test_preprocessing_modes_match_keras_reference():
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for mode, reference in (("tf", keras.applications.mobilenet_v2.preprocess_input),
                            ("caffe", keras.applications.resnet50.preprocess_input),
                            ("torch", keras.applications.densenet.preprocess_input)):
        got = np.asarray(ktl.backbones.Preprocess(mode)(x))
        np.testing.assert_allclose(got, reference(x.copy()), rtol=1e-5, atol=1e-4,
                                   err_msg=mode)
    lite = np.asarray(ktl.backbones.Preprocess("lite")(x))
    np.testing.assert_allclose(lite, (x - 127.0) / 128.0, rtol=1e-6)


def test_group_cuts_are_valid_regexes():
    for name in ktl.list_backbones():
        for cut in ktl.backbone_spec(name).group_cuts:
            re.compile(cut.lstrip(">"))
