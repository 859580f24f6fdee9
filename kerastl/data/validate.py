"""Check image files up front, in parallel, so a dirty folder never crashes ``fit``.

Each file gets a cheap header check first (format and dimensions, read with
Pillow without decoding pixels), so a "decompression bomb" that declares
30000x30000 pixels is refused before anything is allocated. Files that pass
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

from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp",
                    ".tif", ".tiff")
# Pillow's own default bomb limit (about 89 megapixels).
DEFAULT_MAX_PIXELS = 89_478_485
_MAX_GIF_FRAMES_READ = 1


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


def _header(file, max_pixels: int):
    """Return ``(PIL image, None)`` or ``(None, reason)`` reading the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on big images; we apply our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file)
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{found.group(1)} pixels" if found else "too many pixels"
        return None, (f"decompression bomb refused: the header declares {pixels}, over the "
                      f"max_pixels limit of {max_pixels}")
    except UnidentifiedImageError:
        return None, "not an image (unrecognised file content)"
    except (OSError, ValueError, SyntaxError) as err:
        return None, f"truncated or corrupt image header ({err})"
    width, height = image.size
    if width < 1 or height < 1:
        return None, f"image declares an empty size {width}x{height}"
    if width * height > max_pixels:
        return None, (f"image declares {width}x{height} = {width * height} pixels, over the "
                      f"max_pixels limit of {max_pixels} (decompression bomb guard; raise "
                      "max_pixels if the image is genuine)")
    return image, None


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


def check_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Validate one file.

    Returns:
        ``(CheckedFile, None)`` when usable, ``(None, reason)`` otherwise.
    """
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return None, "empty file (0 bytes)"
            image, reason = _header(f, max_pixels)
            if image is None:
                return None, reason
            size = (image.size[1], image.size[0])
            fmt = image.format
            f.seek(0)
            data = f.read()
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


def check_files(paths: list[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                workers: int | None = None, verbose: bool = False):
    """Validate ``paths`` in parallel, keeping their order.

    Args:
        paths: files to check.
        max_pixels: refuse images declaring more pixels than this.
        workers: threads (default: 2 x CPU count, at most 16).
        verbose: show a progress bar.

    Returns:
        ``(checked, skipped)``: a list aligned with ``paths`` holding a
        :class:`CheckedFile` or ``None``, and ``(path, reason)`` pairs.
    """
    import keras

    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    checked: list[CheckedFile | None] = [None] * len(paths)
    skipped: list[tuple[str, str]] = []
    bar = keras.utils.Progbar(len(paths), unit_name="file") if verbose and paths else None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise UserInputError(f"max_pixels must be a positive int. Received: {max_pixels!r}")

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
