"""Check image files up front, in parallel, so a dirty folder never crashes ``fit``.

Each file gets a cheap header check first (format and dimensions, read
without decoding pixels by :mod:`kerastl.data.header`, or Pillow for the
formats TensorFlow does not read), so a "decompression bomb" that declares
30000x30000 pixels is refused before anything is allocated. Only regular
files are opened: a FIFO named ``x.png`` would block the reader. Files that pass
are then decoded once by the same TensorFlow op the pipeline uses; a file
TensorFlow cannot decode but Pillow can (1-bit BMP, TIFF, ...) is converted
to PNG bytes held in memory, so it is still used. GIFs always take the
Pillow route: only their first frame is decoded, so a long animation cannot
exhaust memory.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import logging
import os
import re
import warnings

import numpy as np
import tensorflow as tf

from kerastl.data import header as header_lib
from kerastl.data.header import DEFAULT_MAX_PIXELS, FOLDER_EXTENSIONS
from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = FOLDER_EXTENSIONS  # the data layer's one list (kerastl.data.header)
__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "CheckedFile", "check_file",
           "check_files", "log_skipped"]


@dataclasses.dataclass
class CheckedFile:
    """A file that passed validation.

    Attributes:
        path: the file's path.
        inline: PNG bytes to use instead of the file ("" when TensorFlow reads it).
        size: ``(height, width)`` of the image.
        fmt: Pillow's name of the format (``"JPEG"``, ``"PNG"``, ...).
    """

    path: str
    inline: bytes
    size: tuple[int, int]
    fmt: str = ""


def _pil_header(file, max_pixels: int):
    """``(PIL image, None)`` or ``(None, reason)`` for what kerastl's header reader cannot read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on big images; we apply our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file)
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{found.group(1)} pixels" if found else "too many pixels"
        return None, (f"image declares {pixels}, over Pillow's limit; it may be a "
                      "decompression bomb")
    except UnidentifiedImageError:
        return None, "not an image (unrecognised file content)"
    except (OSError, ValueError, SyntaxError) as err:
        return None, f"truncated or corrupt image header ({err})"
    width, height = image.size
    header = header_lib.ImageHeader(image.format or "", height, width, 1, width * height)
    if header.pixels > max_pixels:
        return None, header_lib.over_limit_message(header, max_pixels)
    return image, None


def _size_and_format(f, data: bytes, max_pixels: int):
    """``((height, width), format, None)`` or ``(None, None, reason)`` from the header."""
    header = header_lib.read_header(data)
    if header is None:  # TIFF & co, or a header cut short: Pillow says which
        f.seek(0)
        image, reason = _pil_header(f, max_pixels)
        if image is None:
            return None, None, reason
        return (image.size[1], image.size[0]), image.format, None
    if header.pixels > max_pixels:
        return None, None, header_lib.over_limit_message(header, max_pixels)
    if header.width < 1 or header.height < 1:
        return None, None, f"image declares an empty size {header.width}x{header.height}"
    return (header.height, header.width), header.format, None


def _pil_to_png(data: bytes) -> bytes:
    """Decode with Pillow (first frame), convert to RGB and re-encode as PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.seek(0)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * 255.0 / peak, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()


def check_file(path: str, max_pixels: int | None = None):
    """Validate one file (a regular file only: a FIFO or device is never read).

    Args:
        path: the file.
        max_pixels: the pixel budget (None: ``$KERASTL_MAX_PIXELS`` or
            :data:`DEFAULT_MAX_PIXELS`).

    Returns:
        ``(CheckedFile, None)`` when usable, ``(None, reason)`` otherwise.
    """
    max_pixels = header_lib.resolve_max_pixels(max_pixels)
    try:
        with header_lib.open_regular(path) as f:
            if os.fstat(f.fileno()).st_size == 0:
                return None, "empty file (0 bytes)"
            data = f.read()
            size, fmt, reason = _size_and_format(f, data, max_pixels)
            if reason is not None:
                return None, reason
    except UserInputError as err:  # not a regular file
        return None, str(err).split(": ", 1)[-1]
    except OSError as err:
        return None, f"cannot read file: {err.strerror or err}"
    if fmt == "GIF":
        # TensorFlow's GIF decoder reads every frame even for the first one
        # (about frames x width x height bytes); Pillow decodes frame 0 alone.
        tf_reason = "GIF decoded by Pillow"
    else:
        try:
            if fmt == "JPEG":
                # Same entropy decoding as a full decode (so truncation and
                # corruption still fail) at 1/64 of the memory and much faster.
                tf.io.decode_jpeg(data, channels=3, ratio=8)
            else:
                tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
            return CheckedFile(path, b"", size, fmt or ""), None
        except tf.errors.OpError as err:
            tf_reason = str(err.message).split("[Op:")[0].strip()
            tf_reason = tf_reason.split("}}")[-1].strip() or type(err).__name__
    # TensorFlow refused it; Pillow may still read it in full (e.g. 1-bit BMP, TIFF).
    try:
        inline = _pil_to_png(data)
    except (OSError, ValueError, SyntaxError) as err:
        return None, f"corrupt or truncated {fmt or 'image'}: {tf_reason}; Pillow: {err}"
    return CheckedFile(path, inline, size, "PNG"), None


def check_files(paths: list[str], *, max_pixels: int | None = None,
                workers: int | None = None, verbose: bool = False):
    """Validate ``paths`` in parallel, keeping their order.

    Args:
        paths: files to check.
        max_pixels: refuse images declaring more pixels than this (None:
            ``$KERASTL_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`).
        workers: threads (default: 2 x CPU count, at most 16).
        verbose: show a progress bar.

    Returns:
        ``(checked, skipped)``: a list aligned with ``paths`` holding a
        :class:`CheckedFile` or ``None``, and ``(path, reason)`` pairs.
    """
    import keras

    max_pixels = header_lib.resolve_max_pixels(max_pixels)
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    checked: list[CheckedFile | None] = [None] * len(paths)
    skipped: list[tuple[str, str]] = []
    bar = keras.utils.Progbar(len(paths), unit_name="file") if verbose and paths else None

    def guarded(path):
        try:
            return check_file(path, max_pixels)
        except Exception as err:  # noqa: BLE001 - untrusted bytes can break any decoder
            return None, f"unreadable image ({type(err).__name__}: {err})"

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(guarded, paths)
        for i, (path, (ok, reason)) in enumerate(zip(paths, results, strict=True)):
            if ok is None:
                skipped.append((path, reason))
            checked[i] = ok
            if bar is not None and (i + 1) % 256 == 0:
                bar.update(i + 1)
    if bar is not None:
        bar.update(len(paths), finalize=True)
    return checked, skipped


def log_skipped(skipped: list[tuple[str, str]], total: int) -> None:
    """Log every skipped file (a warning) and a one-line summary."""
    for path, reason in skipped:
        log.warning("Skipping %s: %s", path, reason)
    if skipped:
        log.warning("Skipped %d of %d files (see Splits.skipped).", len(skipped), total)
