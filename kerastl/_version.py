"""kerastl's version: the installed distribution's, else setup.cfg's (a source checkout)."""

from __future__ import annotations

import configparser
import importlib.metadata
from pathlib import Path


def version() -> str:
    """The version of the installed ``kerastl`` distribution.

    Falls back to ``[metadata] version`` of the ``setup.cfg`` next to the package
    when kerastl runs from a source tree that is not installed.
    """
    try:
        return importlib.metadata.version("kerastl")
    except importlib.metadata.PackageNotFoundError:
        setup_cfg = configparser.ConfigParser()
        setup_cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
        return setup_cfg.get("metadata", "version", fallback="0+unknown")


__version__ = version()
