"""The acceptance checks on a real network: EfficientNet-Lite0 with ImageNet weights.

Random-weight models answer near-uniform probabilities, so the JPEG and
TFLite top-1 agreements only mean something with trained weights. The model
here is what users export: a kerastl classifier whose head is trained on
ImageNet-Lite0 features (task: which of the 10 scikit-image photos a crop
comes from) and softened to a moderate confidence, tested on held-out
native-size crops sent as PNG and JPEG bytes.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.export.samples import PHOTOS as _PHOTOS
from kerastl.export.samples import random_crops, sample_photos
from kerastl.export.samples import resize_rounded as _resize
from kerastl.export.tflite import export_tflite
from kerastl.export.verify import verify

pytestmark = [pytest.mark.slow, pytest.mark.weights]
SIZE = (224, 224)


@pytest.fixture(scope="module")
def fine_tuned():
    photos = sample_photos()
    train = random_crops(photos, 80, 224, seed=21)
    labels = np.arange(len(train)) % len(photos)
    backbone = ktl.build_backbone("efficientnet_lite0", image_size=224)
    model = ktl.build_classifier(backbone, len(photos), dropout=0.0)
    train_images = np.stack([_resize(c[None], SIZE)[0] for c in train])
    features = backbone.predict(train_images, verbose=0)
    head = keras.Sequential([keras.Input((features.shape[1],)),
                             keras.layers.Dense(len(photos), activation="softmax")])
    head.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    head.fit(features, labels, epochs=30, batch_size=len(labels), verbose=0)
    # Soften the head (temperature 8): the task is easy and a saturated softmax would make
    # every agreement check pass trivially; this leaves a median top-1 probability ~0.6.
    model.get_layer("predictions").set_weights([w / 8.0 for w in head.get_weights()])
    # Then fine-tune: the top block group and the head, at a low rate (BatchNorm frozen).
    ktl.unfreeze(model, groups=1)
    model.compile(keras.optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy")
    before = model.get_layer("predictions").get_weights()[0].copy()
    model.fit(train_images[:32], labels[:32], epochs=1, batch_size=16, verbose=0)
    assert not np.allclose(model.get_layer("predictions").get_weights()[0], before)
    test = random_crops(photos, 40, 224, seed=22)  # held out, native size (224..1000 px)
    return model, train_images, test


def test_serving_matches_keras_on_real_photos(tmp_path, fine_tuned):
    model, _, test = fine_tuned
    path = ktl.export_saved_model(model, tmp_path, name="photos", class_names=list(_PHOTOS),
                                  example_images=test[:4])
    resized = np.stack([_resize(c[None], SIZE)[0] for c in test])
    export_tflite(model, path.parent / "tflite" / path.name, variants="float", images=resized,
                  name="photos")
    report = verify(path, model, images=test)  # TF Serving's C++ loader, session, object, LiteRT
    assert report.ok, report.summary()
    assert np.median(model.predict(resized, verbose=0).max(-1)) < 0.9  # not saturated
    assert report.metrics["num_images"] == 40
    assert report.metrics["keras_max_abs_diff"] <= 1e-5
    assert report.metrics["png_max_abs_diff"] <= 1e-5
    assert report.metrics["resize_max_abs_diff"] <= 1e-5  # native-size PNG bytes
    assert report.metrics["jpeg_top1_agreement"] >= 0.97  # the worst of the three loaders
    assert set(report.metrics["consumers"]) == {"cpp", "session", "saved_model_load"}
    assert report.metrics["consumers"]["cpp"]["resize_max_abs_diff"] <= 1e-5
    jpeg_check = next(c for c in report.checks if c.name == (
        "C++ loader (TF Serving's LoadSavedModel, via the C API): JPEG bytes top-1 vs lossless"))
    assert jpeg_check.required and jpeg_check.passed
    assert report.metrics["litert"]["float"]["top1_agreement"] >= 0.99


def test_tflite_float_agrees_and_quantised_agreement_is_reported(tmp_path, fine_tuned):
    model, train_images, test = fine_tuned
    images = np.stack([_resize(c[None], SIZE)[0] for c in test])
    results = export_tflite(model, tmp_path, variants="float,dynamic,float16,int8",
                            images=images, representative_images=train_images[:40],
                            class_names=list(_PHOTOS), name="photos")
    by_variant = {r.variant: r for r in results}
    assert by_variant["float"].top1_agreement >= 0.99
    assert by_variant["float"].max_abs_diff < 1e-3
    assert by_variant["float16"].top1_agreement >= 0.95
    report = json.loads((tmp_path / "tflite_report.json").read_text())
    assert {r["variant"] for r in report} == {"float", "dynamic", "float16", "int8"}
    assert all(np.isfinite(r["max_abs_diff"]) for r in report)
