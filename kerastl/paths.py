"""Names that become folders, and the folders kerastl may delete.

One rule for every name that becomes a path component (a tuning project, a
run, an exported model): :func:`check_name`. One rule for deleting: kerastl
removes a folder only when it created it and marked it (:data:`MARKER`, a
small JSON file written at creation), and only a direct child of the folder it
was given (:func:`clear_owned_dir`). A folder without the mark is the user's:
kerastl refuses to delete it and says so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import re
import secrets
import shutil
import time

from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

#: The file that marks a folder as created by kerastl (JSON: what created it, when).
MARKER = ".kerastl-project"
#: Folder-safe names: letters, digits, ``_ - .``, not starting with ``.`` or ``-``.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAX_NAME = 255  # NAME_MAX of common file systems


def is_safe_name(name) -> bool:
    """Whether ``name`` may be used as one folder name (see :func:`check_name`)."""
    return (isinstance(name, str) and len(name) <= _MAX_NAME
            and NAME_PATTERN.match(name) is not None)


def check_name(name, *, what: str = "name", kind: str = "name") -> str:
    """Return ``name`` if it is a folder-safe name, else raise.

    Folder-safe: not empty, at most 255 characters of letters, digits, ``_``,
    ``-`` and ``.``, not starting with ``.`` or ``-``. So never ``.``, ``..``,
    a path with a separator, or an absolute path.

    Args:
        name: the value to check.
        what: the argument's name, for the message (``"project_name"``).
        kind: what the name names, for the message (``"model name"``).

    Raises:
        UserInputError: ``name`` is not folder-safe.
    """
    if not is_safe_name(name):
        raise UserInputError(
            f"{what} must be a folder-safe {kind} (letters, digits, '_', '-', '.', not "
            f"starting with '.' or '-', at most {_MAX_NAME} characters). "
            f"Received: {what}={name!r}")
    return name


def is_owned(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a real folder (not a link) holding kerastl's :data:`MARKER`."""
    folder = pathlib.Path(folder)
    return (not folder.is_symlink() and folder.is_dir()
            and (folder / MARKER).is_file() and not (folder / MARKER).is_symlink())


def _mark(folder: pathlib.Path, kind: str) -> None:
    from kerastl._version import __version__
    from kerastl.atomic import atomic_write_text

    info = {"created_by": "kerastl", "kerastl_version": __version__, "kind": kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()}
    atomic_write_text(folder / MARKER, json.dumps(info, indent=1) + "\n")


def make_owned_dir(parent: str | os.PathLike, name: str, *, kind: str,
                   what: str = "name") -> pathlib.Path:
    """``parent/name``, created and marked as kerastl's when it does not exist yet.

    ``parent`` is created if needed. An existing folder is left as it is
    (marked or not): resuming in it deletes nothing.

    The folder appears with its mark already inside (made as a hidden folder
    beside it, then renamed into place), so a process running
    :func:`clear_owned_dir` at the same moment never finds it unmarked. Of
    several processes creating it at once one rename wins; the others find
    the winner's folder (a rename onto a folder that holds files fails).

    Raises:
        UserInputError: ``name`` is not folder-safe, or ``parent/name`` is a file.
    """
    check_name(name, what=what, kind=kind)
    folder = pathlib.Path(parent) / name
    pathlib.Path(parent).mkdir(parents=True, exist_ok=True)
    for _ in range(1000):
        if not (folder.exists() or folder.is_symlink()):
            fresh = folder.with_name(f".kerastl-new-{os.getpid()}-{secrets.token_hex(4)}")
            fresh.mkdir()
            try:
                _mark(fresh, kind)
                try:
                    os.rename(fresh, folder)
                    return folder
                except OSError as err:  # another process created it first
                    if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            finally:
                if fresh.exists():
                    shutil.rmtree(fresh)
        if folder.is_dir():
            return folder
        if folder.exists() or folder.is_symlink():
            raise UserInputError(f"{folder} exists and is not a folder.")
        # It vanished meanwhile (a concurrent --overwrite moved it away): try again.
    raise UserInputError(f"Could not create {folder}: other processes keep removing it.")


def clear_owned_dir(parent: str | os.PathLike, name: str, *, kind: str,
                    what: str = "name") -> pathlib.Path:
    """Empty ``parent/name`` for a fresh start (``--overwrite``), then mark it again.

    Deletes only a folder that kerastl created and marked, and only when it is
    a direct child of ``parent``: anything else is refused, nothing removed.

    Raises:
        UserInputError: ``name`` is not folder-safe, or the folder exists
            without kerastl's mark (the user's own folder, a link, or a
            project written before kerastl marked its folders).
    """
    check_name(name, what=what, kind=kind)
    folder = pathlib.Path(parent) / name
    if not (folder.exists() or folder.is_symlink()):
        return make_owned_dir(parent, name, kind=kind, what=what)
    owned = is_owned(folder)
    if not owned:
        # Another process clearing it at the same moment may have renamed it away just
        # now (it is gone), or already put its fresh, marked folder in place: look again.
        if not (folder.exists() or folder.is_symlink()):
            return make_owned_dir(parent, name, kind=kind, what=what)
        owned = is_owned(folder)
    if not owned:
        why = ("it is a link" if folder.is_symlink() else f"there is no {MARKER} file in it")
        raise UserInputError(
            f"Refusing to overwrite {folder}: kerastl did not create it ({why}), so it may "
            f"hold your own files. Delete it yourself or choose another {what}.")
    if pathlib.Path(os.path.realpath(folder)).parent != pathlib.Path(os.path.realpath(parent)):
        raise UserInputError(f"Refusing to overwrite {folder}: it is not inside {parent}.")
    log.info("Removing %s (--overwrite)", folder)
    # Renamed away first: the rename is atomic, so of several processes clearing the same
    # folder at once exactly one takes it and deletes it alone (rmtree never sees files
    # vanish under it); the others go on to create the fresh folder.
    doomed = folder.with_name(f".kerastl-removing-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(folder, doomed)
    except FileNotFoundError:  # another process is clearing it right now
        pass
    else:
        shutil.rmtree(doomed)
    return make_owned_dir(parent, name, kind=kind, what=what)
