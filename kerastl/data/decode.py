"""In-graph image decoding and resizing (runs inside ``tf.data``).

Every image leaves here as ``uint8`` RGB of the requested size; the pipeline
casts to ``float32 [0, 255]`` after ``cache()`` so the cache holds a quarter
of the bytes.
"""

from __future__ import annotations

import tensorflow as tf

from kerastl.data import header as header_lib
from kerastl.defaults import MAX_IMAGE_SIZE, RESIZE_MODES
from kerastl.errors import UserInputError

# ``random_crop`` decodes to this much more than the target size, caches that,
# and cuts a fresh random window each epoch (the ImageNet 224-of-256 habit).
RANDOM_CROP_MARGIN = 1.0 / 0.875


def check_image_size(image_size, *, minimum: int = 1, backbone: str | None = None,
                     name: str = "image_size") -> tuple[int, int]:
    """``(height, width)`` from an int or a pair, each side in ``[minimum, MAX_IMAGE_SIZE]``.

    Args:
        image_size: an int or ``(height, width)``.
        minimum: the smallest side accepted (a backbone's ``min_image_size``).
        backbone: the backbone's name, to say where ``minimum`` comes from.
        name: how the value is called in the message (``"--image-size"`` in the CLI).

    Raises:
        UserInputError: not an int or a pair of ints, or a side out of bounds.
    """
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            size = ()
    if len(size) != 2:
        raise UserInputError(
            f"{name} must be a positive int or (height, width). Received: {name}={image_size!r}"
        )
    if min(size) < max(minimum, 1) or max(size) > MAX_IMAGE_SIZE:
        low = f"{max(minimum, 1)} px" + (
            f" (the smallest input of backbone {backbone!r})" if backbone else "")
        raise UserInputError(f"{name} must be at least {low} and at most {MAX_IMAGE_SIZE} px. "
                             f"Received: {name}={image_size!r}")
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
    def webp():  # decode_image(channels=3) refuses WebP with alpha; drop it as Pillow does
        frames = tf.io.decode_webp(data)  # (frames, H, W, 3 or 4): the first frame
        return frames[0, :, :, :3]

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)

    is_webp = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), b"RIFF"),
                             tf.equal(tf.strings.substr(
                                 tf.strings.join([data, b"\0" * 12]), 8, 4), b"WEBP"))
    image = tf.cond(is_webp, webp, other)
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


# --- The pixel budget in core TF ops (same rules as kerastl.data.header) -----------------


def _bytes_at(data: tf.Tensor, pos, n: int) -> tf.Tensor:
    """``n`` bytes of ``data`` from ``pos`` as int64, zero past the end (never fails)."""
    pos = tf.clip_by_value(tf.cast(pos, tf.int32), 0, tf.strings.length(data))
    window = tf.strings.join([tf.strings.substr(data, pos, n), b"\0" * n])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(window, 0, n), tf.uint8), tf.int64)


def _int(b: tf.Tensor, start: int, n: int, big_endian: bool = False) -> tf.Tensor:
    order = range(n) if not big_endian else range(n - 1, -1, -1)
    return sum(b[start + i] * (1 << (8 * k)) for k, i in enumerate(order))


def _color_table(packed: tf.Tensor) -> tf.Tensor:
    # Bit 7 set: a table of 2 ** (size + 1) RGB entries follows.
    return tf.where(packed >= 0x80, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64),
                                                              packed % 8), 0)


def _gif_pixels(data: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    head = _bytes_at(data, 0, 13)
    screen_w, screen_h = _int(head, 6, 2), _int(head, 8, 2)
    start = 13 + _color_table(head[10])
    zero = tf.constant(0, tf.int64)

    def body(pos, in_blocks, total, max_w, max_h, done):
        b = _bytes_at(data, pos, 10)
        is_image = tf.logical_and(tf.logical_not(in_blocks), tf.equal(b[0], 0x2C))
        image_fits = pos + 10 <= length
        is_ext = tf.logical_and(tf.logical_not(in_blocks), tf.equal(b[0], 0x21))
        w, h = _int(b, 5, 2), _int(b, 7, 2)
        counted = tf.logical_and(is_image, image_fits)
        new_pos = tf.where(in_blocks, pos + 1 + b[0],
                           tf.where(is_image, pos + 11 + _color_table(b[9]), pos + 2))
        new_in_blocks = tf.where(in_blocks, b[0] > 0, tf.logical_or(is_image, is_ext))
        stop = tf.logical_and(tf.logical_not(in_blocks), tf.logical_not(
            tf.logical_or(counted, is_ext)))
        return (tf.where(stop, pos, new_pos), tf.where(stop, in_blocks, new_in_blocks),
                total + tf.where(counted, w * h, zero),
                tf.where(counted, tf.maximum(max_w, w), max_w),
                tf.where(counted, tf.maximum(max_h, h), max_h), stop)

    def cond(pos, in_blocks, total, max_w, max_h, done):
        return tf.logical_and(tf.logical_not(done), pos < length)

    _, _, total, max_w, max_h, _ = tf.while_loop(
        cond, body, (start, tf.constant(False), zero, zero, zero, tf.constant(False)))
    canvas = tf.maximum(screen_w, max_w) * tf.maximum(screen_h, max_h)
    return tf.where(length < 13, tf.constant(-1, tf.int64), tf.maximum(canvas, total))


def header_pixels(data: tf.Tensor) -> tf.Tensor:
    """Pixels an encoded image declares, read from its header in core TF ops.

    The graph twin of :func:`kerastl.data.header.read_header` (same rules,
    same numbers): PNG IHDR, JPEG frame header (``tf.image.extract_jpeg_shape``,
    which reads markers only, progressive JPEGs included), GIF (the larger of
    the canvas and the sum of every frame's area, as TensorFlow's GIF decoder
    rasterises every frame), BMP and WebP (VP8, VP8L, VP8X) parsed with
    ``tf.strings.substr`` and ``tf.io.decode_raw``. Nothing is decoded, so it is
    safe on hostile input inside a serving graph.

    Args:
        data: a scalar ``tf.string``, the encoded file (map over a batch with
            ``tf.map_fn``).

    Returns:
        Scalar ``int64``: height x width (GIF: see above); ``-1`` when ``data``
        is not a JPEG, PNG, GIF, BMP or WebP file or its header is cut short
        (the decoder then fails with its own error). A JPEG whose markers
        libjpeg cannot read raises ``InvalidArgumentError``, as decoding would.

    Example:
        >>> header_pixels(tf.io.read_file("bomb.png"))  # 20000x20000 declared
        <tf.Tensor: shape=(), dtype=int64, numpy=400000000>
    """
    data = tf.convert_to_tensor(data, tf.string)
    length = tf.cast(tf.strings.length(data), tf.int64)
    head = _bytes_at(data, 0, 32)
    minus_one = tf.constant(-1, tf.int64)

    def starts(offset, magic):
        return tf.reduce_all(tf.equal(head[offset:offset + len(magic)], list(magic)))

    def png():
        ok = tf.logical_and(length >= 24, starts(12, b"IHDR"))
        return tf.where(ok, _int(head, 16, 4, True) * _int(head, 20, 4, True), minus_one)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    def bmp():
        def signed(v):
            return tf.abs(tf.where(v >= 1 << 31, v - (1 << 32), v))

        core = tf.equal(_int(head, 14, 4), 12)
        pixels = tf.where(core, _int(head, 18, 2) * _int(head, 20, 2),
                          signed(_int(head, 18, 4)) * signed(_int(head, 22, 4)))
        return tf.where(length >= 26, pixels, minus_one)

    def webp():
        lossy = tf.logical_and(starts(12, b"VP8 "), starts(23, b"\x9d\x01\x2a"))
        lossy_px = (_int(head, 26, 2) % 0x4000) * (_int(head, 28, 2) % 0x4000)
        lossless = tf.logical_and(starts(12, b"VP8L"), tf.equal(head[20], 0x2F))
        # 14-bit width - 1, then 14-bit height - 1, little-endian bit order.
        w = 1 + head[21] + (head[22] % 64) * 256
        h = 1 + head[22] // 64 + head[23] * 4 + (head[24] % 16) * 1024
        extended = starts(12, b"VP8X")
        ext_px = (1 + _int(head, 24, 3)) * (1 + _int(head, 27, 3))
        pixels = tf.where(lossy, lossy_px, tf.where(lossless, w * h, tf.where(
            extended, ext_px, minus_one)))
        return tf.where(length >= 30, pixels, minus_one)

    branches = {"JPEG": jpeg, "PNG": png, "GIF": lambda: _gif_pixels(data, length),
                "BMP": bmp, "WEBP": webp}
    # The first matching magic wins, as in sniff_format (and decode_image).
    index = tf.constant(len(header_lib.MAGIC), tf.int32)
    for i, (_, offset, magic) in reversed(list(enumerate(header_lib.MAGIC))):
        index = tf.where(starts(offset, magic), tf.constant(i, tf.int32), index)
    return tf.switch_case(index, [branches[fmt] for fmt, _, _ in header_lib.MAGIC]
                          + [lambda: minus_one])


def assert_pixels(data: tf.Tensor, max_pixels: int | None = None,
                  name: tf.Tensor | str = "image") -> tf.Operation:
    """A graph assertion that ``data`` declares at most ``max_pixels`` pixels.

    Run the decode under ``tf.control_dependencies([assert_pixels(...)])``: an
    image over the limit fails with ``InvalidArgumentError`` whose message is
    one line, ``"<name>: image declares N pixels, over the limit of M pixels
    (max_pixels=M) ..."``, before anything is allocated.

    Args:
        data: scalar ``tf.string``, the encoded file.
        max_pixels: the limit; None: ``$KERASTL_MAX_PIXELS`` or the default,
            resolved when the graph is built (an exported model keeps it).
        name: what to call the image in the message (a string or a string tensor).
    """
    limit = header_lib.resolve_max_pixels(max_pixels)
    pixels = header_pixels(data)
    message = tf.strings.join([name, tf.strings.format(
        ": image declares {} pixels, over the limit of {} pixels (max_pixels={}); it may be "
        "a decompression bomb", [pixels, limit, limit])])
    return tf.debugging.Assert(pixels <= limit, [message])
