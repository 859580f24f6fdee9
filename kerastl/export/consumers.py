"""The loaders that consume an export, each run in a fresh process that never imports kerastl.

=====================  ============================================================
``saved_model_load``   ``tf.saved_model.load``: object-based, TF2 Python code
``session``            ``tf.compat.v1.saved_model.loader.load`` in a Session:
                       what ``saved_model_cli run`` does
``cpp``                TensorFlow's C++ ``LoadSavedModel`` through the C API
                       (``TF_LoadSessionFromSavedModel`` / ``TF_SessionRun``):
                       the loader TF Serving links; also replays the warmup file
``litert``             a ``.tflite`` file in LiteRT (``ai_edge_litert``)
=====================  ============================================================

:func:`run_consumers` runs them in fresh processes (``fresh_check.py`` as a script) and
collects what each answered, or the error (with the stage it was in) that stopped it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAVED_MODEL_CONSUMERS = ("cpp", "session", "saved_model_load")
LABELS = {
    "saved_model_load": "tf.saved_model.load",
    "session": "session loader (saved_model_cli run)",
    "cpp": "C++ loader (TF Serving's LoadSavedModel, via the C API)",
    "litert": "LiteRT (ai_edge_litert)",
}
_SCRIPT = Path(__file__).with_name("fresh_check.py")
_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH",
             "CUDA_VISIBLE_DEVICES")


@dataclasses.dataclass
class ConsumerResult:
    """What one consumer answered: ``outputs`` by ``<request>/<output>``, or ``error``."""

    consumer: str
    target: str
    outputs: dict
    report: dict
    error: str | None
    seconds: float

    @property
    def label(self) -> str:
        return LABELS[self.consumer]

    @property
    def ok(self) -> bool:
        return self.error is None


def pack_bytes(arrays: dict, key: str, items: list[bytes]) -> None:
    """Store a list of byte strings as ``<key>__data`` + ``<key>__offsets`` (no pickle)."""
    offsets = np.cumsum([0] + [len(b) for b in items]).astype(np.int64)
    arrays[f"{key}__data"] = np.frombuffer(b"".join(items), dtype=np.uint8)
    arrays[f"{key}__offsets"] = offsets


def unpack_bytes(arrays: dict, key: str) -> list[bytes]:
    """The byte strings :func:`pack_bytes` stored under ``key``."""
    data, offsets = arrays[f"{key}__data"], arrays[f"{key}__offsets"]
    return [data[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def _one_line(text: str, limit: int = 400) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    # TF prefixes errors with "Graph execution error:" and a node stack; keep the cause.
    useful = [ln for ln in lines if not ln.startswith(("Graph execution error",
                                                       "Detected at node", "<stack traces",
                                                       "[[", "File \""))]
    line = " ".join(useful or lines)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEYS}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def run_consumers(targets: dict[str, str | os.PathLike], arrays: dict, *,
                  timeout: float = 600) -> dict[str, ConsumerResult]:
    """Run each ``consumer -> model path`` of ``targets`` in a fresh process.

    The SavedModel consumers share one process, run one after the other in the order
    given (TensorFlow takes seconds to import; each loader still builds its own session
    and variables); the LiteRT ones share a second process, started at the same time,
    which never imports TensorFlow. A consumer that crashes its process is named, with
    the stage it was in; the consumers after it in that process are reported as not run.

    Args:
        targets: consumer name (see :data:`LABELS`) to the SavedModel version folder
            (or ``.tflite`` file) it loads. Keys may carry a suffix after ``"@"``
            (``"litert@float"``) to run one consumer on several files.
        arrays: the requests (see ``fresh_check.py``).
        timeout: seconds each process may take.

    Returns:
        A :class:`ConsumerResult` per key of ``targets``, in the order of ``targets``.
    """
    groups = [[k for k in targets if not k.startswith("litert")],
              [k for k in targets if k.startswith("litert")]]
    results = {}
    with tempfile.TemporaryDirectory(prefix="kerastl-verify-") as tmp:
        inputs = os.path.join(tmp, "in.npz")
        np.savez(inputs, **arrays)
        started = []
        for n, keys in enumerate(g for g in groups if g):
            out, report = (os.path.join(tmp, f"{n}.{ext}") for ext in ("npz", "json"))
            command = [sys.executable, "-I", str(_SCRIPT), inputs, out, report,
                       *(f"{k}={Path(targets[k]).resolve()}" for k in keys)]
            proc = subprocess.Popen(command, env=_environment(), cwd=tmp, text=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            started.append((keys, proc, out, report, time.perf_counter()))
        for keys, proc, out, report_file, start in started:
            results.update(_collect(keys, targets, proc, out, report_file, start, timeout))
    return {k: results[k] for k in targets}


def _collect(keys, targets, proc, out, report_file, start, timeout) -> dict:
    try:
        _, stderr = proc.communicate(timeout=max(1.0, timeout - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        stderr = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    report = json.loads(Path(report_file).read_text()) if os.path.exists(report_file) else {}
    outputs = {}
    if os.path.exists(out):
        with np.load(out) as data:
            outputs = {k: data[k] for k in data.files}
    results = {}
    for key in keys:
        mine = report.get("consumers", {}).get(key)
        error = None
        if mine is None:
            error = "did not run: an earlier consumer in its process stopped it"
            if not any(k in report.get("consumers", {}) for k in keys):
                error = _crash_cause(proc, stderr, "starting")
        elif not mine.get("ok"):
            stage = mine.get("stage", "starting")
            error = (f"while {stage}: {mine['error']}" if mine.get("error")
                     else _crash_cause(proc, stderr, stage))
        prefix = f"{key}|"
        answers = {k[len(prefix):]: v for k, v in outputs.items() if k.startswith(prefix)}
        mine = dict(mine or {}, kerastl_imported=report.get("kerastl_imported", False))
        results[key] = ConsumerResult(key.split("@")[0], str(targets[key]), answers, mine,
                                      None if error is None else _one_line(error), seconds)
    return results


def _crash_cause(proc, stderr, stage) -> str:
    if proc.returncode is not None and proc.returncode < 0:
        return f"while {stage}: the process was killed by signal {-proc.returncode}"
    tail = [ln for ln in (stderr or "").splitlines() if ln.strip()]
    return f"while {stage}: exit {proc.returncode}: " + (tail[-1] if tail else "no output")
