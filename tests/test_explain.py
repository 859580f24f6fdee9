"""Grad-CAM: the heatmap's peak lands on the evidence the classifier learned."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

import kerastl as ktl
from kerastl.backbones import Preprocess
from kerastl.cli.main import main
from kerastl.explain import grad_cam

SIZE = 32


def corner_images(count: int, seed: int = 0):
    """Noise images whose class is a bright 8 px patch: class 0 top-left, class 1 bottom-right."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 120, size=(count, SIZE, SIZE, 3)).astype("float32")
    labels = np.arange(count) % 2
    for image, label in zip(images, labels, strict=True):
        top, left = rng.integers(1, 7, size=2)
        if label == 1:
            top, left = SIZE - 8 - top, SIZE - 8 - left
        image[top:top + 8, left:left + 8] = 255.0
    return images, labels


def cnn_backbone() -> keras.Model:
    """A kerastl-style backbone (preprocessing inside) with an 8x8 last feature map."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = Preprocess("tf", backbone="tiny")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


@pytest.fixture(scope="module")
def corner_model():
    keras.utils.set_random_seed(0)
    model = ktl.build_classifier(cnn_backbone(), 2, dropout=0.0, class_names=["tl", "br"])
    images, labels = corner_images(256, seed=1)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images, labels, batch_size=32, epochs=20, verbose=0)
    return model


def _quadrant(heatmap: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return int(row >= SIZE // 2), int(col >= SIZE // 2)


def test_peak_is_in_the_quadrant_of_the_evidence(corner_model):
    images, labels = corner_images(16, seed=2)
    probs = corner_model.predict(images, verbose=0)
    assert np.mean(probs.argmax(1) == labels) == 1.0  # the classifier separates them
    heatmaps = grad_cam(corner_model, images)
    assert heatmaps.shape == (16, SIZE, SIZE) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0 and np.allclose(heatmaps.max(axis=(1, 2)), 1.0)
    quadrants = [_quadrant(h) for h in heatmaps]
    assert quadrants == [(0, 0) if y == 0 else (1, 1) for y in labels]


def test_class_index_explains_the_class_asked_for(corner_model):
    images, _ = corner_images(2, seed=3)  # a class-0 image, then a class-1 image
    own = grad_cam(corner_model, images)
    same = grad_cam(corner_model, images, class_index=[0, 1])
    np.testing.assert_allclose(own, same, atol=1e-6)
    with pytest.raises(ktl.UserInputError, match=r"class_index must be in \[0, 2\)"):
        grad_cam(corner_model, images, class_index=2)


def test_registry_backbone_and_errors():
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None,
                                                    image_size=64), 3)
    heatmaps = grad_cam(model, np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)))
    assert heatmaps.shape == (2, 64, 64)
    assert 0.0 <= heatmaps.min() and heatmaps.max() <= 1.0
    with pytest.raises(ktl.UserInputError, match=r"images must have shape \(N, 64, 64, 3\)"):
        grad_cam(model, np.zeros((1, 32, 32, 3)))
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax",
                                                                     name="predictions")])
    with pytest.raises(ktl.UserInputError, match="needs a convolutional backbone"):
        grad_cam(dense, np.zeros((1, 4)))


def test_cli_writes_overlays(corner_model, tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    corner_model.save(model_path)
    images, _ = corner_images(2, seed=4)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(image.astype(np.uint8)).save(files[-1])
    out = tmp_path / "cams"
    assert main(["explain", str(model_path), *map(str, files), "--output", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["img0.gradcam.png", "img1.gradcam.png"]
    assert "img0.png: tl" in capsys.readouterr().out
    with Image.open(out / "img0.gradcam.png") as png:
        assert png.size[0] > 2 * SIZE
    assert main(["explain", str(tmp_path / "missing.keras"), str(files[0]),
                 "--output", str(out)]) == 2
    assert "missing.keras" in capsys.readouterr().err


def test_errors_grid_carries_grad_cam(corner_model, tmp_path, caplog):
    import tensorflow as tf

    from kerastl.reports.evaluate import _with_grad_cam, write_errors_grid

    images, labels = corner_images(8, seed=6)
    wrong = 1 - labels  # every confident answer is now an error
    data = tf.data.Dataset.from_tensor_slices((images, wrong)).batch(4)
    probs = corner_model.predict(images, verbose=0)
    path = write_errors_grid(data, probs, wrong, ["tl", "br"], tmp_path / "errors.png",
                             count=4, model=corner_model)
    assert path == str(tmp_path / "errors.png")
    blended, explained = _with_grad_cam(corner_model, images[:2], probs[:2].argmax(1))
    assert explained and blended.dtype == np.uint8 and not np.array_equal(blended, images[:2])
    dense = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax", name="predictions")])
    same, explained = _with_grad_cam(dense, images[:2], np.zeros(2, int))
    assert not explained and np.array_equal(same, images[:2])
