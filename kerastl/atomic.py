"""Atomic file writes: a temporary file beside the target, then one rename.

Every file kerastl replaces (``model.keras``, ``report.json``, the tuner's
JSON state, caches) goes through :func:`atomic_path`, so a process killed at
any moment leaves either the old file or the new one, never half of one.

The temporary files are recognisable, ``.kerastl-tmp-<pid>-<random>-<name>``,
so the next write into the same folder removes those whose process is gone
(:func:`remove_stale_temp_files`). They are created with mode ``0o666``
filtered by the umask, like any file a program opens for writing (``0644``
under the usual umask ``022``), not ``0600`` as :func:`tempfile.mkstemp`
would make them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import re
import secrets
from collections.abc import Callable, Iterator
from typing import IO

log = logging.getLogger(__name__)

TEMP_PREFIX = ".kerastl-tmp-"
_TEMP = re.compile(r"^\.kerastl-tmp-(\d+)-[0-9a-f]{8}-")
_KEEP_NAME = 100  # characters of the target's name kept in the temporary name (its suffix)


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def temp_name(target: str | os.PathLike, pid: int | None = None) -> str:
    """A fresh temporary file name for ``target`` (same suffix, so writers that
    check it, such as ``model.save``, accept it)."""
    name = pathlib.Path(target).name[-_KEEP_NAME:]
    return f"{TEMP_PREFIX}{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}-{name}"


def remove_stale_temp_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Remove the temporary files that killed kerastl processes left in ``folder``.

    Only files named by :func:`temp_name` whose process no longer exists are
    removed; those of running processes (another run writing into the same
    folder) are kept. Returns the removed paths.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or pid_alive(int(match.group(1))):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        path = pathlib.Path(entry.path)
        try:
            path.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        log.info("Removed %s, left by an interrupted kerastl process", path)
        removed.append(path)
    return removed


def fsync_dir(folder: pathlib.Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where the file system refuses)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The temporary file exists (empty, mode ``0o666 & ~umask``) when the block
    starts, for writers that take a path. On an exception it is removed and
    ``path`` is untouched. Stale temporary files of dead processes in the same
    folder are removed first.

    Example:
        >>> with atomic_path(run / "model.keras") as tmp:
        ...     model.save(tmp)
    """
    path = pathlib.Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder)
    tmp = folder / temp_name(path)
    try:
        # O_EXCL: never write through a planted file or link; 0o666: the umask decides.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        _raise_about(err, tmp, path)
        raise
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(err, OSError):
            _raise_about(err, tmp, path)
        raise
    fsync_dir(folder)


def _raise_about(err: OSError, tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Raise ``err`` again naming ``path`` where it named the temporary file or no
    file (a full disk, a read-only file system): the user reads which file failed."""
    if err.errno is not None and err.filename in (None, str(tmp), tmp):
        raise OSError(err.errno, err.strerror, str(path)) from err


def atomic_write(path: str | os.PathLike, write: Callable[[IO], object], *,
                 text: bool = False) -> pathlib.Path:
    """Write ``path`` atomically: ``write(file)`` fills the open temporary file.

    Args:
        path: the file to replace.
        write: called with the file, opened ``"wb"`` (or ``"w"``, UTF-8, no
            newline translation, when ``text``).
        text: open the file in text mode.

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        if text:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                write(fh)
        else:
            with open(tmp, "wb") as fh:
                write(fh)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text), text=True)


def atomic_write_json(path: str | os.PathLike, data, *, indent: int | None = None,
                      **dump_kwargs) -> pathlib.Path:
    """Write ``data`` as JSON to ``path`` atomically (``dump_kwargs`` go to :func:`json.dump`)."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dump_kwargs))
