"""Phase-aware, atomic training checkpoints so a killed fine-tuning run resumes where it stopped.

A checkpoint records what Keras's ``BackupAndRestore`` cannot carry across
the freeze -> unfreeze recompile of :func:`kerastl.fine_tune`: the phase,
the epochs done, the trainable (frozen/unfrozen) state, the model weights,
the optimizer's variables, the best weights so far, the early-stopping
counters and the history.

On disk (``backup_dir``)::

    ckpt-000004/          one complete checkpoint
        model.npz         model weights, in ``model.weights`` order
        optimizer.npz     optimizer variables (absent between phases)
        best.npz          weights of the best epoch so far
        rng.npz           seed-generator states (dropout masks continue)
        state.json        phase, epochs, history, best/early-stopping state
        MANIFEST.json     size and SHA-256 of each file above; written last
    latest                the name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder, flushed to disk,
and renamed into place; only then is ``latest`` replaced (write + rename)
and the previous checkpoint deleted. A run killed at any instant leaves
either the old or the new checkpoint complete, and a checkpoint whose
files do not match its manifest is never loaded.

Test-only hook: when ``KERASTL_TEST_PAUSE_AT`` names an event (see
:func:`pause_point`), the process writes the event name to the file named by
``KERASTL_TEST_PAUSE_FILE`` and sleeps, so a test can SIGKILL it at that
exact point. Nothing happens unless that variable is set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import time

import keras
import numpy as np

from kerastl.atomic import atomic_write_text, fsync_dir
from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

LATEST = "latest"
MANIFEST = "MANIFEST.json"
_PREFIX = "ckpt-"
_TMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1


@dataclasses.dataclass
class Checkpoint:
    """One loaded checkpoint.

    Attributes:
        state: JSON state (``phase``, ``epochs_done``, ``phase_epochs_done``,
            ``history`` rows, ``best``, ``early_stopping``, ``fingerprint``).
        arrays: ``{"model": [...], "optimizer": [...], "best": [...]}`` (numpy).
        path: the checkpoint folder.
    """

    state: dict
    arrays: dict[str, list[np.ndarray]]
    path: pathlib.Path


def pause_point(event: str) -> None:
    """Test-only: stop here (write a marker and sleep) when ``KERASTL_TEST_PAUSE_AT`` names ``event``.

    Events: ``train-batch:<phase>:<epoch>:<batch>`` (after a training batch,
    1-based global epoch, 0-based batch), ``checkpoint-write:<label>`` (half
    way through writing a checkpoint), ``phase-boundary`` (phase 1 done and
    saved, phase 2 not started).
    """
    wanted = os.environ.get("KERASTL_TEST_PAUSE_AT")
    if not wanted or event not in wanted.split(","):
        return
    marker = os.environ.get("KERASTL_TEST_PAUSE_FILE")
    if marker:
        pathlib.Path(marker).write_text(event)
    log.warning("KERASTL_TEST_PAUSE_AT: paused at %s (test hook)", event)
    time.sleep(600)


class PauseCallback(keras.callbacks.Callback):
    """Calls :func:`pause_point` after each training batch (installed only for tests)."""

    def __init__(self, phase: int):
        super().__init__()
        self.phase = phase
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = int(epoch) + 1

    def on_train_batch_end(self, batch, logs=None):
        pause_point(f"train-batch:{self.phase}:{self.epoch}:{int(batch)}")


def pause_callbacks(phase: int) -> list:
    """``[PauseCallback(phase)]`` when the test hook is active, else ``[]``."""
    return [PauseCallback(phase)] if os.environ.get("KERASTL_TEST_PAUSE_AT") else []


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: pathlib.Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _save_arrays(path: pathlib.Path, arrays: list) -> None:
    with open(path, "wb") as f:
        np.savez(f, **{f"a{i:05d}": np.asarray(a) for i, a in enumerate(arrays)})


def _load_arrays(path: pathlib.Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[k] for k in sorted(data.files)]


class CheckpointManager:
    """Write and find phase-aware checkpoints in ``directory``.

    Args:
        directory: the backup folder (created on first write).
        fingerprint: JSON-able description of the run; a checkpoint whose
            fingerprint gives another value for a key both record is refused
            with a clear error (see :func:`kerastl.config.resume_fingerprint`).
        writer: False on the non-chief workers of a cluster, which read
            checkpoints but never write them.
    """

    def __init__(self, directory, *, fingerprint: dict, writer: bool = True):
        self.directory = pathlib.Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise UserInputError(f"backup_dir {self.directory} exists and is not a folder")
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.writer = writer
        self._counter = 0

    # -- reading ---------------------------------------------------------
    def _candidates(self) -> list[pathlib.Path]:
        if not self.directory.is_dir():
            return []
        found = sorted((p for p in self.directory.iterdir()
                        if p.is_dir() and p.name.startswith(_PREFIX)), reverse=True)
        latest = self.directory / LATEST
        try:
            named = self.directory / latest.read_text().strip()
        except OSError:
            return found
        return [named] + [p for p in found if p != named]

    def _verify(self, path: pathlib.Path) -> dict | None:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            for name, meta in manifest["files"].items():
                file = path / name
                if file.stat().st_size != meta["size"] or _sha256(file) != meta["sha256"]:
                    log.warning("Checkpoint %s: %s does not match its manifest; ignored",
                                path, name)
                    return None
            return manifest
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def latest(self) -> Checkpoint | None:
        """The newest complete, verified checkpoint, or None.

        Raises:
            ValueError: the checkpoint belongs to a different run (model,
                phases or optimizer differ).
        """
        for path in self._candidates():
            manifest = self._verify(path)
            if manifest is None:
                continue
            state = json.loads((path / "state.json").read_text())
            self._check_fingerprint(state.get("fingerprint", {}), path)
            arrays = {name.removesuffix(".npz"): _load_arrays(path / name)
                      for name in manifest["files"] if name.endswith(".npz")}
            self._counter = int(path.name.removeprefix(_PREFIX))
            return Checkpoint(state=state, arrays=arrays, path=path)
        return None

    def _check_fingerprint(self, found: dict, path: pathlib.Path) -> None:
        # Only what both record is compared: a key one side lacks is an option
        # the other kerastl version did not have (or counts as resume-neutral).
        diffs = [k for k in sorted(set(found) & set(self.fingerprint))
                 if found.get(k) != self.fingerprint.get(k)]
        if diffs:
            detail = ", ".join(f"{k}: {found.get(k)!r} there vs {self.fingerprint.get(k)!r} now"
                               for k in diffs[:4])
            raise UserInputError(
                f"backup_dir {self.directory} holds a checkpoint ({path.name}) of a different "
                f"run ({detail}). Use another backup_dir, or delete it to start afresh."
            )

    # -- writing ---------------------------------------------------------
    def save(self, state: dict, arrays: dict[str, list], *, label: str = "") -> pathlib.Path | None:
        """Write a new checkpoint atomically; returns its folder (None on non-writers)."""
        if not self.writer:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        name = f"{_PREFIX}{self._counter:06d}"
        tmp = self.directory / f"{_TMP_PREFIX}{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        state = dict(state, fingerprint=self.fingerprint, format=FORMAT_VERSION,
                     written=time.time())
        files = []
        for key, values in arrays.items():
            if values is None:
                continue
            _save_arrays(tmp / f"{key}.npz", values)
            files.append(f"{key}.npz")
            if key == "model":
                pause_point(f"checkpoint-write:{label}")
        (tmp / "state.json").write_text(json.dumps(state, indent=1, default=_jsonable))
        files.append("state.json")
        for f in files:
            _fsync_file(tmp / f)
        manifest = {"files": {f: {"size": (tmp / f).stat().st_size,
                                  "sha256": _sha256(tmp / f)} for f in files}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _fsync_file(tmp / MANIFEST)
        final = self.directory / name
        if final.exists():  # left by a run killed after the rename, before `latest`
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(self.directory)
        atomic_write_text(self.directory / LATEST, name)
        self._cleanup(keep=final)
        log.info("Checkpoint %s written (%s)", final, label or state.get("status"))
        return final

    def _cleanup(self, keep: pathlib.Path) -> None:
        for path in self.directory.iterdir():
            if path == keep or path.name == LATEST:
                continue
            if path.name.startswith((_PREFIX, _TMP_PREFIX)):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def optimizer_arrays(optimizer) -> list[np.ndarray] | None:
    """The optimizer's variables as numpy arrays (None when it has not been built)."""
    if optimizer is None or not getattr(optimizer, "built", False):
        return None
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]


def restore_optimizer(optimizer, trainable_variables, arrays: list[np.ndarray] | None) -> None:
    """Build ``optimizer`` for ``trainable_variables`` and load ``arrays`` into it.

    Raises:
        ValueError: the saved state does not fit this optimizer.
    """
    if not arrays:
        return
    if not optimizer.built:
        optimizer.build(trainable_variables)
    variables = optimizer.variables
    shapes_ok = len(variables) == len(arrays) and all(
        tuple(v.shape) == tuple(a.shape) for v, a in zip(variables, arrays, strict=True))
    if not shapes_ok:
        raise UserInputError(
            "The checkpoint's optimizer state does not fit this model's trainable variables "
            f"({len(arrays)} saved arrays vs {len(variables)} variables). Use another "
            "backup_dir, or delete it to start afresh."
        )
    for v, a in zip(variables, arrays, strict=True):
        v.assign(a)
