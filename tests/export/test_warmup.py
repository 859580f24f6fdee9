"""TF Serving warmup requests: real PredictionLog protos that the model answers."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import kerastl as ktl
from kerastl.errors import MissingExtraError, UserInputError
from kerastl.export import warmup


def _records(path):
    out = []
    for raw in tf.data.TFRecordDataset(str(path / "assets.extra" / warmup.WARMUP_FILE)):
        entry = prediction_log_pb2.PredictionLog()
        entry.ParseFromString(raw.numpy())
        out.append(entry)
    return out


def test_warmup_file_holds_requests_for_both_signatures(tmp_path, classifier, photos):
    path = ktl.export_saved_model(classifier, tmp_path, name="pets", example_images=photos)
    records = _records(path)
    assert 0 < len(records) <= 1000
    assert len(records) == len(ktl.export.read_warmup_requests(
        path / "assets.extra" / warmup.WARMUP_FILE))
    requests = [r.predict_log.request for r in records]
    assert {r.model_spec.name for r in requests} == {"pets"}
    by_signature = {}
    for r in requests:
        by_signature.setdefault(r.model_spec.signature_name, []).append(r)
    assert set(by_signature) == {"serving_default", "predict_images"}
    # 8 single-image requests + one batch of 8, as JPEG bytes of the example photos
    byte_batches = [tf.make_ndarray(r.inputs["image_bytes"]) for r in
                    by_signature["serving_default"]]
    assert sorted(len(b) for b in byte_batches) == [1] * 8 + [8]
    assert all(bytes(b[0]).startswith(b"\xff\xd8\xff") for b in byte_batches)
    decoded = tf.io.decode_jpeg(bytes(byte_batches[0][0])).numpy().astype(np.float32)
    assert np.abs(decoded - photos[0]).mean() < 8  # JPEG of the first example photo
    floats = [tf.make_ndarray(r.inputs["images"]) for r in by_signature["predict_images"]]
    assert floats[0].shape == (1, 32, 32, 3) and floats[0].dtype == np.float32

    # every request is answered by the SavedModel (what TF Serving does at load time)
    loaded = tf.saved_model.load(str(path))
    for r in requests:
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in r.inputs.items()}
        out = loaded.signatures[r.model_spec.signature_name](**inputs)
        assert out["probabilities"].shape[-1] == 3


def test_example_images_from_files_and_dataset(tmp_path, photos):
    files = []
    for i, image in enumerate(photos[:3]):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(tf.io.encode_png(image.astype(np.uint8)).numpy())
    assert warmup.example_bytes(files, (32, 32)) == [f.read_bytes() for f in files]
    dataset = tf.data.Dataset.from_tensor_slices((photos[:10], np.zeros(10))).batch(4)
    from_dataset = warmup.example_bytes(dataset, (32, 32), limit=5)
    assert len(from_dataset) == 5 and all(b.startswith(b"\xff\xd8\xff") for b in from_dataset)
    synthetic = warmup.example_bytes(None, (32, 32))
    shapes = [tf.io.decode_image(b).shape for b in synthetic]
    assert (32, 32, 3) in shapes and (64, 64, 3) in shapes  # also exercises the resize


@pytest.mark.parametrize("bad, message", [
    ([b"plain text"], "must be paths to"),
    (["/no/such/image.png"], "not found"),
    (np.zeros((4, 32, 32)), r"shape \(N, height, width, 3\)"),
    ([], "empty"),
])
def test_bad_example_images(bad, message):
    with pytest.raises(UserInputError, match=message):
        warmup.example_bytes(bad, (32, 32))


def test_more_than_1000_records_refused(tmp_path):
    with pytest.raises(UserInputError, match="at most 1000"):
        warmup.write_warmup_requests(tmp_path / "w", [object()] * 1001)


def test_missing_serving_extra_names_the_fix(tmp_path, classifier, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis.prediction_log_pb2", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'kerastl\[serving\]'"):
        ktl.export_saved_model(classifier, tmp_path, name="m")
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
    # warmup=False does not need the extra
    assert ktl.export_saved_model(classifier, tmp_path, name="m", warmup=False).is_dir()
