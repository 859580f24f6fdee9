"""Verify an exported text model in the loaders that consume it (TF Serving's C++ loader
first), each in a fresh process that imports neither kerastl nor tensorflow-text.

The requests are raw strings: the given texts (or a built-in set: short, accented,
CJK, emoji, empty, whitespace-only, a 10,000-word text), an empty batch, and every
warmup record. Each consumer's probabilities must equal the Keras model's within
``atol``, and its top-1 class names must be the Keras model's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from kerastl.errors import UserInputError
from kerastl.export.checks import (
    Check,
    VerifyReport,
    max_diff,
    warmup_arrays,
    warmup_replay_check,
)
from kerastl.export.consumers import SAVED_MODEL_CONSUMERS, pack_bytes, run_consumers
from kerastl.export.listing import show_signatures
from kerastl.export.saved_model import resolve_version_dir

#: Texts every verification sends when the caller gives none.
DEFAULT_TEXTS = (
    "The central bank raised interest rates by half a point.",
    "Le café était très bon, merci beaucoup ! Ångström naïve façade",
    "東京でオリンピックが開催された。",
    "Great match tonight \N{SOCCER BALL}\N{PARTY POPPER} what a goal!!!",
    "",
    "   \t\n  ",
    " ".join(["word"] * 10_000),
)


def verify_text(path: str | os.PathLike, model: keras.Model | None = None, *,
                texts: Sequence[str] | None = None, atol: float = 1e-5,
                timeout: float = 600, consumers=SAVED_MODEL_CONSUMERS) -> VerifyReport:
    """Check that every loader of a text export answers like the Keras model.

    Args:
        path: a version folder (or a model folder: its latest version).
        model: the Keras text model that was exported; ``None`` compares the
            consumers with ``tf.saved_model.load``'s answers.
        texts: the strings to send (default :data:`DEFAULT_TEXTS`).
        atol: largest allowed absolute difference of scores.
        timeout: seconds each consumer's process may take.
        consumers: which SavedModel consumers to run (C++ first by default).

    Returns:
        A :class:`~kerastl.export.checks.VerifyReport`.
    """
    path = resolve_version_dir(path)
    unknown = [c for c in consumers if c not in SAVED_MODEL_CONSUMERS]
    if unknown or not consumers:
        raise UserInputError(f"consumers must be among {', '.join(SAVED_MODEL_CONSUMERS)}. "
                             f"Received: {consumers!r}")
    texts = list(DEFAULT_TEXTS if texts is None else texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise UserInputError("texts must be a non-empty list of strings.")
    arrays: dict = {}
    pack_bytes(arrays, "texts", [t.encode("utf-8") for t in texts])
    checks: list[Check] = []
    warmup_arrays(path, arrays, checks)
    results = run_consumers({c: path for c in consumers}, arrays, timeout=timeout)
    clean = all(not r.report.get("kerastl_imported", False) for r in results.values())
    no_text_ops = all(not r.report.get("tensorflow_text_imported", False)
                      for r in results.values())
    checks.append(Check("fresh processes without kerastl or tensorflow-text",
                        clean and no_text_ops,
                        f"{len(results)} consumers; kerastl imported: {not clean}; "
                        f"tensorflow_text imported: {not no_text_ops}"))
    expected = None
    if model is not None:
        expected = keras.ops.convert_to_numpy(model(tf.constant(texts), training=False))
    metrics = {"num_texts": len(texts), "consumers": {}}
    meta_file = path / "assets.extra" / "kerastl.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    names = meta.get("class_names")
    for result in results.values():
        checks += _consumer_checks(result, expected, atol, names, metrics)
    return VerifyReport(path=path, checks=checks, signatures=show_signatures(path),
                        metrics=metrics)


def _consumer_checks(result, expected, atol, class_names, metrics) -> list[Check]:
    label = result.label
    if not result.ok:
        return [Check(f"{label}: loads and answers", False, result.error)]
    out, report = result.outputs, result.report
    key = "probabilities" if "texts/probabilities" in out else "predictions"
    reference = expected if expected is not None else out[f"texts/{key}"]
    versus = "Keras" if expected is not None else "itself"
    diff = max_diff(out[f"texts/{key}"], reference)
    metrics["consumers"][result.consumer] = {"load_seconds": report["load_seconds"],
                                             "keras_max_abs_diff": diff}
    checks = [Check(f"{label}: loads and answers", True,
                    f"signatures {report['signatures']}, loaded in "
                    f"{report['load_seconds']:.1f} s"),
              Check(f"{label}: serving_default(text) vs {versus}", diff <= atol,
                    f"max |diff| {diff:.2e} on {len(reference)} texts (atol {atol})")]
    if key == "probabilities" and class_names:
        served = [v.decode() if isinstance(v, bytes) else str(v)
                  for v in out["texts/class_names"]]
        wanted = [class_names[i] for i in np.asarray(reference).argmax(axis=1)]
        checks.append(Check(f"{label}: top-1 class names", served == wanted,
                            f"{sum(a == b for a, b in zip(served, wanted))}/{len(wanted)} "
                            "equal to Keras's"))
    empty = out.get(f"empty/{key}")
    checks.append(Check(f"{label}: empty batch", empty is not None and empty.shape[0] == 0,
                        f"{key} shape {None if empty is None else empty.shape}"))
    replay = warmup_replay_check(label, report)
    return checks + ([replay] if replay is not None else [])
