import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.freezing import find_backbone, layer_groups


def _classifier(name="efficientnet_lite0", size=32, weights=None):
    return ktl.build_classifier(ktl.build_backbone(name, weights=weights, image_size=size), 3)


def _trainable_paths(model):
    return {v.path for v in model.trainable_weights}


def _bn_stats(backbone):
    import keras

    return {layer.name: (np.array(layer.moving_mean), np.array(layer.moving_variance))
            for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)}


def _train_step(model, x, y):
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)


def test_freeze_leaves_only_the_head_trainable():
    model = ktl.freeze(_classifier())
    assert _trainable_paths(model) == {"predictions/kernel", "predictions/bias"}
    rows = ktl.trainable_report(model)
    assert [r["group"] for r in rows][-1] == "head"
    assert all(r["trainable_params"] == 0 for r in rows[:-1])
    assert rows[-1]["trainable_params"] == rows[-1]["total_params"] == 1280 * 3 + 3
    assert all(r["frozen_bn"] for r in rows)


def test_unfreeze_top_group_exactly(tiny_images):
    model = _classifier()
    backbone = model.layers[1]
    ktl.unfreeze(model, groups=1)
    top = set(layer_groups(model)["top"])
    expected = {w.path for name in top for w in backbone.get_layer(name).trainable_weights
                if "bn" not in name} | {"predictions/kernel", "predictions/bias"}
    assert _trainable_paths(model) == expected
    assert any(p.startswith("top_conv") for p in expected)
    rows = {r["group"]: r for r in ktl.trainable_report(model)}
    assert rows["top"]["trainable_params"] == 1280 * 320  # top_conv; top_bn stays frozen
    assert rows["block7"]["trainable_params"] == 0
    assert rows["top"]["frozen_bn"] is True


def test_batchnorm_statistics_frozen_unless_train_bn(tiny_images):
    x, y = tiny_images
    # Real weights: with random ones, inference-mode BN lets ReLU6 saturate and
    # gradients vanish, which would hide whether the kernels can move at all.
    model = _classifier(weights="imagenet")
    backbone = model.layers[1]
    before = _bn_stats(backbone)
    ktl.unfreeze(model)  # whole backbone, BN frozen
    kernel_before = np.array(backbone.get_layer("top_conv").kernel)
    _train_step(model, x, y)
    after = _bn_stats(backbone)
    for name in before:
        np.testing.assert_array_equal(before[name][0], after[name][0], err_msg=name)
        np.testing.assert_array_equal(before[name][1], after[name][1], err_msg=name)
    assert not np.array_equal(kernel_before, np.array(backbone.get_layer("top_conv").kernel))

    ktl.unfreeze(model, train_bn=True)
    _train_step(model, x, y)
    changed = _bn_stats(backbone)
    assert not np.array_equal(after["stem_bn"][1], changed["stem_bn"][1])
    assert not np.array_equal(after["top_bn"][0], changed["top_bn"][0])
    assert all(r["frozen_bn"] is False for r in ktl.trainable_report(model)[:-1])


def test_frozen_backbone_does_not_move(tiny_images):
    x, y = tiny_images
    model = ktl.freeze(_classifier())
    backbone = model.layers[1]
    before = [np.array(w) for w in backbone.weights]
    _train_step(model, x, y)
    for a, b in zip(before, backbone.weights):
        np.testing.assert_array_equal(a, np.array(b))


def test_unfreeze_by_fraction_and_from_layer():
    model = _classifier()
    ktl.unfreeze(model, fraction=1.0, train_bn=True)
    assert len(model.trainable_weights) == len(model.layers[1].trainable_weights) + 2
    ktl.unfreeze(model, from_layer="block7a_expand_conv")
    paths = _trainable_paths(model)
    assert "block7a_expand_conv/kernel" in paths
    assert "block6d_project_conv/kernel" not in paths
    assert not any("_bn" in p or p.startswith("top_bn") for p in paths)
    small = ktl.unfreeze(_classifier(), fraction=0.1)
    n_small = len(small.trainable_weights)
    big = ktl.unfreeze(_classifier(), fraction=0.5)
    assert len(big.trainable_weights) > n_small > 2


def test_unfreeze_errors_are_clear():
    model = _classifier()
    with pytest.raises(ValueError, match="only one of"):
        ktl.unfreeze(model, groups=1, fraction=0.5)
    with pytest.raises(ValueError, match="groups must be an int from 0 to 9"):
        ktl.unfreeze(model, groups=12)
    with pytest.raises(ValueError, match=r"fraction must be a number in \(0, 1\]"):
        ktl.unfreeze(model, fraction=0)
    with pytest.raises(ValueError, match="No weighted layer named 'top_cnv'.*top_conv"):
        ktl.unfreeze(model, from_layer="top_cnv")
    import keras

    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="contains no kerastl backbone"):
        ktl.freeze(plain)


def test_freezing_survives_keras_save_and_load(tmp_path, tiny_images):
    import keras

    x, _ = tiny_images
    model = ktl.unfreeze(_classifier("mobilenet_v2"), groups=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    ktl.freeze(loaded)
    assert _trainable_paths(loaded) == {"predictions/kernel", "predictions/bias"}
    assert list(layer_groups(loaded))[-1] == "head"


def test_frozen_backbone_dropout_is_off_until_unfrozen(tmp_path):
    from kerastl.backbones.builder import FrozenDropout

    layer = FrozenDropout(0.5, seed=1)
    x = np.ones((64, 16), "float32")
    layer.trainable = False
    np.testing.assert_array_equal(layer(x, training=True), x)
    layer.trainable = True
    dropped = np.asarray(layer(x, training=True))
    assert 0.3 < (dropped == 0).mean() < 0.7
    # Every Dropout inside a built backbone (Lite drop-connect) is frozen-aware,
    # follows freeze/unfreeze, and survives a .keras round trip.
    model = ktl.build_classifier(
        ktl.build_backbone("efficientnet_lite0", image_size=32, weights=None), 3)
    backbone, _ = find_backbone(model)
    drops = [la for la in backbone._flatten_layers() if isinstance(la, keras.layers.Dropout)]
    assert len(drops) == 9 and all(type(la) is FrozenDropout for la in drops)
    ktl.freeze(model)
    assert not any(la.trainable for la in drops)
    ktl.unfreeze(model, fraction=1.0)
    assert all(la.trainable for la in drops)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    loaded_backbone, _ = find_backbone(loaded)
    assert sum(type(la) is FrozenDropout for la in loaded_backbone._flatten_layers()) == 9
