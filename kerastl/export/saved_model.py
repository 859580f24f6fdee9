"""``export_saved_model``: a Keras model in, a TF Serving version folder out.

Layout (TF Serving's versioned layout)::

    SavedModels/
      models.config                    ModelServerConfig listing every model here
      <name>/<version>/saved_model.pb  signatures serving_default, predict_images
                      variables/
                      assets/labels.txt
                      assets.extra/tf_serving_warmup_requests
                      assets.extra/kerastl.json

A version is written to a hidden ``.incomplete-*`` folder next to it and
renamed into place, so TF Serving's file poller never sees half a version.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from kerastl._quiet import quiet_loggers
from kerastl.atomic import atomic_write_text
from kerastl.data import header
from kerastl.errors import UserInputError
from kerastl.export import warmup as warmup_lib
from kerastl.export.signatures import (
    BYTES_INPUT,
    IMAGES_INPUT,
    ServingModule,
    check_resize,
    model_image_size,
)
from kerastl.export.text import (
    TEXT_INPUT,
    TextServingModule,
    build_text_requests,
    example_texts,
    is_text_model,
)
from kerastl.models import contract_of, task_of
from kerastl.paths import NAME_PATTERN, check_name

log = logging.getLogger(__name__)

MODELS_CONFIG = "models.config"
METADATA_FILE = "kerastl.json"
LABELS_FILE = "labels.txt"
_NAME = NAME_PATTERN  # the one rule for names that become folders (kerastl.paths)
_LEFTOVER = re.compile(r"^\.(incomplete|replaced)-(\d+)-(\d+)-[0-9a-f]+$")


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The complete versions (integer folders holding a ``saved_model.pb``), sorted."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").is_file())


def resolve_version_dir(path: str | os.PathLike) -> Path:
    """A version folder, or the latest version of a model folder.

    Raises:
        UserInputError: ``path`` is neither.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    found = versions(path)
    if found:
        return path / str(found[-1])
    raise UserInputError(
        f"{path} is not a SavedModel: expected a version folder holding saved_model.pb, or "
        "a model folder with numbered versions (SavedModels/<name>/<version>/).")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(model_dir: Path) -> None:
    """Clean up after exports that were killed: drop half-written versions, and put back
    a version that an interrupted overwrite had moved aside."""
    for child in sorted(model_dir.iterdir()):
        match = _LEFTOVER.match(child.name)
        if not match or not child.is_dir() or _pid_alive(int(match.group(3))):
            continue
        kind, version = match.group(1), match.group(2)
        if kind == "replaced" and not (model_dir / version).exists():
            log.warning("Restoring %s/%s, moved aside by an interrupted export", model_dir, version)
            os.rename(child, model_dir / version)
            continue
        log.info("Removing %s, left by an interrupted export", child)
        shutil.rmtree(child, ignore_errors=True)


def _check_class_names(class_names, task: str, num_outputs: int) -> list[str] | None:
    if task == "regression":
        if class_names is not None:
            raise UserInputError("class_names was given but the model is a regressor "
                                 "(linear outputs); leave class_names=None.")
        return None
    if class_names is None:
        log.warning("No class_names given: the exported model names classes '0'..'%d'. "
                    "Pass class_names=splits.class_names.", num_outputs - 1)
        return [str(i) for i in range(num_outputs)]
    if isinstance(class_names, str | bytes) or not hasattr(class_names, "__iter__"):
        raise UserInputError(f"class_names must be a list of strings. Received: {class_names!r}")
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in class_names]
    if len(names) != num_outputs:
        raise UserInputError(
            f"class_names has {len(names)} entries but the model has {num_outputs} outputs. "
            "Pass the class names in label order (splits.class_names).")
    if any(not n.strip() or "\n" in n for n in names):
        raise UserInputError("class_names must be non-empty single-line strings. "
                             f"Received: {names!r}")
    return names


def _check_version(version) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserInputError(f"version must be a positive int or None (next version). "
                             f"Received: version={version!r}")
    return version


def write_models_config(base_dir: str | os.PathLike, serving_base_path: str | None = "/models",
                        ) -> Path:
    """Write ``base_dir/models.config`` (a ModelServerConfig text proto) listing every model.

    Args:
        base_dir: the export root holding ``<name>/<version>/`` folders.
        serving_base_path: where ``base_dir`` is seen by the server (``/models``
            inside the ``tensorflow/serving`` container when mounted there);
            ``None`` writes absolute local paths.

    Returns:
        The path of the config file.
    """
    base_dir = Path(base_dir)
    with _locked(base_dir / f".{MODELS_CONFIG}.lock"):  # list and write as one step
        return _write_models_config(base_dir, serving_base_path)


@contextlib.contextmanager
def _locked(lock_file: Path):
    """An exclusive ``flock`` on ``lock_file`` (where the platform has one)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename still keeps the file whole
        yield
        return
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_models_config(base_dir: Path, serving_base_path: str | None) -> Path:
    entries = []
    for child in sorted(base_dir.iterdir()):
        if child.is_dir() and _NAME.match(child.name) and versions(child):
            root = (f"{serving_base_path.rstrip('/')}/{child.name}" if serving_base_path
                    else str(child.resolve()))
            entries.append("  config {\n"
                           f"    name: {json.dumps(child.name)}\n"
                           f"    base_path: {json.dumps(root)}\n"
                           '    model_platform: "tensorflow"\n'
                           "  }\n")
    return atomic_write_text(base_dir / MODELS_CONFIG,
                             "model_config_list {\n" + "".join(entries) + "}\n")


def export_saved_model(model: keras.Model, base_dir: str | os.PathLike = "SavedModels", *,
                       name: str, version: int | None = None,
                       class_names: Sequence[str] | None = None, warmup: bool = True,
                       overwrite: bool = False, top_k: int = 5, example_images=None,
                       image_size=None, resize: str | None = None,
                       serving_base_path: str | None = "/models",
                       max_pixels: int | None = None) -> Path:
    """Export a model for TF Serving: ``base_dir/name/<version>/``.

    For a text model (raw strings in, e.g. :class:`kerastl.text.TextClassifier`),
    ``serving_default`` takes ``text`` (``tf.string [batch]``) and tokenizes in
    the graph with core TensorFlow ops; ``example_images`` then gives example
    texts for the warmup requests.

    The ``serving_default`` signature takes a batch of encoded image files
    (``tf.string``, what the REST API sends as ``{"b64": ...}``) and decodes,
    resizes and preprocesses them in the graph; ``predict_images`` takes
    float32 ``[0, 255]`` images of the model's size. Classifiers answer
    ``probabilities``, ``classes`` (top-1 index), ``class_names`` (top-1
    label), ``top_k_indices`` and ``top_k_scores``; regressors ``predictions``.

    Args:
        model: a built Keras model from float32 ``[0, 255]`` RGB images
            (e.g. from :func:`ktl.build_classifier`).
        base_dir: export root; ``models.config`` there is rewritten to list
            every model in it.
        name: the model's name (folder and TF Serving model name).
        version: integer version; ``None`` takes the next free integer.
        class_names: label of each output, in label order (default: the
            model's own ``class_names``, for a task model that has them).
        warmup: write ``assets.extra/tf_serving_warmup_requests`` (needs
            ``kerastl[serving]``).
        overwrite: replace an existing ``version`` (atomically) instead of refusing.
        top_k: number of classes in ``top_k_indices``/``top_k_scores``.
        example_images: images for the warmup requests: an array
            ``(N, H, W, 3)``, a dataset, or image files/bytes (default:
            synthetic images).
        image_size: ``(height, width)`` for models with a dynamic input size.
        resize: the data layer's ``resize`` used in training (``"stretch"``,
            ``"crop"``, ``"pad"`` or ``"random_crop"``); the bytes signature
            decodes and resizes exactly the same way. Default: what the model
            says (a task model keeps the resize it was trained with), else
            ``"stretch"``.
        serving_base_path: where the server sees ``base_dir`` (for models.config).
        max_pixels: most pixels an image sent to ``serving_default`` may declare; a
            larger one (a decompression bomb) is refused from its header, before it is
            decoded. ``None``: ``$KERASTL_MAX_PIXELS`` or 89,478,485 (Pillow's limit).

    Returns:
        The version folder, e.g. ``SavedModels/flowers/3``.

    Raises:
        UserInputError: bad name, version already exported (without
            ``overwrite``), class names not matching the outputs, ...
        MissingExtraError: ``warmup=True`` without tensorflow-serving-api.

    Example:
        >>> path = ktl.export_saved_model(model, name="flowers",
        ...                               class_names=splits.class_names)
    """
    if not isinstance(model, keras.Model):
        raise UserInputError(f"model must be a keras.Model. Received: {type(model).__name__}")
    check_name(name, what="name", kind="model name")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserInputError(f"top_k must be a positive int. Received: top_k={top_k!r}")
    version = _check_version(version)
    contract = contract_of(model)
    text = is_text_model(model)
    size = None if text else model_image_size(model, image_size)
    resize = None if text else check_resize(resize or contract["resize"] or "stretch")
    task = task_of(model)
    if class_names is None and task != "regression":
        class_names = contract["class_names"]
    num_outputs = int(model.output_shape[-1])
    names = _check_class_names(class_names, task, num_outputs)
    max_pixels = header.resolve_max_pixels(max_pixels)
    examples = None
    if warmup:  # bad example images fail before the slow part
        warmup_lib._serving_protos()
        examples = (example_texts(example_images) if text else
                    warmup_lib.example_bytes(example_images, size, max_pixels=max_pixels))

    model_dir = Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(model_dir)
    explicit = version is not None
    if not explicit:
        version = _next_version(model_dir)  # tentative: claimed when the export is complete
    final = model_dir / str(version)
    if final.exists() and not overwrite:
        raise UserInputError(
            f"{final} already exists. Choose another version, leave version=None for the "
            "next one, or pass overwrite=True (--overwrite) to replace it.")

    token = f"{version}-{os.getpid()}-{secrets.token_hex(4)}"
    staging = model_dir / f".incomplete-{token}"
    try:
        if text:
            module = TextServingModule(model, task=task, class_names=names, top_k=top_k)
        else:
            module = ServingModule(model, task=task, class_names=names, top_k=top_k,
                                   image_size=size, resize=resize, max_pixels=max_pixels)
        with quiet_loggers("absl", "tensorflow"):
            tf.saved_model.save(module, str(staging), signatures=module.signatures())
        (staging / "assets").mkdir(exist_ok=True)
        if names is not None:
            (staging / "assets" / LABELS_FILE).write_text("\n".join(names) + "\n")
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        records = 0
        if warmup:
            logs = (build_text_requests(name, examples) if text else
                    warmup_lib.build_requests(name, examples, size, task=task, resize=resize))
            records = warmup_lib.write_warmup_requests(extra / warmup_lib.WARMUP_FILE, logs)
        metadata = {
            "name": name, "version": version, "kind": contract["kind"], "task": task,
            "image_size": None if text else list(size), "resize": resize,
            "sequence_length": contract["sequence_length"],
            "top_k": min(top_k, num_outputs), "class_names": names,
            "max_pixels": None if text else module.max_pixels,
            "inputs": ({"serving_default": TEXT_INPUT} if text else
                       {"serving_default": BYTES_INPUT, "predict_images": IMAGES_INPUT}),
            "warmup_records": records, "keras_model_name": model.name,
            "tensorflow": tf.__version__, "keras": keras.__version__,
        }
        if explicit:
            (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
            _move_into_place(staging, final, model_dir, token)
        else:
            version = _claim_next_version(staging, model_dir, version, metadata)
            final = model_dir / str(version)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    write_models_config(base_dir, serving_base_path)
    log.info("Exported %s (version %d, %s, %d warmup records)", final, version, task, records)
    return final


def _next_version(model_dir: Path) -> int:
    return max((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), default=0) + 1


def _claim_next_version(staging: Path, model_dir: Path, version: int, metadata: dict) -> int:
    """Rename the complete ``staging`` folder to the next free version number.

    ``rename`` onto an existing version fails (a non-empty folder), so two exports that
    picked the same number cannot both take it: the loser moves on to the next number.
    Concurrent exports of one model thus end with distinct, complete versions.
    """
    for _ in range(10_000):
        version = max(version, _next_version(model_dir))
        metadata["version"] = version
        (staging / "assets.extra" / METADATA_FILE).write_text(
            json.dumps(metadata, indent=2) + "\n")
        try:
            os.rename(staging, model_dir / str(version))
            return version
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            log.debug("Version %d of %s was taken meanwhile; trying the next", version,
                      model_dir)
            version += 1
    raise UserInputError(f"Could not claim a version number in {model_dir}.")


def _move_into_place(staging: Path, final: Path, model_dir: Path, token: str) -> None:
    if final.exists():  # overwrite: swap in with two renames, drop the old one after
        old = model_dir / f".replaced-{token}"
        os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(staging, final)
    except OSError as err:
        raise UserInputError(f"Could not move the export into {final} ({err}); another "
                             "export may have taken this version. Export again.") from err
