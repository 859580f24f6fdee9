"""What a verification reports (:class:`Check`, :class:`VerifyReport`) and the helpers
that every kind of export's verification shares (image: :mod:`kerastl.export.verify`,
text: :mod:`kerastl.export.verify_text`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerastl.export import warmup as warmup_lib
from kerastl.export.consumers import pack_bytes


@dataclasses.dataclass
class Check:
    """One verified property: ``passed`` against a threshold, explained in ``detail``."""

    name: str
    passed: bool
    detail: str
    required: bool = True


@dataclasses.dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` is True when every required check passed."""

    path: Path
    checks: list[Check]
    signatures: str
    metrics: dict

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks if c.required)

    def failure(self) -> str | None:
        """The first failed required check as one line (``None`` when ``ok``)."""
        failed = next((c for c in self.checks if c.required and not c.passed), None)
        return None if failed is None else f"{failed.name}: {failed.detail}"

    def summary(self) -> str:
        """A human-readable table of the checks."""
        lines = [f"Verification of {self.path}:"]
        for c in self.checks:
            mark = "PASS" if c.passed else ("FAIL" if c.required else "warn")
            lines.append(f"  [{mark}] {c.name}: {c.detail}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference (``inf`` for other shapes; strings: equal or ``inf``)."""
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind in "USO" or b.dtype.kind in "USO":
        return 0.0 if np.array_equal(a, b) else float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0


def warmup_arrays(path: Path, arrays: dict, checks: list[Check]) -> None:
    """Add the export's warmup requests to ``arrays`` (for the consumers) and check the file."""
    file = path / "assets.extra" / warmup_lib.WARMUP_FILE
    if not file.is_file():
        checks.append(Check("warmup file", False, f"{file} is missing", required=False))
        return
    try:
        logs = warmup_lib.read_warmup_requests(file)
    except Exception as err:  # noqa: BLE001 - any parse failure is the finding
        checks.append(Check("warmup file", False, f"does not parse: {err}"))
        return
    ok = 0 < len(logs) <= warmup_lib.MAX_WARMUP_RECORDS
    checks.append(Check("warmup file", ok, f"{len(logs)} PredictionLog records parsed "
                        f"(limit {warmup_lib.MAX_WARMUP_RECORDS})"))
    for i, entry in enumerate(logs):
        request = entry.predict_log.request
        for input_name, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            key = f"warmup:{i}:{request.model_spec.signature_name}:{input_name}"
            if value.dtype == object:
                pack_bytes(arrays, key, [bytes(v) for v in value.reshape(-1)])
            else:
                arrays[key] = value


def warmup_replay_check(label: str, report: dict) -> Check | None:
    """Whether a consumer answered every warmup request it replayed (``None``: it replayed none)."""
    replays = report.get("warmup_replay") or []
    if not replays:
        return None
    failed = [r for r in replays if not r["ok"]]
    return Check(f"{label}: warmup requests replay", not failed,
                 f"{len(replays) - len(failed)}/{len(replays)} answered"
                 + (f"; first failure: {failed[0]['error']}" if failed else ""))
