"""The exported serving_default refuses decompression bombs from their header, in the server.

A valid PNG of a few KB may declare 20000x20000 pixels: decoding it costs
gigabytes. The budget is part of the exported graph (core TF ops only), so
TensorFlow's C++ loader (TF Serving's) and ``tf.saved_model.load`` answer such
a request with an error, without allocating its pixels.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import tiny_classifier

import kerastl as ktl
from kerastl.export.consumers import pack_bytes, run_consumers
from kerastl.export.samples import sample_images

pytestmark = pytest.mark.slow


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def png_bomb(side: int = 20000) -> bytes:
    """A valid PNG of ``side`` x ``side`` black RGB pixels: about 1 MB, 1.2 GB decoded."""
    row = b"\x00" * (1 + 3 * side)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb():
    data = png_bomb()
    assert len(data) < 2_000_000
    return data


def test_bomb_is_refused_by_the_cpp_loader_and_saved_model_load(tmp_path, bomb):
    model = tiny_classifier(seed=8)
    path = ktl.export_saved_model(model, tmp_path, name="pets", warmup=False)
    meta = json.loads((path / "assets.extra" / "kerastl.json").read_text())
    assert meta["max_pixels"] == 89_478_485
    images = sample_images(8, (32, 32), seed=2)
    normal = [tf.io.encode_png(tf.cast(i, tf.uint8)).numpy() for i in images]
    arrays = {"images": images}
    pack_bytes(arrays, "png", normal)
    pack_bytes(arrays, "extra:a_normal", normal)
    pack_bytes(arrays, "extra:b_bomb", [normal[0], bomb])
    results = run_consumers({"cpp": path, "saved_model_load": path}, arrays)
    expected = model(images, training=False).numpy()
    for result in results.values():
        assert result.ok, result.error
        np.testing.assert_allclose(result.outputs["extra:a_normal/probabilities"], expected,
                                   atol=1e-5, rtol=0)
        error = result.report["extra"]["extra:b_bomb"]
        assert "Input image_bytes item 1: image declares 400000000 pixels, over the limit " \
               "of 89478485 pixels" in error
        peaks = result.report["peak_rss_kb"]
        before, after = peaks["request extra:b_bomb"], peaks["done"]
        assert after <= 1.2 * before, (result.consumer, before, after)
        assert after - before < 200_000  # kB: the 1.2 GB of pixels were never allocated


def test_max_pixels_is_the_exported_limit(tmp_path, bomb):
    model = tiny_classifier(seed=9)
    path = ktl.export_saved_model(model, tmp_path, name="small", warmup=False,
                                  max_pixels=32 * 32)
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
    image = tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8))
    assert loaded(image_bytes=tf.stack([image]))["probabilities"].shape == (1, 3)
    bigger = tf.io.encode_png(tf.zeros([32, 33, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="1056 pixels, over the limit "
                                                             "of 1024 pixels"):
        loaded(image_bytes=tf.stack([image, bigger]))
    with pytest.raises(ValueError, match="max_pixels must be a positive int"):
        ktl.export_saved_model(model, tmp_path, name="bad", warmup=False, max_pixels=0)
    assert not (tmp_path / "bad").exists()
