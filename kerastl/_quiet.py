"""Import TensorFlow without its C++ start-up chatter on stderr.

TensorFlow prints INFO lines (oneDNN, CUDA stubs, CPU instructions) from C++
when it loads. kerastl captures file descriptor 2 while TensorFlow loads, then
restores it and writes back every captured line that is not known start-up
noise, so real warnings and errors still reach the user.

These lines are printed by absl before TensorFlow reads
``TF_CPP_MIN_LOG_LEVEL``, so that variable does not silence them. Set
``KERASTL_SHOW_TF_LOG=1`` to see everything.

The ``kerastl`` command goes further: it sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless
set already, or ``--verbose``/``--debug`` is given) before TensorFlow loads,
because TensorFlow reads it once, at import. Its run-time log lines (an op
that failed on a corrupt image, "Local rendezvous is aborting ...") then stay
silent, and the CLI reports the error itself in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

_NOISE_PREFIXES = (
    "WARNING: All log messages before absl::InitializeLog()",
    "To enable the following instructions",
)
_NOISE_MARKERS = ("port.cc:", "cudart_stub.cc:", "cpu_feature_guard.cc:", "cuda_dnn.cc:",
                  "cuda_fft.cc:", "cuda_blas.cc:", "computation_placer.cc:",
                  "failed call to cuInit")


def _is_noise(line: str) -> bool:
    return line.startswith(_NOISE_PREFIXES) or (
        line[:1] in "IWE" and any(marker in line for marker in _NOISE_MARKERS))


def _argv() -> list[str]:
    return list(getattr(sys, "orig_argv", None) or sys.argv)


def is_kerastl_command() -> bool:
    """Whether this process is the ``kerastl`` command (the console script or
    ``python -m kerastl``), not a program that imports kerastl."""
    argv = _argv()
    return os.path.basename(sys.argv[0]) == "kerastl" or any(
        a == "-m" and b == "kerastl" for a, b in zip(argv, argv[1:]))


def _is_quiet_cli() -> bool:
    """Whether this process is the ``kerastl`` command, run without --verbose/--debug."""
    return is_kerastl_command() and not {"--verbose", "-v", "--debug"} & set(_argv())


def import_tensorflow_quietly() -> None:
    """Import ``tensorflow`` and ``keras``, filtering TF's C++ start-up log lines."""
    if _is_quiet_cli() and not os.environ.get("KERASTL_SHOW_TF_LOG"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("KERASTL_SHOW_TF_LOG"):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (some embedded interpreters)
        import keras  # noqa: F401

        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow

            # Probing devices here moves CUDA's "failed call to cuInit" on
            # GPU-less machines into the filtered window.
            tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line and not _is_noise(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


@contextlib.contextmanager
def quiet_loggers(*names: str):
    """Raise the named Python loggers to WARNING for a block (TF's saver and converter
    chatter: renamed inputs, "Assets written to"), then restore their levels."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
