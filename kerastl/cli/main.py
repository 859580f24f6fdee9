"""``kerastl`` entry point: dispatches to one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (registers its
flags, sets ``func=run``) and ``run(args) -> int``. Exit status: 0 success,
2 usage or input error (one line on stderr, no traceback: kerastl's own errors,
missing or unusable paths, and TensorFlow errors that bad data causes, reduced
to their cause), 1 a bug in kerastl (one line; ``--debug`` shows the traceback
of any error). TensorFlow's own log lines are silenced unless ``--verbose``
(see :mod:`kerastl._quiet`).

Building the parser imports no TensorFlow: subcommand modules import the
library inside ``run()``, and their flags take defaults from
:mod:`kerastl.defaults`. TensorFlow and the library load once the arguments
parse, before the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import sys
import traceback

SUBCOMMANDS = ("backbones", "train", "evaluate", "predict", "export", "tune", "demo",
               "inspect", "explain")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"kerastl: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from kerastl._version import __version__

    parser = _Parser(prog="kerastl", description="Transfer learning for Keras 3 / TensorFlow.")
    parser.add_argument("--version", action="version", version=f"kerastl {__version__}",
                        help="print kerastl's version and exit")
    parser.add_argument("--verbose", "-v", action="store_true", help="log more details")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"kerastl.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"kerastl.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


#: OS errors about a path the user gave: input errors, not bugs.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
                PermissionError)
#: Other OS errors the environment causes where the user pointed kerastl (a
#: read-only or full file system, a quota, a name too long, a link loop).
_ENVIRONMENT_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
                                 errno.ELOOP, errno.EACCES, errno.EPERM})


def _is_input_error(err: BaseException) -> bool:
    from kerastl.errors import KerastlError

    if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
        return True
    return isinstance(err, (KerastlError, ValueError, *_PATH_ERRORS, *_input_tf_errors()))


def _input_tf_errors() -> tuple[type, ...]:
    """TensorFlow's errors that bad input data causes (a corrupt image reaching a
    decode op, a file TensorFlow cannot find, memory an input asks for)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return ()
    return (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError,
            tf.errors.ResourceExhaustedError, tf.errors.OutOfRangeError)


def _one_line(err: BaseException) -> str:
    from kerastl.errors import tf_error_cause

    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(err, tf.errors.OpError):
        return tf_error_cause(err)
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.strerror}: {err.filename}"
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def _quiet_python_logs(verbose: bool):
    """Silence TensorFlow's and absl's Python loggers below ERROR for one command."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [logger.level for logger in loggers]
    if not verbose:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None):
        # Only now: --help, --version and usage errors answer without TensorFlow.
        import kerastl

        kerastl._import_all()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with _quiet_python_logs(args.verbose or args.debug):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` & co: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("kerastl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        if _is_input_error(err):
            print(f"kerastl: error: {_one_line(err)}", file=sys.stderr)
            return 2
        print(f"kerastl: unexpected failure (a bug in kerastl): {type(err).__name__}: "
              f"{_one_line(err)}" + ("" if args.debug else
                                     "; rerun with --debug for the traceback"),
              file=sys.stderr)
        return 1


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
