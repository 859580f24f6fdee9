"""verify(): the export answers like Keras in a fresh process without kerastl."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import CLASS_NAMES, tiny_classifier

import kerastl as ktl
from kerastl.export.verify import show_signatures, verify


@pytest.fixture
def exported(tmp_path, classifier, photos):
    path = ktl.export_saved_model(classifier, tmp_path, name="pets", class_names=CLASS_NAMES,
                                  example_images=photos[:4])
    return path, classifier


CPP = "C++ loader (TF Serving's LoadSavedModel, via the C API)"
CONSUMERS = (CPP, "session loader (saved_model_cli run)", "tf.saved_model.load")


def _check(report, name, consumer=CPP):
    """The check ``name`` of ``consumer`` (or a check of the whole export)."""
    return next(c for c in report.checks if c.name in (f"{consumer}: {name}", name))


def test_fresh_process_matches_keras_on_real_images(exported, photos):
    path, model = exported
    report = verify(path, model, images=photos[:32])
    assert report.ok, report.summary()
    assert report.metrics["num_images"] == 32
    assert report.metrics["keras_max_abs_diff"] <= 1e-5
    assert report.metrics["png_max_abs_diff"] <= 1e-5
    assert report.metrics["jpeg_top1_agreement"] >= 0.97
    assert _check(report, "fresh processes without kerastl").passed
    for consumer in CONSUMERS:  # each loader answered everything, warmup replayed
        assert _check(report, "loads and answers", consumer).passed
        assert _check(report, "empty batch", consumer).detail == "probabilities shape (0, 3)"
        assert "Input image_bytes item 1" in _check(report, "garbage bytes rejected",
                                                    consumer).detail
        assert _check(report, "warmup requests replay", consumer).detail.startswith("7/7")
        assert _check(report, "serving_default PNG bytes vs Keras", consumer).passed
    assert set(report.metrics["consumers"]) == {"cpp", "session", "saved_model_load"}
    assert _check(report, "models.config").passed
    assert report.failure() is None


def test_default_images_are_photo_crops_and_check_the_resize(exported):
    path, model = exported
    report = verify(path.parent, model, num_images=12)  # model folder -> latest version
    assert report.ok, report.summary()
    assert report.metrics["num_images"] == 12
    assert report.metrics["resize_max_abs_diff"] <= 1e-5


def test_a_different_model_is_caught(exported, photos):
    path, _ = exported
    other = tiny_classifier(seed=7)
    report = verify(path, other, images=photos[:8])
    assert not report.ok
    keras_check = _check(report, "predict_images vs Keras")
    assert not keras_check.passed and "FAIL" in report.summary()
    assert report.failure().startswith(f"{CPP}: predict_images vs Keras: max |diff|")


def test_show_signatures_like_saved_model_cli(exported):
    text = show_signatures(exported[0])
    assert "signature_def['serving_default']:" in text
    assert "signature_def['predict_images']:" in text
    assert ("    inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n"
            "        shape: (-1,)") in text
    assert "        dtype: DT_FLOAT\n        shape: (-1, 32, 32, 3)" in text
    assert "outputs['class_names'] tensor_info:\n        dtype: DT_STRING" in text
    assert "Method name is: tensorflow/serving/predict" in text


def test_regressor_verifies(tmp_path, regressor, photos):
    path = ktl.export_saved_model(regressor, tmp_path, name="ages", warmup=False)
    report = verify(path, regressor, images=photos[:8])
    assert report.ok, report.summary()
    assert report.metrics["keras_max_abs_diff"] <= 1e-5
    assert "jpeg_top1_agreement" not in report.metrics


def test_images_of_the_wrong_size_are_refused(exported):
    with pytest.raises(ValueError, match=r"shape \(N, 32, 32, 3\)"):
        verify(exported[0], images=np.zeros((2, 16, 16, 3)))
