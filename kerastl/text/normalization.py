"""The per-code-point tables of :class:`~kerastl.text.tokenizer.WordPieceTokenizer`:
BERT's clean-text, accent stripping and lowercasing as one gather per code point.

Built at construction time from :mod:`kerastl.text._bert_unicode` (generated from
Hugging Face ``tokenizers`` by ``scripts/gen_bert_unicode_tables.py``), so the
result does not depend on the Python version's ``unicodedata``.
"""

from __future__ import annotations

import numpy as np

from kerastl.text import _bert_unicode as _tables

# Character classes (low 3 bits of the per-code-point table).
_REGULAR, _SEPARATOR, _ISOLATED, _SPECIAL = 0, 1, 2, 3
# Special tokens found in the text become these code points (plane-15 private use,
# which clean_text removes, so none survives from the text itself); private-use
# characters of the text in that block are first replaced by _MARKER_BLOCKER.
_MARKER = 0xF0000
_MARKER_BLOCKER = 0xF0010
_BMP = 0x10000

def _hangul(cp: int) -> tuple[int, ...] | None:
    """The canonical decomposition of a Hangul syllable (Unicode's algorithm)."""
    s = cp - 0xAC00
    if not 0 <= s < 11172:
        return None
    out = (0x1100 + s // 588, 0x1161 + (s % 588) // 28)
    return out + (0x11A7 + s % 28,) if s % 28 else out


def _parse_map(entries: str) -> dict[int, tuple[int, ...]]:
    out = {}
    for entry in entries.split():
        cp, _, rest = entry.partition(":")
        out[int(cp, 16)] = tuple(int(x, 16) for x in rest.split("."))
    return out


def _fill(array: np.ndarray, ranges, value) -> None:
    for first, last in ranges:
        array[first:last + 1] = value


def _char_tables(lowercase: bool, strip_accents: bool, num_special: int):
    """Per-code-point tables: ``packed = 8 * expansion + class`` (expansion 0: the code
    point itself), the expansions (output code points and their classes), and the
    packed values above the BMP as ranges."""
    classes = np.full(0x110000, _REGULAR, np.int32)
    _fill(classes, _tables.SPLIT_SPACE, _SEPARATOR)
    _fill(classes, _tables.PUNCTUATION, _ISOLATED)
    _fill(classes, _tables.CJK, _ISOLATED)
    cjk = np.zeros(0x110000, bool)
    _fill(cjk, _tables.CJK, True)

    strip = _parse_map(_tables.STRIP) if strip_accents else {}
    lower = _parse_map(_tables.LOWER) if lowercase else {}
    if strip_accents:
        strip.update({cp: _hangul(cp) for cp in range(0xAC00, 0xAC00 + 11172)})
        for first, last in _tables.STRIP_DROP:
            strip.update({cp: () for cp in range(first, last + 1)})

    expansions: dict[tuple, int] = {((0,), (_REGULAR,)): 0, ((), ()): 1,
                                     ((0x20,), (_SEPARATOR,)): 2}
    packed = classes.copy()
    for cp in sorted(set(strip) | set(lower)):
        out = strip.get(cp, (cp,))
        out = tuple(c for x in out for c in lower.get(x, (x,)))
        if out == (cp,):
            continue
        if cjk[cp]:  # spaced as a whole: one isolated word whatever it maps to
            out_classes = (_ISOLATED,) * len(out)
        else:
            out_classes = tuple(int(classes[c]) for c in out)
        key = (out, out_classes)
        packed[cp] = 8 * expansions.setdefault(key, len(expansions))
    # clean_text runs first
    _fill(packed, _tables.CONTROL, 8 * 1)
    _fill(packed, _tables.WHITESPACE, 8 * 2)
    packed[_MARKER:_MARKER + num_special] = _SPECIAL

    ordered = sorted(expansions.items(), key=lambda item: item[1])
    lengths = [len(out) for (out, _), _ in ordered]
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    exp_cps = np.array([c for (out, _), _ in ordered for c in out], np.int32)
    exp_classes = np.array([c for (_, cl), _ in ordered for c in cl], np.int32)

    high = packed[_BMP:]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(high)) + 1])
    return {"dense": packed[:_BMP], "high_starts": (starts + _BMP).astype(np.int32),
            "high_values": high[starts], "exp_splits": splits,
            "exp_lengths": np.asarray(lengths, np.int32), "exp_cps": exp_cps,
            "exp_classes": exp_classes}
