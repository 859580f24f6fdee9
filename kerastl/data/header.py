"""Image dimensions read from the file header, without decoding: the pixel budget.

A 48 KB PNG may declare 20000x20000 pixels; decoding it allocates 1.2 GB.
Every decode path (data sources, ``predict``, ``evaluate``, the export's
example images, the exported serving graph) reads the header first and
refuses an image over ``max_pixels``. The header is parsed twice, with the
same rules: in pure Python (:func:`read_header`, :func:`check_pixels`) and in
core TensorFlow ops (:func:`header_pixels`, :func:`assert_pixels`) for use
inside a ``tf.function`` graph such as a SavedModel's serving signature.

The pixel count is what the decoder allocates: height x width, except for
GIF, where TensorFlow's decoder rasterises every frame, so the count is the
larger of the canvas and the sum of the frames' areas.

The limit is ``max_pixels`` where a function takes it, else the
``KERASTL_MAX_PIXELS`` environment variable, else :data:`DEFAULT_MAX_PIXELS`
(Pillow's default, about 89 M pixels).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from kerastl.defaults import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from kerastl.errors import UserInputError

# The formats TensorFlow's decode_image reads, by their magic bytes (format, offset, bytes).
MAGIC = (("JPEG", 0, b"\xff\xd8\xff"), ("PNG", 0, b"\x89PNG"), ("GIF", 0, b"GIF8"),
         ("BMP", 0, b"BM"), ("WEBP", 8, b"WEBP"))
FORMATS = tuple(fmt for fmt, _, _ in MAGIC)
# File names the serving graph, predict and export read (the MAGIC formats) ...
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp")
# ... and data folders, which also convert TIFF through Pillow.
FOLDER_EXTENSIONS = IMAGE_EXTENSIONS + (".tif", ".tiff")

_HEAD_BYTES = 64 * 1024  # enough for every header but a JPEG with large APP segments
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_GIF_IMAGE, _GIF_EXTENSION = 0x2C, 0x21


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What an image file's header declares.

    Attributes:
        format: one of :data:`FORMATS`.
        height: rows (for GIF, of the canvas: the screen or the largest frame).
        width: columns.
        frames: image frames seen (GIF; 1 for the other formats).
        pixels: pixels the decoder allocates (see the module docstring).
    """

    format: str
    height: int
    width: int
    frames: int = 1
    pixels: int = 0


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit: ``max_pixels``, else ``$KERASTL_MAX_PIXELS``, else the default.

    Raises:
        UserInputError: the value is not a positive int.
    """
    source = f"max_pixels={max_pixels!r}"
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        source = f"{MAX_PIXELS_ENV}={text!r}"
        try:
            max_pixels = int(text.replace("_", ""))
        except ValueError:
            max_pixels = -1
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise UserInputError(f"max_pixels must be a positive int (pixels per image, default "
                             f"{DEFAULT_MAX_PIXELS}). Received: {source}")
    return max_pixels


def sniff_format(data: bytes) -> str | None:
    """``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"BMP"``, ``"WEBP"`` from the magic bytes, or None."""
    for fmt, offset, magic in MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return fmt
    return None


def _u(data: bytes, pos: int, n: int, order: str = "little") -> int:
    return int.from_bytes(data[pos:pos + n], order)


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _png(data):
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return _u(data, 16 + 4, 4, "big"), _u(data, 16, 4, "big")


def _jpeg(data):
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None  # lost the marker chain: corrupt
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        elif marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            return None
        elif marker in _JPEG_SOF:
            if pos + 9 > n:
                return None
            return _u(data, pos + 5, 2, "big"), _u(data, pos + 7, 2, "big")
        else:
            length = _u(data, pos + 2, 2, "big")
            if length < 2:
                return None
            pos += 2 + length
    return None


def _bmp(data):
    if len(data) < 26:
        return None
    if _u(data, 14, 4) == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return _u(data, 20, 2), _u(data, 18, 2)
    return abs(_signed32(_u(data, 22, 4))), abs(_signed32(_u(data, 18, 4)))


def _webp(data):
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return _u(data, 28, 2) & 0x3FFF, _u(data, 26, 2) & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        b = data[21:25]
        return 1 + ((b[1] >> 6) | (b[2] << 2) | ((b[3] & 0x0F) << 10)), 1 + (b[0] | (b[1] & 0x3F) << 8)
    if chunk == b"VP8X":
        return 1 + _u(data, 27, 3), 1 + _u(data, 24, 3)
    return None


def _color_table(packed: int) -> int:
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def _gif(data):
    """``(height, width, frames, pixels)``; walks every block (same rules as the graph)."""
    n = len(data)
    if n < 13:
        return None
    screen_w, screen_h = _u(data, 6, 2), _u(data, 8, 2)
    pos, in_blocks, total, max_w, max_h, frames = 13 + _color_table(data[10]), False, 0, 0, 0, 0
    while pos < n:
        byte = data[pos]
        if in_blocks:  # data sub-blocks: a size byte, then that many bytes; 0 ends them
            pos, in_blocks = (pos + 1, False) if byte == 0 else (pos + 1 + byte, True)
        elif byte == _GIF_IMAGE:
            if pos + 10 > n:
                break
            w, h = _u(data, pos + 5, 2), _u(data, pos + 7, 2)
            total, frames = total + w * h, frames + 1
            max_w, max_h = max(max_w, w), max(max_h, h)
            pos, in_blocks = pos + 10 + _color_table(data[pos + 9]) + 1, True
        elif byte == _GIF_EXTENSION:
            pos, in_blocks = pos + 2, True
        else:  # trailer (0x3B) or garbage
            break
    width, height = max(screen_w, max_w), max(screen_h, max_h)
    return height, width, max(frames, 1), max(width * height, total)


def read_header(data: bytes) -> ImageHeader | None:
    """Read an image's dimensions from its header bytes, without decoding.

    Args:
        data: the file's bytes (its start is enough, except for GIF, whose
            frames are all counted, and JPEGs with large metadata segments).

    Returns:
        An :class:`ImageHeader`, or None when ``data`` is not a JPEG, PNG, GIF,
        BMP or WebP file or its header is cut short (the decoder then fails
        with its own error).
    """
    data = bytes(data[:]) if not isinstance(data, bytes) else data
    fmt = sniff_format(data)
    if fmt == "GIF":
        parsed = _gif(data)
        if parsed is None:
            return None
        return ImageHeader(fmt, parsed[0], parsed[1], parsed[2], parsed[3])
    parse = {"JPEG": _jpeg, "PNG": _png, "BMP": _bmp, "WEBP": _webp}.get(fmt)
    size = parse(data) if parse else None
    if size is None:
        return None
    return ImageHeader(fmt, size[0], size[1], 1, size[0] * size[1])


def open_regular(path: str | os.PathLike):
    """Open ``path`` for binary reading only if it is a regular file (never blocks).

    A FIFO, device or socket named like an image would block the reader or
    have side effects; it is refused before any byte is read.

    Raises:
        UserInputError: not a regular file (the message names its kind).
        OSError: the file cannot be opened.
    """
    fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UserInputError(f"{os.fspath(path)}: not a regular file ({file_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    """A word for a file's type from its ``st_mode`` (``"FIFO"``, ``"socket"`` ...)."""
    for test, word in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return word
    return "special file"


def _read_for_header(path) -> bytes:
    with open_regular(path) as f:
        data = f.read(_HEAD_BYTES)
        fmt = sniff_format(data)
        if len(data) == _HEAD_BYTES and (fmt == "GIF" or (fmt == "JPEG" and _jpeg(data) is None)):
            data += f.read()  # GIF frames, or a JPEG frame header after large metadata
    return data


def _count(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f} M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    return str(n)


def over_limit_message(header: ImageHeader, max_pixels: int) -> str:
    """The one line that says why an image is refused."""
    frames = f" with {header.frames} frames" if header.frames > 1 else ""
    return (f"image is {header.width}x{header.height}{frames} = {_count(header.pixels)} pixels, "
            f"over the limit of {_count(max_pixels)} pixels (max_pixels={max_pixels}); it may "
            f"be a decompression bomb. If the image is genuine, raise the limit with "
            f"max_pixels=, --max-pixels or {MAX_PIXELS_ENV}")


def check_pixels(data_or_path, max_pixels: int | None = None, *,
                 name: str | None = None) -> ImageHeader | None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels.

    Args:
        data_or_path: the file's bytes, or its path (only the header is read;
            a path that is not a regular file is refused without reading).
        max_pixels: the limit; None: ``$KERASTL_MAX_PIXELS`` or
            :data:`DEFAULT_MAX_PIXELS`.
        name: how to call the image in the message (default: the path, or
            ``"image"`` for bytes).

    Returns:
        The :class:`ImageHeader`, or None when the header cannot be read (not
        one of the five formats, or cut short): the decoder reports that.

    Raises:
        UserInputError: one line, ``"<name>: image is 20000x20000 = 400 M
            pixels, over the limit of 89 M pixels (max_pixels=89478485); ..."``,
            or the path is not a regular file.

    Example:
        >>> check_pixels("photo.jpg").pixels
        12000000
    """
    limit = resolve_max_pixels(max_pixels)
    if isinstance(data_or_path, (str, os.PathLike)):
        name = name or os.fspath(data_or_path)
        data = _read_for_header(data_or_path)
    else:
        data = data_or_path
    header = read_header(data)
    if header is not None and header.pixels > limit:
        raise UserInputError(f"{name or 'image'}: {over_limit_message(header, limit)}")
    return header


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> bytes:
    """The bytes of one image file, after the checks every decode path makes.

    The file must be a regular file (a FIFO or device is never opened for a
    blocking read), start like a JPEG, PNG, GIF, BMP or WebP file, and declare
    at most ``max_pixels`` pixels.

    Raises:
        UserInputError: one line naming the file and what is wrong with it.
        OSError: the file cannot be read.
    """
    with open_regular(path) as f:
        data = f.read()
    if sniff_format(data) is None:
        raise UserInputError(f"{os.fspath(path)} is not a JPEG, PNG, GIF, BMP or WebP image.")
    check_pixels(data, max_pixels, name=os.fspath(path))
    return data


def image_files(paths) -> list[Path]:
    """Image files named directly, or found (recursively, sorted) in folders."""
    found = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise UserInputError(f"{path} is not a regular file or a folder "
                                 f"({file_kind(path.stat().st_mode)})")
        else:
            raise FileNotFoundError(f"No such image file or folder: {path}")
    if not found:
        raise UserInputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in "
                             f"{', '.join(map(str, paths))}")
    return found


def read_images(files: list[Path], max_pixels: int | None = None) -> list[bytes]:
    """The bytes of each file, or a clear error naming a file that is not an image
    or declares more than ``max_pixels`` pixels (see :func:`read_image`)."""
    return [read_image(f, max_pixels) for f in files]
