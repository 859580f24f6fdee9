"""``--json``: a command's summary as one JSON object on stdout, for scripts.

With ``--json``, everything the command writes while it runs (its own lines,
Keras progress bars, child processes) goes to stderr, and stdout carries
exactly one JSON object, printed when the command ends. A command that fails
prints no JSON; its exit status and stderr line say why.

Example::

    run=$(kerastl train photos/ --json | jq -r .run_dir)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator


def add_json_flag(parser, what: str) -> None:
    """``--json``: print the summary (``what`` it holds) as one JSON object on stdout."""
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON object on stdout when done ({what}); "
                             "everything else goes to stderr")


def scalar_metrics(metrics: dict) -> dict:
    """The single-number metrics of a report (accuracy, macro F1, examples...), without
    the per-class table and the confusion matrix, which stay in report.json."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send stdout to stderr: Python's ``sys.stdout`` and file descriptor 1, so
    output written below Python or by child processes moves too."""
    stdout = sys.stdout
    stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1: Python's stream alone
        saved = None
    else:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        stdout.flush()
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _jsonable(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


@contextlib.contextmanager
def json_summary(enabled: bool) -> Iterator[dict]:
    """Yield a dict for the command's summary; with ``enabled``, stdout goes to
    stderr meanwhile and the dict is printed as one JSON object at the end."""
    summary: dict = {}
    if not enabled:
        yield summary
        return
    with _stdout_to_stderr():
        yield summary
    from kerastl import __version__

    print(json.dumps({**summary, "kerastl_version": __version__}, default=_jsonable))
    sys.stdout.flush()
