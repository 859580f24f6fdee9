"""export_saved_model: TF Serving layout, versions, signatures, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import CLASS_NAMES
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

import kerastl as ktl
from kerastl.errors import UserInputError


def _png(images):
    return [tf.io.encode_png(tf.cast(i, tf.uint8)).numpy() for i in images]


def test_layout_labels_metadata_and_models_config(tmp_path, classifier, regressor):
    path = ktl.export_saved_model(classifier, tmp_path, name="pets", class_names=CLASS_NAMES)
    assert path == tmp_path / "pets" / "1"
    assert (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    assert (path / "assets" / "labels.txt").read_text().splitlines() == CLASS_NAMES
    assert (path / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    ktl.export_saved_model(regressor, tmp_path, name="ages", warmup=False)
    assert not (tmp_path / "ages" / "1" / "assets" / "labels.txt").exists()

    config = text_format.Parse((tmp_path / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    entries = {c.name: (c.base_path, c.model_platform)
               for c in config.model_config_list.config}
    assert entries == {"pets": ("/models/pets", "tensorflow"),
                       "ages": ("/models/ages", "tensorflow")}
    # nothing half-written is left next to the versions
    assert sorted(os.listdir(tmp_path / "pets")) == ["1"]


def test_versions_increment_and_refuse_overwrite(tmp_path, classifier):
    first = ktl.export_saved_model(classifier, tmp_path, name="m", warmup=False)
    second = ktl.export_saved_model(classifier, tmp_path, name="m", warmup=False)
    assert (first.name, second.name) == ("1", "2")
    assert ktl.export.versions(tmp_path / "m") == [1, 2]
    with pytest.raises(UserInputError, match="already exists.*overwrite=True"):
        ktl.export_saved_model(classifier, tmp_path, name="m", version=1, warmup=False)
    replaced = ktl.export_saved_model(classifier, tmp_path, name="m", version=1,
                                      overwrite=True, class_names=["a", "b", "c"],
                                      warmup=False)
    assert (replaced / "assets" / "labels.txt").read_text() == "a\nb\nc\n"
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2"]
    assert ktl.export.resolve_version_dir(tmp_path / "m") == tmp_path / "m" / "2"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "../evil"}, "folder-safe model name"),
    ({"name": "m", "class_names": ["a", "b"]}, "class_names has 2 entries but the model has 3"),
    ({"name": "m", "version": 0}, "version must be a positive int"),
    ({"name": "m", "top_k": 0}, "top_k must be a positive int"),
    ({"name": "m", "resize": "squash"}, "resize must be one of stretch, crop, pad"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, classifier, kwargs, message):
    with pytest.raises(UserInputError, match=message):
        ktl.export_saved_model(classifier, tmp_path, warmup=False, **kwargs)
    assert not (tmp_path / "m").exists() or not os.listdir(tmp_path / "m")


def test_regressor_refuses_class_names(tmp_path, regressor):
    with pytest.raises(UserInputError, match="regressor"):
        ktl.export_saved_model(regressor, tmp_path, name="r", class_names=["x", "y"])


def test_signatures_answer_like_keras(tmp_path, classifier, photos):
    path = ktl.export_saved_model(classifier, tmp_path, name="m", class_names=CLASS_NAMES,
                                  top_k=2, warmup=False)
    loaded = tf.saved_model.load(str(path))
    images = photos[:8]
    expected = classifier.predict(images, verbose=0)
    by_images = loaded.signatures["predict_images"](images=tf.constant(images))
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(_png(images)))
    assert set(by_images) == {"probabilities", "classes", "class_names", "top_k_indices",
                              "top_k_scores"}
    np.testing.assert_allclose(by_images["probabilities"].numpy(), expected, atol=1e-5)
    for key in by_images:
        np.testing.assert_array_equal(by_bytes[key].numpy(), by_images[key].numpy())
    top1 = expected.argmax(-1)
    np.testing.assert_array_equal(by_images["classes"].numpy(), top1)
    assert [n.decode() for n in by_images["class_names"].numpy()] == [CLASS_NAMES[i]
                                                                     for i in top1]
    assert by_images["top_k_indices"].shape == (8, 2)
    np.testing.assert_allclose(by_images["top_k_scores"].numpy()[:, 0], expected.max(-1),
                               atol=1e-6)


def test_empty_batch_and_garbage_bytes(tmp_path, classifier, photos):
    path = ktl.export_saved_model(classifier, tmp_path, name="m", warmup=False)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    empty = serve(image_bytes=tf.zeros([0], tf.string))
    assert empty["probabilities"].shape == (0, 3)
    assert empty["class_names"].shape == (0,)
    for garbage in (b"", b"abc", b"not an image at all", b"\x00" * 100):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"Input image_bytes item 1 is not an encoded JPEG"):
            serve(image_bytes=tf.constant([_png(photos[:1])[0], garbage]))


@pytest.mark.parametrize("resize", ["stretch", "crop", "pad", "random_crop"])
def test_serving_default_decodes_and_resizes_like_the_data_layer(tmp_path, classifier, resize):
    from kerastl.data import decode

    path = ktl.export_saved_model(classifier, tmp_path, name="m", warmup=False, resize=resize)
    loaded = tf.saved_model.load(str(path))
    rng = np.random.default_rng(0)
    # a non-square PNG, and a JPEG large enough for the pipeline's 1/4 DCT-scaled decode
    png = tf.io.encode_png(rng.integers(0, 256, (75, 50, 3)).astype(np.uint8)).numpy()
    yy, xx = np.mgrid[0:300, 0:260]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(smooth, quality=90).numpy()
    expected = []
    for data, fmt, shape in ((png, "PNG", (75, 50)), (jpeg, "JPEG", (300, 260))):
        scale = decode.jpeg_scale(fmt, shape, (32, 32), resize)
        image = decode.load_image(tf.constant(""), tf.constant(data), (32, 32), resize, scale)
        if resize == "random_crop":
            image = decode.central_crop_batch(image[None], (32, 32))[0]
        expected.append(tf.cast(image, tf.float32))
    assert decode.jpeg_scale("JPEG", (300, 260), (32, 32), resize) > 1
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant([png, jpeg]))
    by_images = loaded.signatures["predict_images"](images=tf.stack(expected))
    np.testing.assert_allclose(by_bytes["probabilities"].numpy(),
                               by_images["probabilities"].numpy(), atol=1e-6)
    # greyscale PNG decodes too (channels=3)
    grey = tf.io.encode_png(smooth[:40, :40, :1]).numpy()
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([grey]))
    assert out["probabilities"].shape == (1, 3)


def test_multilabel_classifier(tmp_path, photos):
    from export_helpers import tiny_backbone

    model = ktl.build_classifier(tiny_backbone(), 4, multilabel=True)
    path = ktl.export_saved_model(model, tmp_path, name="tags", class_names=list("abcd"),
                                  top_k=2, warmup=False)
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        image_bytes=tf.constant(_png(photos[:4])))
    expected = model.predict(photos[:4], verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out["top_k_indices"].numpy(),
                                  np.argsort(-expected, axis=-1)[:, :2])


def test_regressor_signatures(tmp_path, regressor, photos):
    path = ktl.export_saved_model(regressor, tmp_path, name="r", warmup=False)
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(_png(photos[:4])))
    assert set(out) == {"predictions"}
    np.testing.assert_allclose(out["predictions"].numpy(),
                               regressor.predict(photos[:4], verbose=0), atol=1e-5)


_KILLED_EXPORT = textwrap.dedent("""
    import sys, time
    import kerastl.export.saved_model as sm
    sys.path.insert(0, sys.argv[3])
    from export_helpers import tiny_classifier

    def stall(path, logs):  # the SavedModel is written; stop before the rename
        open(sys.argv[2], "w").close()
        time.sleep(600)

    sm.warmup_lib.write_warmup_requests = stall
    sm.export_saved_model(tiny_classifier(), sys.argv[1], name="m")
""")


def test_killed_export_leaves_no_version_and_next_export_takes_next_number(tmp_path,
                                                                          classifier):
    base = tmp_path / "models"
    ktl.export_saved_model(classifier, base, name="m", warmup=False)
    flag = tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, str(base), str(flag),
                             os.path.dirname(__file__)],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.time() + 300
        while not flag.exists():
            assert proc.poll() is None, "the export subprocess died before stalling"
            assert time.time() < deadline, "the export subprocess never reached the stall"
            time.sleep(0.5)
        leftovers = [p for p in os.listdir(base / "m") if p.startswith(".incomplete-2-")]
        assert len(leftovers) == 1  # written, but under a name TF Serving ignores
        assert (base / "m" / leftovers[0] / "saved_model.pb").is_file()
    finally:
        proc.kill()
        proc.wait()
    assert ktl.export.versions(base / "m") == [1]
    assert "2" not in os.listdir(base / "m")

    again = ktl.export_saved_model(classifier, base, name="m", warmup=False)
    assert again.name == "2"
    assert sorted(os.listdir(base / "m")) == ["1", "2"]  # the abandoned folder is cleaned
