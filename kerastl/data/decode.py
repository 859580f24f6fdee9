"""In-graph image decoding and resizing (runs inside ``tf.data``).

Every image leaves here as ``uint8`` RGB of the requested size; the pipeline
casts to ``float32 [0, 255]`` after ``cache()`` so the cache holds a quarter
of the bytes.
"""

from __future__ import annotations

import tensorflow as tf

from kerastl.errors import UserInputError

RESIZE_MODES = ("stretch", "crop", "pad", "random_crop")
# ``random_crop`` decodes to this much more than the target size, caches that,
# and cuts a fresh random window each epoch (the ImageNet 224-of-256 habit).
RANDOM_CROP_MARGIN = 1.0 / 0.875


def check_image_size(image_size) -> tuple[int, int]:
    """Return ``(height, width)`` from an int or a pair, or raise a clear error."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            size = ()
    if len(size) != 2 or min(size) < 1:
        raise UserInputError(
            "image_size must be a positive int or (height, width). "
            f"Received: image_size={image_size!r}"
        )
    return size


def check_resize_mode(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise UserInputError(
            f"resize must be one of {', '.join(RESIZE_MODES)}. Received: resize={resize!r}"
        )
    return resize


def decode_bytes(data: tf.Tensor) -> tf.Tensor:
    """Decode JPEG/PNG(8/16-bit)/BMP/GIF(first frame)/WebP bytes to ``uint8 (H, W, 3)``.

    Greyscale is repeated to RGB, alpha is dropped, CMYK JPEG is converted by
    libjpeg and 16-bit PNG is scaled to 8 bits.
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def cache_size(image_size: tuple[int, int], resize: str) -> tuple[int, int]:
    """Size of the images stored in the cache (larger than the target for random_crop)."""
    if resize == "random_crop":
        return tuple(int(round(s * RANDOM_CROP_MARGIN)) for s in image_size)
    return image_size


def _central_crop_to_aspect(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Cut the largest central window of the target's aspect ratio."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    target = size[0] / size[1]
    crop_h = tf.minimum(h, w * target)
    crop_w = tf.minimum(w, h / target)
    crop_h = tf.maximum(tf.cast(tf.round(crop_h), tf.int32), 1)
    crop_w = tf.maximum(tf.cast(tf.round(crop_w), tf.int32), 1)
    top = (shape[0] - crop_h) // 2
    left = (shape[1] - crop_w) // 2
    return image[top:top + crop_h, left:left + crop_w]


def resize_image(image: tf.Tensor, image_size: tuple[int, int], resize: str) -> tf.Tensor:
    """Resize a ``(H, W, C)`` image (any dtype) to the cached ``uint8`` image.

    Args:
        image: the decoded image.
        image_size: ``(height, width)`` wanted by the model.
        resize: ``"stretch"`` (ignore aspect ratio), ``"crop"`` (central crop to
            the aspect ratio, then resize), ``"pad"`` (fit inside, pad with 0) or
            ``"random_crop"`` (central crop to ``image_size / 0.875``; a random
            ``image_size`` window is cut later, after the cache).

    Returns:
        ``uint8`` tensor of shape :func:`cache_size`.
    """
    size = cache_size(image_size, resize)
    if resize in ("crop", "random_crop"):
        image = _central_crop_to_aspect(image, size)
    if resize == "pad":
        out = tf.image.resize_with_pad(tf.cast(image, tf.float32), size[0], size[1])
    else:
        out = tf.image.resize(image, size)
    out = tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
    out.set_shape([size[0], size[1], image.shape[-1]])
    return out


JPEG_SCALES = (1, 2, 4, 8)


def jpeg_scale(fmt: str, size: tuple[int, int], image_size: tuple[int, int],
               resize: str) -> int:
    """Largest libjpeg DCT downscale (1, 2, 4 or 8) that keeps both sides >= the cached size.

    Decoding a 4000x3000 JPEG at 1/8 scale is several times faster, needs 1/64
    of the memory, and filters better than resizing the full image bilinearly.
    """
    if fmt != "JPEG":
        return 1
    need_h, need_w = cache_size(image_size, resize)
    best = 1
    for scale in JPEG_SCALES:
        if size[0] // scale >= need_h and size[1] // scale >= need_w:
            best = scale
    return best


def _decode_scaled(data: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Decode JPEG bytes at 1/``scale`` size (scale in JPEG_SCALES)."""
    branches = [
        (lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r)) for r in JPEG_SCALES
    ]
    index = tf.argmax(tf.cast(tf.equal(tf.constant(JPEG_SCALES), scale), tf.int32))
    image = tf.switch_case(tf.cast(index, tf.int32), branches)
    image.set_shape([None, None, 3])
    return image


def load_image(path: tf.Tensor, inline: tf.Tensor, image_size: tuple[int, int],
               resize: str, scale: tf.Tensor | int = 1) -> tf.Tensor:
    """Read ``path`` (or use ``inline`` bytes when non-empty), decode and resize.

    ``scale`` > 1 (JPEG only, see :func:`jpeg_scale`) decodes at reduced size.
    """
    data = tf.cond(tf.strings.length(inline) > 0, lambda: inline, lambda: tf.io.read_file(path))
    image = tf.cond(scale > 1, lambda: _decode_scaled(data, scale), lambda: decode_bytes(data))
    return resize_image(image, image_size, resize)


def central_crop(image: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Cut the central ``image_size`` window out of one ``(H, W, C)`` image."""
    h, w = image_size
    shape = tf.shape(image)
    top = (shape[0] - h) // 2
    left = (shape[1] - w) // 2
    out = image[top:top + h, left:left + w]
    out.set_shape([h, w, image.shape[-1]])
    return out


def central_crop_batch(images: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Cut the central ``image_size`` window out of a batch ``(B, H, W, C)``."""
    h, w = image_size
    shape = tf.shape(images)
    top = (shape[1] - h) // 2
    left = (shape[2] - w) // 2
    return images[:, top:top + h, left:left + w]
