"""Read text files, or say in one line why one is not usable text; read class folders of them.

A folder of ``.txt`` files gathered from the wild holds images renamed
``.txt``, zipped archives, UTF-16 exports from Windows, Latin-1 bytes, empty
files and links to nowhere. Each is refused with a reason (listed in
``TextSplits.skipped``) instead of becoming a string of mojibake in training,
and nothing is decoded with a guessed encoding: a file that is not valid
UTF-8 is reported, not read as Latin-1.
"""

from __future__ import annotations

import codecs
import logging
import os

from kerastl.data.folders import _class_entries, _hidden, _regular_or_reason, _walk
from kerastl.data.header import open_regular
from kerastl.errors import DataError, UserInputError

log = logging.getLogger(__name__)

#: The largest text file read by default (bytes): a 10 MB ".txt" is a log or
#: a dump, not one document to classify.
DEFAULT_MAX_BYTES = 10_000_000

# Headers of binary formats that turn up renamed .txt, with a word for each.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"PK\x03\x04", "ZIP archive or Office/EPUB document"),
    (b"PK\x05\x06", "ZIP archive or Office/EPUB document"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"\x7fELF", "ELF executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Microsoft Office (OLE) document"),
)


def binary_kind(data: bytes) -> str | None:
    """A word for the binary format ``data`` starts with, or None when it may be text."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] in (b"RIFF",) and data[8:12] == b"WEBP":
        return "WebP image"
    return None


def check_max_bytes(max_bytes) -> int:
    """``max_bytes`` if it is a positive int, else one clear error."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise UserInputError(f"max_bytes must be a positive int. Received: {max_bytes!r}")
    return max_bytes


def check_encoding(encoding) -> str:
    """``encoding`` if Python knows it, else one clear error."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise UserInputError(f"Unknown text encoding. Received: encoding={encoding!r} "
                             "(e.g. 'utf-8', 'cp1252', 'latin-1')") from None
    return encoding


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n:,} bytes"


def decode_text(data: bytes, encoding: str = "utf-8") -> tuple[str | None, str | None]:
    """``(text, None)`` for bytes that are text in ``encoding``, else ``(None, reason)``.

    With ``encoding="utf-8"`` a leading byte-order mark is dropped (files saved
    as "UTF-8 with BOM"). UTF-16 and UTF-32 files (their byte-order mark or NUL
    bytes give them away) and known binary formats are refused by name.
    """
    kind = binary_kind(data)
    if kind is not None:
        return None, f"binary file ({kind}), not text"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None, ("UTF-16 or UTF-32 text (byte-order mark "
                      f"0x{data[:2].hex().upper()}); save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        return None, f"binary file (NUL byte at offset {nul}), not text"
    start = 0
    if codecs.lookup(encoding).name == "utf-8" and data.startswith(codecs.BOM_UTF8):
        start = len(codecs.BOM_UTF8)
    try:
        return data[start:].decode(encoding), None
    except UnicodeDecodeError as err:
        offset = start + err.start
        return None, (f"not {_encoding_word(encoding)} text (byte 0x{data[offset]:02x} at "
                      f"offset {offset})")


def _encoding_word(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name == "utf-8" else name


def read_text_file(path: str, *, encoding: str = "utf-8",
                   max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str | None, str | None]:
    """Read ``path`` as one text: ``(text, None)``, or ``(None, reason)`` when it is not usable.

    Only regular files are opened (a FIFO named ``x.txt`` would block the
    reader); a file over ``max_bytes`` is refused before it is read.

    Args:
        path: the file.
        encoding: its encoding (default UTF-8, with or without a byte-order mark).
        max_bytes: the largest file read.

    Returns:
        ``(text, None)`` or ``(None, reason)``; the reasons are one line, e.g.
        ``"empty file (0 bytes)"``, ``"binary file (PNG image), not text"``,
        ``"not UTF-8 text (byte 0xe9 at offset 4)"``, ``"cannot read file:
        Permission denied"``.
    """
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                return None, (f"too large: {_size(size)}, over the {_size(max_bytes)} "
                              "limit for one text (max_bytes)")
            data = f.read(max_bytes + 1)
    except UserInputError as err:  # not a regular file
        return None, str(err).split(": ", 1)[-1]
    except OSError as err:
        return None, f"cannot read file: {err.strerror or err}"
    if len(data) > max_bytes:  # grew since the stat
        return None, f"too large: over the {_size(max_bytes)} limit for one text (max_bytes)"
    if not data:
        return None, "empty file (0 bytes)"
    text, reason = decode_text(data, encoding)
    if text is not None and not text.strip():
        return None, "no text (white space only)"
    return text, reason


def _read_class_files(folder: str, exts: tuple[str, ...], rng, skipped: list, *,
                      encoding: str, max_bytes: int, max_per_class: int | None):
    """``(path, text)`` of the usable files under one class folder, in path order.

    With ``max_per_class``, files are read in a seeded random order until that
    many are usable; the others are not read.
    """
    files = []
    for path in _walk(folder, False, skipped):
        if os.path.splitext(path)[1].lower() in exts:
            files.append(path)
        else:
            skipped.append((path, f"not a {'/'.join(exts)} file"))
    order = files
    if max_per_class is not None and len(files) > max_per_class:
        order = [files[i] for i in rng.permutation(len(files))]
    found = []
    for path in order:
        if max_per_class is not None and len(found) >= max_per_class:
            log.info("max_per_class=%d: using %d of the %d files in %s",
                     max_per_class, len(found), len(files), folder)
            break
        text, reason = read_text_file(path, encoding=encoding, max_bytes=max_bytes)
        if text is None:
            skipped.append((path, reason))
        else:
            found.append((path, text.strip()))
    return sorted(found)


def read_split_folder(folder: str, class_names: list[str], exts, rng, skipped: list, **read):
    """``(texts, labels)`` of ``folder/<class>/...`` for :func:`kerastl.data.text_folder`.

    Files at the top of ``folder`` and unusable files go to ``skipped``.
    """
    index = {c: i for i, c in enumerate(class_names)}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not _hidden(entry.name) and not entry.is_dir():
            skipped.append((entry.path, _regular_or_reason(entry.path)
                            or "not inside a class subfolder"))
    texts, labels = [], []
    for entry in _class_entries(folder, warn=True):
        if entry.name not in index:
            raise DataError(f"Class folder {entry.path!r} is not among the training classes "
                            f"{class_names}. Every split needs the same class subfolders.")
        found = _read_class_files(entry.path, exts, rng, skipped, **read)
        texts += [text for _, text in found]
        labels += [index[entry.name]] * len(found)
    return texts, labels


def no_usable_file(folder: str, skipped: list, exts) -> DataError:
    """The error for a class folder without one usable file, with a reason from ``skipped``."""
    inside = [(p, r) for p, r in skipped if p.startswith(folder.rstrip(os.sep) + os.sep)]
    why = (f"{len(inside)} file(s) skipped, e.g. {os.path.basename(inside[0][0])!r}: "
           f"{inside[0][1]}" if inside else "it holds no files")
    return DataError(f"Class folder {folder!r} has no usable text file ({why}). Add "
                     f"{'/'.join(exts)} files to it or remove it.")
