import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerastl.data import decode


def test_jpeg_scale_keeps_the_cached_size_covered():
    assert decode.jpeg_scale("JPEG", (3000, 4000), (224, 224), "stretch") == 8
    assert decode.jpeg_scale("JPEG", (600, 800), (224, 224), "stretch") == 2
    assert decode.jpeg_scale("JPEG", (500, 800), (224, 224), "random_crop") == 1
    assert decode.jpeg_scale("PNG", (3000, 4000), (224, 224), "stretch") == 1
    assert decode.jpeg_scale("JPEG", (100, 100), (224, 224), "crop") == 1


def _smooth_jpeg(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    out = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(out, "JPEG", quality=95)
    return out.getvalue()


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_scaled_jpeg_decode_matches_full_decode(mode):
    data = tf.constant(_smooth_jpeg(480, 640))
    scale = decode.jpeg_scale("JPEG", (480, 640), (32, 48), mode)
    assert scale == 8
    fast = decode.load_image(tf.constant(""), data, (32, 48), mode, tf.constant(scale))
    full = decode.load_image(tf.constant(""), data, (32, 48), mode, tf.constant(1))
    assert fast.shape == (32, 48, 3) and fast.dtype == tf.uint8
    diff = np.abs(fast.numpy().astype(int) - full.numpy().astype(int))
    assert diff.mean() < 3


def test_resize_crop_keeps_the_centre():
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = 255  # a white central square between black side bands
    out = decode.resize_image(tf.constant(image), (10, 10), "crop").numpy()
    assert out.min() == 255
    stretched = decode.resize_image(tf.constant(image), (10, 10), "stretch").numpy()
    assert stretched[:, 0].max() == 0


def test_check_image_size():
    assert decode.check_image_size(7) == (7, 7)
    assert decode.check_image_size((5, 9)) == (5, 9)
    for bad in (0, (3,), "big", True, (4, -1)):
        with pytest.raises(ValueError, match="image_size"):
            decode.check_image_size(bad)
