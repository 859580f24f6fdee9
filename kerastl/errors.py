"""The few exception types users catch.

Every kerastl error is a subclass of :class:`KerastlError` *and* of the
built-in type a user would expect (``ValueError``, ``FileNotFoundError``,
``ImportError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class KerastlError(Exception):
    """Base class of kerastl's own errors (the CLI turns these into exit 2)."""


class UserInputError(KerastlError, ValueError):
    """An argument, file or folder given by the user is not usable."""


class WeightsUnavailableError(KerastlError, FileNotFoundError):
    """Pretrained weights could not be found, downloaded or read."""


class UnsafeWeightsError(KerastlError, ValueError):
    """A weights file tried to do something other than rebuild tensors."""


class DataError(KerastlError, ValueError):
    """A dataset is empty, unreadable or inconsistent."""


class MissingExtraError(KerastlError, ImportError):
    """An optional dependency is missing; the message names the extra."""


class SearchFailedError(RuntimeError):
    """A hyperparameter search ended without a completed trial, or stopped on failures.

    Attributes:
        trial_id: the first failed trial (``None`` when no trial ran).
        result: the :class:`~kerastl.tuning.SearchResult` written anyway
            (trials table and files, no best trial).
    """

    def __init__(self, message: str, *, trial_id: str | None = None, result=None):
        super().__init__(message)
        self.trial_id = trial_id
        self.result = result


class SearchInputError(SearchFailedError, UserInputError):
    """A :class:`SearchFailedError` whose trials failed on the input (weights, data,
    search space): the CLI reports it as a usage error (exit 2)."""


def close_matches(name: str, known: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` entries of ``known`` that look like ``name``."""
    known = list(known)
    matches = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    if not matches:
        lowered = name.lower().replace("-", "_")
        matches = [k for k in known if lowered in k or k in lowered][:n]
    return matches


def require(module: str, extra: str, purpose: str):
    """Import ``module`` lazily, or raise :class:`MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs the optional package '{module}'. "
            f"Install it with: pip install 'kerastl[{extra}]'"
        ) from err


_TF_TAGS = re.compile(r"\{\{function_node [^}]*\}\}|\[\[[^\]]*\]\]|\[Op:[^\]]*\]")
_TF_PREFIX = re.compile(r"^(?:\(\d+\) )?(?:INVALID_ARGUMENT|NOT_FOUND|DATA_LOSS|OUT_OF_RANGE"
                       r"|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|UNIMPLEMENTED|INTERNAL"
                       r"|UNKNOWN|ABORTED|CANCELLED|PERMISSION_DENIED|UNAVAILABLE):"
                       r"|^Error in user-defined function passed to \S+ transformation with "
                       r"iterator: \S+: ")
_TF_SKIP = ("Graph execution error", "Detected at node", "Detected unsupported operations",
            "Stack trace for op definition", "root error(s) found", "Additional GRPC error",
            "0 successful operations", "derived errors ignored", "Function call stack")


def tf_error_cause(err: BaseException) -> str:
    """The cause of a TensorFlow error in one line, without TensorFlow's framing.

    Drops "Graph execution error:", the "Detected at node ... defined at" Python
    stack, ``{{function_node ...}}``, ``[[{{node ...}}]]`` and ``[Op:...]`` tags.

    Example:
        A truncated JPEG reaching ``DecodeJpeg`` in a ``tf.data`` map gives
        ``"jpeg::Uncompress failed. Invalid JPEG data or crop window."``.
    """
    text = getattr(err, "message", None) or str(err)
    for line in text.splitlines():
        if not line.strip() or line[:1].isspace() or any(s in line for s in _TF_SKIP):
            continue
        line = _TF_PREFIX.sub("", " ".join(_TF_TAGS.sub(" ", line).split())).strip()
        if line:
            return line
    return type(err).__name__
