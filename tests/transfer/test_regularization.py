import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.regularization import add_l2


def test_head_l2_is_counted_and_survives_saving(tmp_path, backbone):
    model = ktl.build_classifier(backbone, 3)
    assert not model.losses
    add_l2(model, 1e-3)
    kernel = model.get_layer("predictions").kernel.numpy()
    assert len(model.losses) == 1  # only the head's Dense kernel
    np.testing.assert_allclose(float(model.losses[0]), 1e-3 * np.square(kernel).sum(),
                               rtol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert reloaded.get_layer("predictions").get_config()["kernel_regularizer"] is not None
    assert len(reloaded.losses) == 1


def test_scope_all_reaches_the_backbone_kernels():
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None,
                                                    image_size=32), 2)
    ktl.unfreeze(model)
    add_l2(model, 1e-4, scope="all")
    assert len(model.losses) > 40


def test_errors(backbone):
    model = ktl.build_classifier(backbone, 2)
    with pytest.raises(ValueError, match="l2 must be a positive number"):
        add_l2(model, 0)
    with pytest.raises(ValueError, match="scope must be 'head' or 'all'"):
        add_l2(model, 1e-4, scope="backbone")
