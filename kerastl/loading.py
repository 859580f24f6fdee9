"""Loading the models the CLI is given: one clear line for each way a file can be wrong.

A ``.keras`` file is a zip archive holding ``config.json`` (the architecture)
and the weights. It is loaded with Keras ``safe_mode`` on, so a ``Lambda``
layer (pickled Python code) is refused, never run. A SavedModel is checked
by :func:`kerastl.export.trust.check_trusted` before TensorFlow loads it.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from kerastl.errors import UserInputError

#: Larger than any real architecture; a bigger config.json is not a model's.
_MAX_CONFIG_BYTES = 64 * 1024 * 1024
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def register_keras_objects() -> None:
    """Import (TensorFlow quietly first) the modules that register kerastl's Keras
    classes (layers, models, schedules) for ``keras.saving.load_model``.

    Named one by one, rather than importing the whole package, so that loading
    a model does not depend on every part of kerastl (no import cycle).
    """
    from kerastl import _quiet

    _quiet.import_tensorflow_quietly()
    from kerastl import models  # noqa: F401
    from kerastl.backbones import builder, hub, preprocessing  # noqa: F401
    from kerastl.text import (
        bert,  # noqa: F401
        tokenizer,  # noqa: F401
    )
    from kerastl.text import models as text_models  # noqa: F401
    from kerastl.training import discriminative, schedules  # noqa: F401


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def _check_file(path: Path, what: str) -> None:
    from kerastl.data.header import file_kind

    if not (path.exists() or path.is_symlink()):
        raise FileNotFoundError(f"{what.capitalize()} not found: {path}")
    if not path.exists():
        raise UserInputError(f"{path} is a broken link, not a {what}.")
    kind = file_kind(path.stat().st_mode)
    if kind != "regular file":
        raise UserInputError(f"{path} is a {kind}, not a {what}.")


def _python_code_in(config) -> str | None:
    """The first layer class of ``config`` that holds Python code (``Lambda``...)."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda" or item.get("class_name") == "__lambda__":
                return item["class_name"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _read_keras_config(path: Path) -> dict:
    bad_archive = (f"{path} is not a .keras archive (a zip file); it may be truncated or "
                   "another format.")
    if not zipfile.is_zipfile(path):
        raise UserInputError(bad_archive)
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise UserInputError(
                    f"{path} is a zip file without config.json, so not a .keras model "
                    "(save models with model.save('name.keras')).") from None
            if info.file_size > _MAX_CONFIG_BYTES:
                raise UserInputError(f"{path}: its config.json is {info.file_size} bytes, "
                                     "too large for a model architecture.")
            raw = archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
        raise UserInputError(f"{bad_archive[:-1]} ({_first_line(err)}).") from err
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise UserInputError(f"{path}: its config.json does not parse as JSON "
                             f"({_first_line(err)}); the file is damaged.") from err
    if not isinstance(config, dict):
        raise UserInputError(f"{path}: its config.json is not a model configuration "
                             f"(a JSON {type(config).__name__}, not an object).")
    return config


def _refuse_code(path: Path, layer: str):
    return UserInputError(
        f"{path} holds a {layer} layer, whose Python code Keras safe_mode refuses to run; "
        "kerastl never loads it. Rebuild the model without Lambda layers (a registered "
        "custom layer instead).")


def load_keras_model(path: str | os.PathLike):
    """Load a ``.keras`` (or legacy ``.h5``) model file for the CLI, with safe_mode on.

    kerastl's own layers are registered first (:func:`register_keras_objects`).

    Raises:
        FileNotFoundError: no such file.
        UserInputError: one line saying what is wrong: a folder or special file,
            another suffix, not a zip archive, no or damaged ``config.json``, a
            ``Lambda`` layer, a layer class this kerastl does not know, or
            weights that do not fit.
    """
    import keras

    register_keras_objects()  # kerastl>Preprocess and friends (the CLI loads lazily)

    path = Path(path)
    _check_file(path, "model file")
    if path.suffix == ".keras":
        layer = _python_code_in(_read_keras_config(path))
        if layer:
            raise _refuse_code(path, layer)
    elif path.suffix == ".h5":
        with open(path, "rb") as f:
            if f.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                raise UserInputError(f"{path} is not an HDF5 file; it may be truncated or "
                                     "another format.")
    else:
        raise UserInputError(f"Expected a .keras model file. Received: {path}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, AttributeError,
            zipfile.BadZipFile) as err:
        text = str(err)
        if "safe_mode" in text:
            raise _refuse_code(path, "Lambda") from err
        unknown = re.search(r"Could not (?:locate|deserialize) (?:class|function) "
                            r"'?([\w>.]+)'?", text)
        if unknown:
            from kerastl._version import __version__

            raise UserInputError(
                f"{path} uses {unknown.group(1)!r}, which neither Keras nor kerastl "
                f"{__version__} defines: it was saved with other code (custom layers, "
                "another kerastl version).") from err
        raise UserInputError(f"Could not load the Keras model {path}: "
                             f"{_first_line(err)}") from err


def check_saved_model(path: str | os.PathLike, signature: str = "serving_default",
                      trust: bool = False) -> Path:
    """The SavedModel version folder at ``path``, refused if its ``signature`` may
    write or read files, run Python or use the network (unless ``trust``)."""
    from kerastl.export.saved_model import resolve_version_dir
    from kerastl.export.trust import check_trusted

    version = resolve_version_dir(path)
    check_trusted(version, signature, trust=trust)
    return version
