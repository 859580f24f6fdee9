"""Flags several subcommands share, defined once."""

from __future__ import annotations

from kerastl.defaults import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV


def add_max_pixels(parser) -> None:
    """``--max-pixels N``: the pixel budget of every image read (decompression bombs)."""
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse images whose header declares more than N pixels "
                             f"(default: ${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS}, Pillow's "
                             "limit)")
