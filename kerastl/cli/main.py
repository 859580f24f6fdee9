"""``kerastl`` entry point: dispatches to one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (registers its
flags, sets ``func=run``) and ``run(args) -> int``. Exit status: 0 success,
2 usage or input error (one line on stderr, no traceback), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMANDS = ("backbones", "train", "evaluate", "predict", "export", "tune", "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"kerastl: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kerastl", description="Transfer learning for Keras 3 / TensorFlow.")
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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from kerastl.errors import KerastlError

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` & co: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("kerastl: interrupted", file=sys.stderr)
        return 130
    except (KerastlError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())
        print(f"kerastl: error: {message}", file=sys.stderr)
        return 2
    except Exception as err:  # unexpected: say so, keep it short unless --debug
        if args.debug:
            raise
        import traceback

        traceback.print_exc()
        print(f"kerastl: unexpected failure: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
