"""Hub backbones: a tiny Keras CNN (with BatchNorm) saved as a TF2 reusable
SavedModel stands in for a TF Hub module, so these tests are fully offline."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastl as ktl  # noqa: E402
from kerastl.backbones import HubBackbone, hub_specs  # noqa: E402
from kerastl.backbones.hub import build_hub_backbone  # noqa: E402
from kerastl.freezing import find_backbone  # noqa: E402

SIZE = 16
L2 = 1e-2


def _source_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv",
                            kernel_regularizer=keras.regularizers.L2(L2))(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i in (1, 2):
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    x = keras.layers.Conv2D(6, 1, name="head_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    model = keras.Model(inputs, x, name="tiny_cnn")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial statistics: inference != training mode
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.1, n))
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    return model


def _save_reusable(model, path):
    """The TF2 reusable SavedModel convention: __call__(inputs, training),
    variables, trainable_variables, regularization_losses."""
    root = tf.train.Checkpoint()
    root.variables = [v.value for v in model.variables]
    root.trainable_variables = [v.value for v in model.trainable_variables]
    root.regularization_losses = [tf.function(lambda: tf.add_n(model.losses),
                                              input_signature=[])] if model.losses else []

    @tf.function
    def call(images, training=False):
        return model(images, training=training)

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    call.get_concrete_function(spec, True)
    call.get_concrete_function(spec, False)
    root.__call__ = call
    tf.saved_model.save(root, str(path))


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    source = _source_model()
    path = tmp_path_factory.mktemp("hub") / "tiny_cnn"
    _save_reusable(source, path)
    return str(path), source


@pytest.fixture()
def images():
    return np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")


def _classifier(path, **kwargs):
    keras.utils.set_random_seed(0)
    backbone = ktl.build_backbone(f"hub:{path}", image_size=SIZE, **kwargs)
    return ktl.build_classifier(backbone, 3, dropout=0.0)


def _hub(model):
    layer, _ = find_backbone(model)
    assert isinstance(layer, HubBackbone)
    return layer


def _values(layer, suffix):
    return {v.name: v.numpy().copy() for v in layer._module.variables if v.name.endswith(suffix)}


def _step(model, images):
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    model.train_on_batch(images, np.array([0, 1, 2, 1]))


def _changed(before, after):
    return {k for k in before if not np.allclose(before[k], after[k], atol=0, rtol=0)}


def test_spec_groups_from_variable_prefixes(module):
    path, _ = module
    spec = ktl.backbone_spec(f"hub:{path}")
    assert spec.family == "hub"
    assert spec.groups == ("stem", "block1", "block2", "top")
    assert spec.feature_dim == 6 and spec.preprocessing == "unit"
    layer = _hub(build_hub_backbone(f"hub:{path}", image_size=SIZE, preprocessing="tf"))
    assert layer.spec.groups == spec.groups and layer.spec.group_cuts == spec.group_cuts
    assert (layer.spec.default_image_size, layer.spec.preprocessing) == (SIZE, "tf")
    assert spec.default_image_size == 224  # not a known handle: TF Hub's default
    units = layer.freezing_units()
    assert [u.name for u in units] == ["stem_conv", "stem_bn", "block1_conv", "block1_bn",
                                       "block2_conv", "block2_bn", "head_conv"]
    assert [u.is_bn for u in units] == [False, True, False, True, False, True, False]


def test_backbone_tracks_every_variable(module):
    path, source = module
    backbone = ktl.build_backbone(f"hub:{path}", image_size=SIZE, trainable=True)
    layer = _hub(backbone)
    assert len(backbone.weights) == len(source.weights) == 20
    assert len(backbone.trainable_weights) == 14 and len(backbone.non_trainable_weights) == 6
    # Shared, not copied: the Keras variables are the SavedModel's variables.
    assert {id(v.value) for v in layer.weights} == {id(v) for v in layer._module.variables}
    assert backbone.name == "hub_tiny_cnn" and backbone.layers[1].mode == "unit"


def test_inference_matches_source_model(module, images):
    path, source = module
    model = _classifier(path)
    features = model.get_layer("hub_tiny_cnn").predict(images, verbose=0)
    expected = source(images / 255.0, training=False).numpy()
    np.testing.assert_allclose(features, expected, atol=1e-5)
    dense = model.get_layer("predictions")
    logits = expected @ dense.kernel.numpy() + dense.bias.numpy()
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(model.predict(images, verbose=0), probs, atol=1e-5)


def test_frozen_backbone_does_not_change(module, images):
    model = _classifier(module[0])
    ktl.freeze(model)
    layer = _hub(model)
    before, head = _values(layer, ""), model.get_layer("predictions").kernel.numpy().copy()
    _step(model, images)
    assert _changed(before, _values(layer, "")) == set()
    assert not np.allclose(head, model.get_layer("predictions").kernel.numpy())
    assert model.losses == []  # regularisation only counts for a trainable module


def test_unfrozen_trains_weights_but_not_bn(module, images):
    model = _classifier(module[0])
    ktl.unfreeze(model)
    layer = _hub(model)
    before = _values(layer, "")
    _step(model, images)
    changed = _changed(before, _values(layer, ""))
    assert {n for n in before if "conv/" in n} <= changed
    assert not {n for n in changed if "bn/" in n}  # BN frozen: gamma/beta and statistics
    assert not layer.bn_training()


def test_train_bn_updates_moving_statistics(module, images):
    model = _classifier(module[0])
    ktl.unfreeze(model, train_bn=True)
    layer = _hub(model)
    before = _values(layer, "")
    _step(model, images)
    changed = _changed(before, _values(layer, ""))
    assert {n for n in before if "moving_" in n} <= changed
    assert {n for n in before if "gamma" in n} <= changed


def test_unfreeze_top_group_only(module, images):
    model = _classifier(module[0])
    ktl.unfreeze(model, groups=1)
    layer = _hub(model)
    trainable = {v.path.split("/")[-1] for v in layer.trainable_weights}
    assert trainable == {"head_conv__kernel", "head_conv__bias"}
    rows = {r["group"]: r for r in ktl.trainable_report(model)}
    assert list(rows) == ["stem", "block1", "block2", "top", "head"]
    assert [rows[g]["trainable_params"] for g in rows] == [0, 0, 0, 8 * 6 + 6, 6 * 3 + 3]
    before = _values(layer, "")
    _step(model, images)
    assert _changed(before, _values(layer, "")) == {"head_conv/kernel:0", "head_conv/bias:0"}


def test_trainable_report_on_hub_model(module):
    model = _classifier(module[0])
    ktl.unfreeze(model, from_layer="block2")
    rows = ktl.trainable_report(model)
    assert [r["group"] for r in rows] == ["stem", "block1", "block2", "top", "head"]
    stem, block1, block2, top, head = rows
    assert stem["trainable_params"] == 0 and stem["total_params"] == 3 * 3 * 3 * 4 + 4 + 4 * 4
    assert block1["trainable_params"] == 0 and block1["bn_layers"] == 1
    assert block2["trainable_params"] == 3 * 3 * 8 * 8 + 8  # the conv; its BatchNorm stays frozen
    assert top["trainable_params"] == top["total_params"] == 8 * 6 + 6
    assert all(r["frozen_bn"] for r in rows)
    assert head["trainable_params"] == head["total_params"] == 6 * 3 + 3
    ktl.unfreeze(model, fraction=0.5, train_bn=True)
    rows = ktl.trainable_report(model)
    assert not rows[0]["frozen_bn"]  # one training switch for the whole module


def test_regularization_losses_added_when_trainable(module, images):
    path, source = module
    model = _classifier(path)
    ktl.unfreeze(model)
    model(images, training=True)
    expected = L2 * np.sum(np.square(source.get_layer("stem_conv").kernel.numpy()))
    assert len(model.losses) == 1
    np.testing.assert_allclose(float(model.losses[0]), expected, rtol=1e-5)


def test_keras_round_trip_after_fine_tuning(module, images, tmp_path):
    model = _classifier(module[0])
    ktl.unfreeze(model, groups=2, train_bn=True)
    _step(model, images)
    expected = model.predict(images, verbose=0)
    file = tmp_path / "hub_model.keras"
    model.save(file)
    _hub(model)._module.variables[0].assign_add(tf.ones_like(_hub(model)._module.variables[0]))
    reloaded = keras.saving.load_model(file)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-6)
    assert ktl.trainable_report(reloaded) == ktl.trainable_report(model)
    assert _hub(reloaded).get_config()["handle"] == module[0]


def test_exports_as_saved_model(module, images, tmp_path):
    model = _classifier(module[0])
    ktl.unfreeze(model)
    _step(model, images)
    expected = model.predict(images, verbose=0)
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "export"))
    np.testing.assert_allclose(served.serve(images).numpy(), expected, atol=1e-5)
    path = ktl.export_saved_model(model, tmp_path / "SavedModels", name="hub", warmup=False)
    serving = tf.saved_model.load(str(path)).signatures["predict_images"]
    probabilities = serving(tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_signature_only_saved_model(module, images, tmp_path):
    path, source = module
    export = tmp_path / "signature_only"
    source.export(str(export), format="tf_saved_model", verbose=False)
    backbone = build_hub_backbone(f"hub:{export}", image_size=SIZE)  # no __call__
    assert _hub(backbone)._input_key is not None  # called through serving_default
    np.testing.assert_allclose(backbone.predict(images, verbose=0),
                               source(images / 255.0).numpy(), atol=1e-5)
    assert len(backbone.weights) == 20
    named = build_hub_backbone(f"hub:{export}", image_size=SIZE, signature="serve")
    np.testing.assert_allclose(named.predict(images, verbose=0),
                               source(images / 255.0).numpy(), atol=1e-5)


def test_feature_map_module_is_pooled(tmp_path, images):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="stem_conv")(inputs)
    outputs = keras.layers.Dropout(0.1, name="block1_drop")(x)  # adds an int seed variable
    _save_reusable(keras.Model(inputs, outputs), tmp_path / "fmap")
    pooled = ktl.build_backbone(f"hub:{tmp_path / 'fmap'}", image_size=SIZE, pooling="max")
    assert pooled.output_shape == (None, 5) and pooled.layers[-1].name == "max_pool"
    layer = _hub(pooled)
    assert len(layer.weights) == 3  # kernel, bias and the seed state are all tracked
    assert [u.name for u in layer.freezing_units()] == ["stem_conv"]  # only float weights
    assert ktl.backbone_spec(f"hub:{tmp_path / 'fmap'}").groups == layer.spec.groups == ("stem",)
    fmap = ktl.build_backbone(f"hub:{tmp_path / 'fmap'}", image_size=SIZE, pooling=None)
    assert fmap.predict(images, verbose=0).shape == (4, 8, 8, 5)


@pytest.mark.parametrize("handle, size, mode", [
    ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5", 224, "unit"),
    ("https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/140-224-feature-vector/2",
     224, "unit"),
    ("https://tfhub.dev/google/imagenet/mobilenet_v3_small_100_224/feature_vector/5", 224,
     "unit"),
    ("https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet1k_b3/feature_vector/2", 300,
     "unit"),
    ("https://tfhub.dev/tensorflow/efficientnet/b4/feature-vector/1", 380, "unit"),
    ("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5", 299, "unit"),
    ("https://tfhub.dev/sayakpaul/vit_b16_fe/1", 224, "tf"),
    ("/models/my_module", 224, "unit"),
])
def test_known_handles_table(handle, size, mode):
    spec = hub_specs.input_spec(handle)
    assert (spec.image_size, spec.preprocessing) == (size, mode)
    assert spec.known == (not handle.startswith("/"))


def test_many_scopes_merge_into_contiguous_groups():
    names = ["efficientnet-b0/stem/conv2d/kernel:0", "efficientnet-b0/stem/tpu_batch_normalization"
             "/moving_mean:0"]
    names += [f"efficientnet-b0/blocks_{i}/conv2d/kernel:0" for i in range(16)]
    names += ["efficientnet-b0/head/conv2d/kernel:0"]
    groups, pairs = hub_specs.group_units(names)
    assert len(groups) == hub_specs.MAX_GROUPS
    assert groups[0] == "stem" and groups[-1] == "top"
    assert groups[1] == "blocks_0-blocks_2"
    order = [groups.index(g) for _, g in pairs]
    assert order == sorted(order)  # contiguous: unfreezing the top k groups is a suffix


def test_bad_arguments_are_explained(module):
    path, _ = module
    with pytest.raises(ValueError, match="weights stored in its SavedModel"):
        ktl.build_backbone(f"hub:{path}", weights=None)
    with pytest.raises(ValueError, match="pooling must be"):
        ktl.build_backbone(f"hub:{path}", pooling="mean")
    with pytest.raises(ValueError, match="no signature 'nope'"):
        build_hub_backbone(f"hub:{path}", signature="nope")
    with pytest.raises(ValueError, match="hub:<handle>"):
        ktl.build_backbone("hub:  ")
    with pytest.raises(FileNotFoundError, match="neither a URL nor an existing folder"):
        ktl.build_backbone("hub:/no/such/module")


def test_offline_remote_handle_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = "https://tfhub.invalid/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    with pytest.raises(ktl.WeightsUnavailableError) as info:
        ktl.build_backbone(f"hub:{handle}")
    message = str(info.value)
    assert handle in message and "hub:/path/to/savedmodel" in message
    assert "TFHUB_CACHE_DIR" in message and str(tmp_path / "cache") in message


def test_cli_offline_remote_handle_is_one_line(monkeypatch, tmp_path, capsys):
    from kerastl.cli.main import main

    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = "https://tfhub.invalid/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    status = main(["train", str(tmp_path), "--backbone", f"hub:{handle}"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("kerastl: error: Could not download Hub module") and handle in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_cli_trains_a_local_hub_backbone(module, tmp_path, capsys):
    from PIL import Image

    from kerastl.cli.main import main

    rng = np.random.default_rng(0)
    for name, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (20, 20, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(tmp_path / "data" / name / f"{i}.png")
    status = main(["train", str(tmp_path / "data"), "--backbone", f"hub:{module[0]}",
                   "--image-size", str(SIZE), "--head-epochs", "1", "--epochs", "1",
                   "--output", str(tmp_path / "run")])
    assert status == 0, capsys.readouterr().err
    reloaded = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert isinstance(_hub(reloaded), HubBackbone)
    assert reloaded.predict(np.zeros((1, SIZE, SIZE, 3), "float32"), verbose=0).shape == (1, 2)
