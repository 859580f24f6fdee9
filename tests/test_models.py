import numpy as np
import pytest

import kerastl as ktl
from kerastl.models import task_of


def test_classifier_outputs_probabilities(tiny_images):
    x, _ = tiny_images
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    model = ktl.build_classifier(backbone, 5, hidden_units=(16,), dropout=0.1)
    p = model.predict(x, verbose=0)
    assert p.shape == (12, 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert model.name == "mobilenet_v2_classifier"
    assert task_of(model) == "multiclass"
    assert model.get_layer("head_dense_0").units == 16


def test_multilabel_and_regressor(tiny_images):
    x, _ = tiny_images
    backbone = ktl.build_backbone("efficientnet_lite0", weights=None, image_size=32)
    multi = ktl.build_classifier(backbone, 4, multilabel=True, name="tags")
    p = multi.predict(x, verbose=0)
    assert multi.name == "tags" and p.shape == (12, 4)
    assert task_of(multi) == "multilabel" and (p > 0).all() and (p < 1).all()
    reg = ktl.build_regressor(ktl.build_backbone("efficientnet_lite0", weights=None,
                                                 image_size=32), 2)
    assert reg.predict(x, verbose=0).shape == (12, 2)
    assert task_of(reg) == "regression"


def test_pooling_none_backbone_gets_pooled_in_the_head():
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32, pooling=None)
    assert len(backbone.output_shape) == 4
    model = ktl.build_classifier(backbone, 2)
    assert model.output_shape == (None, 2)


def test_model_argument_errors():
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        ktl.build_classifier(backbone, 1)
    with pytest.raises(ValueError, match="dropout must be in"):
        ktl.build_classifier(backbone, 3, dropout=1.5)
    with pytest.raises(ValueError, match="backbone must be a registry name"):
        ktl.build_classifier(42, 3)


def test_builders_create_variables_in_the_strategy_scope():
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32),
                                 3, strategy=strategy)
    head = model.get_layer("predictions").kernel
    assert strategy.extended.variable_created_in_scope(head.value)
    reg = ktl.build_regressor(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32),
                              strategy="cpu")
    assert reg.output_shape == (None, 1)
