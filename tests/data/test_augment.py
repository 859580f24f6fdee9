import keras
import numpy as np
import pytest
from data_helpers import collect, make_class_folder

import kerastl as ktl
from kerastl.data import RandomResizedCrop, augmentation_layers, class_weights
from kerastl.errors import UserInputError


def _images(n=4, size=16):
    rng = np.random.default_rng(1)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_policies_build_the_documented_keras_layers():
    names = lambda p: [layer.name for layer in augmentation_layers(p).layers]  # noqa: E731
    assert names("none") == []
    assert names("light") == ["random_flip", "random_rotation", "random_zoom"]
    assert names("default") == ["random_flip", "random_rotation", "random_zoom",
                                "random_translation", "random_contrast", "random_brightness"]
    assert names("strong") == ["random_resized_crop", "random_flip", "rand_augment"]
    layers = augmentation_layers({"policy": "light", "contrast": 0.1, "zoom": None}).layers
    assert [type(layer).__name__ for layer in layers] == ["RandomFlip", "RandomRotation",
                                                          "RandomContrast"]


@pytest.mark.parametrize("policy", ["light", "default", "strong"])
def test_layers_are_random_in_training_and_identity_in_inference(policy):
    aug = augmentation_layers(policy, seed=3)
    x = _images()
    out = keras.ops.convert_to_numpy(aug(x, training=True))
    assert out.shape == x.shape
    assert not np.allclose(out, x)
    assert np.allclose(keras.ops.convert_to_numpy(aug(x, training=False)), x)


def test_augmentation_errors():
    with pytest.raises(UserInputError, match="cannot run as model layers"):
        augmentation_layers({"mixup": 0.2})
    with pytest.raises(UserInputError, match="Unknown augmentation option"):
        augmentation_layers({"blur": 1})
    with pytest.raises(UserInputError, match="Unknown augmentation policy"):
        augmentation_layers("extreme")
    with pytest.raises(UserInputError, match="non-negative number"):
        augmentation_layers({"rotation": "lots"})


def test_random_resized_crop_zooms_in_per_image():
    # A horizontal ramp: a crop narrower than the frame stretches it (smaller range).
    ramp = np.tile(np.linspace(0, 255, 32, dtype="float32")[None, :, None], (32, 1, 3))
    x = np.stack([ramp] * 6)
    layer = RandomResizedCrop(scale=(0.2, 0.5), seed=1)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert out.shape == x.shape
    spans = out[:, 16, -1, 0] - out[:, 16, 0, 0]
    assert np.all(spans < 0.9 * 255)
    assert len(np.unique(spans.round(2))) > 1  # each image gets its own crop
    assert np.allclose(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_pipeline_augments_after_cache_so_epochs_differ(tmp_path):
    rng = np.random.default_rng(0)
    root = make_class_folder(str(tmp_path / "i"), ["a", "b"], 4, rng)
    # replace solid images with noise so flips/rotations change pixels
    from data_helpers import write_image

    for cls in ("a", "b"):
        for i in range(4):
            write_image(f"{root}/{cls}/{i:03d}.png", rng)
    plain = ktl.data.image_folder(root, image_size=16, validation_split=0, cache=True,
                                  shuffle=False, deterministic=True)
    x1, _ = collect(plain.train)
    x2, _ = collect(plain.train)
    assert np.array_equal(x1, x2)
    s = ktl.data.image_folder(root, image_size=16, validation_split=0, cache=True,
                              shuffle=False, deterministic=True, augment="default")
    assert s.augmented is True
    e1, _ = collect(s.train)
    e2, _ = collect(s.train)
    assert e1.shape == x1.shape
    assert not np.allclose(e1, e2)  # fresh randomness each epoch despite cache()
    assert not np.allclose(e1, x1)


def test_augment_on_model_returns_layers_and_leaves_pipeline_clean(class_folder):
    s = ktl.data.image_folder(class_folder, image_size=16, augment="light",
                              augment_on="model")
    assert s.augmented is False
    assert isinstance(s.augmentation, keras.Sequential)
    assert [layer.name for layer in s.augmentation.layers][0] == "random_flip"


def test_strong_policy_with_cutmix_in_tf_data(class_folder):
    s = ktl.data.image_folder(class_folder, image_size=16, batch_size=4,
                              augment={"policy": "strong", "cutmix": 1.0})
    x, y = next(iter(s.train))
    assert x.shape == (4, 16, 16, 3) and x.dtype == "float32"
    assert y.shape == (4, 3) and np.allclose(np.sum(y.numpy(), axis=1), 1.0, atol=1e-5)
    assert 0 <= float(np.min(x)) and float(np.max(x)) <= 255.5
    assert s.label_mode == "one_hot"


def test_class_weights_balanced():
    assert class_weights([0, 0, 0, 1]) == {0: 4 / 6, 1: 2.0}
    assert class_weights({0: 30, 1: 10, 2: 0}) == {0: 40 / 60, 1: 2.0, 2: 0.0}
    with pytest.raises(UserInputError, match="integer labels"):
        class_weights(np.array([0.5, 1.0]))
    with pytest.raises(UserInputError, match="no examples"):
        class_weights({})


def test_class_weights_from_splits(class_folder):
    s = ktl.data.image_folder(class_folder, image_size=8, validation_split=0)
    # ant 6, bird 10, cat 4 -> n / (3 * count)
    w = class_weights(s)
    assert w == pytest.approx({0: 20 / 18, 1: 20 / 30, 2: 20 / 12})


def test_each_layer_gets_its_own_seed():
    # One shared seed would correlate e.g. the flip decision with the rotation angle.
    seeds = [layer.seed for layer in augmentation_layers("default", seed=5).layers]
    assert seeds == [5, 6, 7, 8, 9, 10]
    assert all(layer.seed is None for layer in augmentation_layers("light").layers)
