"""Test-time augmentation: fixed views, averaged probabilities, the gain reported."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerastl as ktl
from kerastl.backbones import Preprocess
from kerastl.reports.evaluate import evaluate_classifier
from kerastl.tta import predict_tta, tta_views, view_names

SIZE = 16


def _classifier(pool: str, seed: int = 0) -> keras.Model:
    """``pool="avg"``: mean colour only, so mirror-invariant; ``"conv"``: a 3x3 convolution
    first, with position-dependent features (flattened), so not invariant."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = Preprocess("tf", backbone="tiny")(inputs)
    if pool == "conv":
        x = keras.layers.Conv2D(4, 3, strides=4)(x)
        x = keras.layers.Flatten()(x)
    else:
        x = keras.layers.GlobalAveragePooling2D()(x)
    model = ktl.build_classifier(keras.Model(inputs, x, name=f"tiny_{pool}"), 3, dropout=0.0)
    dense = model.get_layer("predictions")
    dense.kernel.assign(np.random.default_rng(seed).normal(0, 2, dense.kernel.shape)
                        .astype("float32"))
    return model


def _images(count=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype("float32")


def test_views_are_the_documented_ones():
    images = _images(2)
    flip = tta_views(images, "flip")
    assert len(flip) == 2 and view_names("flip") == ["identity", "horizontal_flip"]
    np.testing.assert_array_equal(flip[0].numpy(), images)
    np.testing.assert_array_equal(flip[1].numpy(), images[:, :, ::-1, :])
    crops = tta_views(images, "crops")
    assert len(crops) == len(view_names("crops")) == 7
    assert all(v.shape == (2, SIZE, SIZE, 3) for v in crops)
    # a 14 px top-left crop stretched back to 16 px keeps the corner pixel
    np.testing.assert_allclose(crops[3].numpy()[:, 0, 0], images[:, 0, 0], atol=1e-4)
    np.testing.assert_array_equal(tta_views(images, "crops")[6].numpy(), crops[6].numpy())
    with pytest.raises(ktl.UserInputError, match="tta must be True, False, 'flip' or 'crops'"):
        tta_views(images, "rotate")


def test_flip_invariant_model_gives_identical_output():
    model, images = _classifier("avg"), _images()
    plain = ktl.predict(model, images, top_k=3)
    mirrored = ktl.predict(model, images, top_k=3, tta=True)
    assert [[t["index"] for t in r["top_k"]] for r in plain] == [
        [t["index"] for t in r["top_k"]] for r in mirrored]
    # identical up to the rounding of the mean over mirrored pixels (summed in another order)
    np.testing.assert_allclose(predict_tta(model, images, "flip"),
                               model.predict(images, verbose=0), rtol=0, atol=1e-6)


def test_average_of_the_views():
    model, images = _classifier("conv"), _images()
    got = predict_tta(model, images, "crops")
    views = [model.predict(v, verbose=0) for v in tta_views(images, "crops")]
    np.testing.assert_allclose(got, np.mean(views, axis=0), atol=1e-6)
    assert not np.allclose(got, views[0], atol=1e-3)  # the views really differ here
    rows = ktl.predict(model, images, top_k=1, tta="crops")
    assert [r["top_k"][0]["index"] for r in rows] == list(got.argmax(1))
    assert rows[0]["top_k"][0]["score"] == pytest.approx(float(got[0].max()), abs=1e-6)


def test_evaluate_reports_the_gain(tmp_path):
    model, images = _classifier("conv"), _images(12)
    labels = np.arange(12) % 3
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(5)
    report = evaluate_classifier(model, data, ["a", "b", "c"], output=tmp_path, tta=True)
    tta = report["tta"]
    plain = model.predict(images, verbose=0)
    both = (plain + model.predict(images[:, :, ::-1], verbose=0)) / 2
    assert tta["accuracy_without"] == pytest.approx(np.mean(plain.argmax(1) == labels))
    assert tta["accuracy_with"] == pytest.approx(np.mean(both.argmax(1) == labels))
    assert tta["gain"] == pytest.approx(tta["accuracy_with"] - tta["accuracy_without"])
    assert report["metrics"]["accuracy"] == pytest.approx(tta["accuracy_with"])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["tta"]["views"] == ["identity", "horizontal_flip"]


def test_predict_tta_on_files(tmp_path):
    model = _classifier("conv")
    images = _images(3).round()
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image.astype(np.uint8)).save(paths[-1])
    rows = ktl.predict(model, paths, top_k=3, tta=True)
    expected = predict_tta(model, images, "flip")
    for row, p in zip(rows, expected, strict=True):
        scores = sorted((t["index"], t["score"]) for t in row["top_k"])
        np.testing.assert_allclose([s for _, s in scores], p, atol=1e-5)
