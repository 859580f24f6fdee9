"""A generated dirty image folder: good images plus every kind of bad file."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

# name -> (class folder, how to make it, loaded? , expected first pixel RGB or None)
GOOD_VALUE = {"a": 30, "b": 120, "c": 210}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def bomb_png(width=30000, height=30000) -> bytes:
    """A small PNG whose header declares ``width x height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\x00" * (width * 3) * 1)  # one row of data only
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows)
            + _png_chunk(b"IEND", b""))


def png16_rgb(value: int, size=(12, 12)) -> bytes:
    import tensorflow as tf

    array = np.full(size + (3,), value * 257, dtype=np.uint16)
    return tf.io.encode_png(array).numpy()


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def make_corpus(root: str, good_per_class: int = 70, size=(24, 32)):
    """Write the corpus. Returns ``(good, bad)``: ``{path: (label_name, rgb)}`` and ``{path}``.

    Every good image is a solid colour so a loaded image identifies its file's class.
    """
    rng = np.random.default_rng(0)
    good: dict[str, tuple[str, tuple[int, int, int]]] = {}
    bad: set[str] = set()
    for cls, v in GOOD_VALUE.items():
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(good_per_class):
            ext = (".jpg", ".png", ".bmp")[i % 3]
            path = os.path.join(root, cls, f"good_{i:03d}{ext}")
            h, w = size[0] + int(rng.integers(0, 8)), size[1] + int(rng.integers(0, 8))
            Image.fromarray(np.full((h, w, 3), v, np.uint8)).save(path)
            good[path] = (cls, (v, v, v))

    def put(cls, name, data, is_good, rgb=None):
        path = os.path.join(root, cls, name)
        with open(path, "wb") as f:
            f.write(data)
        if is_good:
            good[path] = (cls, rgb)
        else:
            bad.add(path)

    solid = Image.fromarray(np.full((20, 20, 3), (200, 40, 40), np.uint8))
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    jpeg = _save(noise, "JPEG", quality=95)
    put("a", "truncated.jpg", jpeg[: len(jpeg) * 2 // 3], False)
    put("b", "header_cut.jpg", jpeg[:40], False)
    put("a", "zero.jpg", b"", False)
    put("b", "text.jpg", b"this is not a jpeg\n" * 20, False)
    put("b", "bomb.png", bomb_png(), False)
    put("c", "notes.txt", b"hello", False)
    put("a", "cmyk.jpg", _save(solid.convert("CMYK"), "JPEG", quality=95), True, (200, 40, 40))
    rgba = Image.fromarray(np.dstack([np.full((20, 20, 3), (10, 200, 90), np.uint8),
                                      np.full((20, 20), 255, np.uint8)]))
    put("b", "rgba.png", _save(rgba, "PNG"), True, (10, 200, 90))
    put("c", "grey16.png", _save(Image.fromarray(np.full((20, 20), 100 * 257, np.uint16)),
                                 "PNG"), True, (100, 100, 100))
    put("c", "rgb16.png", png16_rgb(150), True, (150, 150, 150))
    frames = [Image.fromarray(np.full((20, 20, 3), c, np.uint8)) for c in (60, 180, 240)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("a", "animated.gif", buf.getvalue(), True, (60, 60, 60))
    put("b", "grey.jpg", _save(Image.fromarray(np.full((20, 20), 77, np.uint8)), "JPEG",
                              quality=95), True, (77, 77, 77))
    palette = solid.convert("P")
    put("c", "palette.png", _save(palette, "PNG"), True,
        tuple(int(v) for v in palette.convert("RGB").getpixel((0, 0))))
    put("a", "onebit.bmp", _save(Image.fromarray(np.full((20, 20), 255, np.uint8))
                                 .convert("1"), "BMP"), True, (255, 255, 255))
    put("b", "photo.tiff", _save(solid, "TIFF"), True, (200, 40, 40))
    put("c", "png_named.jpg", _save(solid, "PNG"), True, (200, 40, 40))
    return good, bad
