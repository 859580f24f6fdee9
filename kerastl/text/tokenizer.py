"""BERT WordPiece tokenization in core TensorFlow ops, as a Keras layer.

:class:`WordPieceTokenizer` turns raw strings into BERT inputs inside the graph,
with ``tf.strings``, ``tf.ragged``, ``tf.lookup`` and ``tf.while_loop`` only: no
tensorflow-text, no ``py_function``. A SavedModel that contains it serves raw
strings on a stock TensorFlow (TF Serving's own TF Text is not needed).

It reproduces Hugging Face ``tokenizers`` (``BertNormalizer``,
``BertPreTokenizer``, ``WordPiece``, and the special tokens ``[CLS]`` ... found
in raw text, as ``Tokenizer.encode`` does) token for token:

1. Special tokens written in the text (``"[SEP]"``, ``"[MASK]"`` ...) are
   recognised before normalization (``split_special_tokens=False``, as in
   ``tokenizers``).
2. Clean text: NUL, U+FFFD, control and format characters removed, whitespace
   to spaces. CJK ideographs become words of their own.
3. Strip accents (NFD, nonspacing marks dropped) and lowercase, per code point
   through tables generated from ``tokenizers`` itself
   (:mod:`kerastl.text._bert_unicode`, so the result does not depend on the
   Python version's ``unicodedata``).
4. Split on whitespace; every punctuation character is a word of its own.
5. Greedy longest-match-first WordPiece with ``##`` continuations; a word
   longer than 100 characters, or one that cannot be matched, is one ``[UNK]``.

How the graph computes it: the text is decoded to code points; one table
gather (a dense table for the BMP, ranges above it) gives each code point its
output code points and its class (regular, separator, punctuation/CJK,
special), and ``tf.repeat`` expands them. Words are runs of regular characters.
Only the first ``sequence_length - 2`` words of a text can contribute to the
truncated output, so ``call`` first reads a prefix of each text (8 bytes per
word, plus a margin), re-reads in full only a text whose prefix does not show
that many complete words 16 bytes before the cut, and WordPiece-tokenizes only
those words. A whole word found in
the vocabulary is one lookup; the other words (a few percent) get every
candidate piece looked up at once (two hash tables: word starts, and ``##``
continuations with the prefix removed), then a ``tf.while_loop`` walks the
longest matches.

Known difference from ``tokenizers``: NFD's canonical reordering of combining
marks is not applied (only marks of a nonzero combining class that are not
nonspacing, in sequences of two or more, could differ).
"""

from __future__ import annotations

import os
import pathlib

import keras
import tensorflow as tf

from kerastl.errors import UserInputError
from kerastl.text.normalization import (
    _BMP,
    _MARKER,
    _MARKER_BLOCKER,
    _REGULAR,
    _SEPARATOR,
    _SPECIAL,
    _char_tables,
)

#: A word longer than this (in characters) becomes one ``[UNK]`` (as in BERT).
MAX_INPUT_CHARS_PER_WORD = 100
#: The special tokens that ``tokenizers`` recognises in raw text (those in the vocabulary).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PREFIX = "##"

# call() first reads this many bytes per word of each text (then the rest if needed);
# a word this close to the cut may be cut, so it does not count.
_PREFIX_BYTES_PER_WORD = 8
_PREFIX_GUARD = 16


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """The tokens of a ``vocab.txt``, one a line, line ``i`` is id ``i`` (as
    ``tokenizers`` reads it: trailing whitespace removed)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip() for line in lines]


@keras.saving.register_keras_serializable(package="kerastl")
class WordPieceTokenizer(keras.layers.Layer):
    """BERT WordPiece tokenizer in core TensorFlow ops: ``tf.string [batch]`` in,
    ``{"token_ids": int32 [batch, sequence_length], "padding_mask": bool [batch,
    sequence_length]}`` out (``[CLS] pieces [SEP] [PAD]...``).

    Matches Hugging Face ``tokenizers``' ``BertTokenizer`` (normalizer,
    pre-tokenizer, WordPiece, special tokens in the text) id for id; see the
    module docstring. Not trainable, no weights: the vocabulary is part of the
    config, so a ``.keras`` file needs no ``vocab.txt``. Works eagerly, in
    ``tf.function``, in ``tf.data`` maps, in a functional model and in a
    SavedModel loaded without kerastl or tensorflow-text.

    Args:
        vocabulary: the tokens (id = position) or the path of a ``vocab.txt``.
            Must hold ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[PAD]``.
        sequence_length: tokens per text, ``[CLS]`` and ``[SEP]`` included;
            longer texts keep their first ``sequence_length - 2`` pieces.
        lowercase: lowercase the text (uncased vocabularies).
        strip_accents: decompose and drop nonspacing marks (BERT uncased does).
        split_special_tokens: ``False`` (as ``tokenizers``): ``"[SEP]"`` ... in the
            text is that special token; ``True``: it is ordinary text.

    Example:
        >>> tokenizer = WordPieceTokenizer("vocab.txt", sequence_length=8)
        >>> tokenizer(tf.constant(["Hello, world!"]))["token_ids"]
        <tf.Tensor: shape=(1, 8), dtype=int32, numpy=array([[ 101, 7592, 1010, 2088,
        999,  102,    0,    0]], dtype=int32)>
    """

    def __init__(self, vocabulary, sequence_length: int = 128, lowercase: bool = True,
                 strip_accents: bool = True, split_special_tokens: bool = False, **kwargs):
        kwargs["trainable"] = False
        kwargs.pop("dtype", None)
        super().__init__(**kwargs)
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = read_vocabulary(vocabulary)
        vocabulary = [str(token) for token in vocabulary]
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) \
                or sequence_length < 2:
            raise UserInputError("sequence_length must be an int >= 2 ([CLS] and [SEP]). "
                                 f"Received: sequence_length={sequence_length!r}")
        token_ids = {token: i for i, token in enumerate(vocabulary)}  # the last one wins
        missing = [t for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]") if t not in token_ids]
        if missing:
            raise UserInputError(f"The vocabulary ({len(vocabulary)} tokens) lacks "
                                 f"{', '.join(missing)}; a BERT vocab.txt has them.")
        self.sequence_length = sequence_length
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self.split_special_tokens = bool(split_special_tokens)
        self.supports_jit = False  # string ops
        self._vocabulary = tuple(vocabulary)
        self._unk_id = token_ids["[UNK]"]
        self._cls_id = token_ids["[CLS]"]
        self._sep_id = token_ids["[SEP]"]
        self._pad_id = token_ids["[PAD]"]
        specials = [] if split_special_tokens else \
            [t for t in SPECIAL_TOKENS if t in token_ids]
        self._specials = tuple(specials)

        starts = [(t, i) for t, i in token_ids.items() if not t.startswith(_PREFIX)]
        conts = [(t[len(_PREFIX):], i) for t, i in token_ids.items()
                 if t.startswith(_PREFIX) and len(t) > len(_PREFIX)]
        self._max_start_chars = max([len(t) for t, _ in starts] or [1])
        self._max_cont_chars = max([len(t) for t, _ in conts] or [1])
        self._start_table = self._table(starts)
        self._cont_table = self._table(conts)

        tables = _char_tables(self.lowercase, self.strip_accents, len(specials))
        self._chars = {name: tf.constant(value) for name, value in tables.items()}
        self._special_ids = tf.constant([token_ids[t] for t in specials] or [0], tf.int32)
        self.built = True

    @staticmethod
    def _table(pairs):
        keys = tf.constant([t for t, _ in pairs] or ["\x00"], tf.string)
        values = tf.constant([i for _, i in pairs] or [-1], tf.int64)
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

    # -- public API ---------------------------------------------------------------

    def vocabulary_size(self) -> int:
        """Number of tokens (ids are ``0 .. vocabulary_size() - 1``)."""
        return len(self._vocabulary)

    def get_vocabulary(self) -> list[str]:
        """The tokens, id order."""
        return list(self._vocabulary)

    def tokenize(self, texts) -> tf.RaggedTensor:
        """Word-piece ids of every text, without ``[CLS]``/``[SEP]`` and not truncated:
        ``int32 [batch, (pieces)]`` (a scalar string gives a batch of one)."""
        return self._pieces(self._as_batch(texts), max_words=None)

    def call(self, texts):
        texts = self._as_batch(texts)
        length = self.sequence_length
        pieces = self._pieces(texts, max_words=length - 2)
        batch = tf.shape(texts)[0]
        rows = tf.concat([tf.fill([batch, 1], self._cls_id), pieces[:, :length - 2],
                          tf.fill([batch, 1], self._sep_id)], axis=1)
        token_ids = rows.to_tensor(default_value=self._pad_id, shape=[None, length])
        mask = tf.sequence_mask(rows.row_lengths(), length)
        return {"token_ids": token_ids, "padding_mask": mask}

    def compute_output_spec(self, texts):
        shape = (None if len(texts.shape) == 0 else texts.shape[0], self.sequence_length)
        return {"token_ids": keras.KerasTensor(shape, dtype="int32"),
                "padding_mask": keras.KerasTensor(shape, dtype="bool")}

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update({"vocabulary": list(self._vocabulary),
                       "sequence_length": self.sequence_length,
                       "lowercase": self.lowercase, "strip_accents": self.strip_accents,
                       "split_special_tokens": self.split_special_tokens})
        return config

    # -- the graph ----------------------------------------------------------------

    @staticmethod
    def _as_batch(texts):
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise UserInputError(f"WordPieceTokenizer takes strings. Received dtype "
                                 f"{texts.dtype.name}")
        if texts.shape.rank == 0:
            return tf.reshape(texts, [1])
        if texts.shape.rank == 2 and texts.shape[1] == 1:
            return tf.reshape(texts, [-1])
        if texts.shape.rank != 1:
            raise UserInputError(f"WordPieceTokenizer takes a [batch] string tensor. "
                                 f"Received shape {texts.shape}")
        return texts

    def _mark_specials(self, texts):
        if not self._specials:
            return texts
        texts = tf.strings.regex_replace(
            texts, f"[\\x{{{_MARKER:X}}}-\\x{{{_MARKER_BLOCKER - 1:X}}}]",
            chr(_MARKER_BLOCKER))
        for i, token in enumerate(self._specials):
            texts = tf.strings.regex_replace(
                texts, "".join("\\" + c if not c.isalnum() else c for c in token),
                chr(_MARKER + i))
        return texts

    def _normalize(self, texts, with_offsets=False):
        """Code points after normalization, their classes, text (row) index and (with
        ``with_offsets``) the byte offset of the character each comes from. ``texts``
        have their special tokens marked."""
        chars = self._chars
        if with_offsets:
            decoded, byte_offsets = tf.strings.unicode_decode_with_offsets(
                texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
        else:
            decoded = tf.strings.unicode_decode(texts, "UTF-8", errors="replace",
                                                replacement_char=0xFFFD)
        cps = decoded.flat_values
        rows = decoded.value_rowids()
        packed = tf.gather(chars["dense"], tf.minimum(cps, _BMP - 1))
        high = tf.where(cps >= _BMP)
        high_cps = tf.gather_nd(cps, high)
        range_index = tf.searchsorted(chars["high_starts"], high_cps, side="right") - 1
        packed = tf.tensor_scatter_nd_update(
            packed, high, tf.gather(chars["high_values"], range_index))
        expansion = packed // 8
        counts = tf.where(expansion > 0, tf.gather(chars["exp_lengths"], expansion), 1)
        src = tf.repeat(tf.range(tf.size(cps)), counts)
        offsets = tf.range(tf.size(src)) - tf.gather(tf.cumsum(counts, exclusive=True), src)
        src_exp = tf.gather(expansion, src)
        exp_index = tf.gather(chars["exp_splits"], src_exp) + offsets
        mapped = src_exp > 0
        out_cps = tf.where(mapped, tf.gather(chars["exp_cps"], exp_index),
                           tf.gather(cps, src))
        out_classes = tf.where(mapped, tf.gather(chars["exp_classes"], exp_index),
                               tf.gather(packed % 8, src))
        out_offsets = tf.gather(byte_offsets.flat_values, src) if with_offsets else None
        return out_cps, out_classes, tf.gather(rows, src), out_offsets

    def _words(self, texts, max_words, guard=None):
        """The words: code points ragged [words, (chars)], their text index and
        special-token index (-1 for an ordinary word), for the first ``max_words``
        words of each text; with ``guard``, also how many words of each text start
        before byte ``guard``."""
        cps, classes, rows, offsets = self._normalize(texts, with_offsets=guard is not None)
        batch = tf.shape(texts, out_type=tf.int64)[0]
        regular = classes == _REGULAR
        prev_regular = tf.concat([[False], regular[:-1]], 0)
        same_row = tf.concat([[False], rows[1:] == rows[:-1]], 0)
        in_word = classes != _SEPARATOR
        starts = tf.logical_and(in_word, tf.logical_not(
            tf.logical_and(regular, tf.logical_and(prev_regular, same_row))))
        early = None
        if guard is not None:
            early = tf.math.bincount(tf.boolean_mask(rows, tf.logical_and(starts, offsets < guard)),
                                     minlength=batch, maxlength=batch, dtype=tf.int64)
        keep = tf.where(in_word)[:, 0]
        cps, classes, rows = (tf.gather(x, keep) for x in (cps, classes, rows))
        starts = tf.gather(starts, keep)
        word_of = tf.cumsum(tf.cast(starts, tf.int64)) - 1
        start_index = tf.where(starts)[:, 0]
        word_rows = tf.gather(rows, start_index)
        if max_words is not None:
            words_per_row = tf.math.bincount(word_rows, minlength=batch, maxlength=batch,
                                             dtype=tf.int64)
            first_word = tf.cumsum(words_per_row, exclusive=True)
            rank = tf.range(tf.size(word_rows, out_type=tf.int64)) - \
                tf.gather(first_word, word_rows)
            kept_words = rank < max_words
            char_kept = tf.gather(kept_words, word_of)
            keep = tf.where(char_kept)[:, 0]
            cps, classes, word_of = (tf.gather(x, keep) for x in (cps, classes, word_of))
            word_rows = tf.boolean_mask(word_rows, kept_words)
            # renumber the kept words 0..n-1 (kept words are a prefix of each row)
            renumber = tf.cumsum(tf.cast(kept_words, tf.int64)) - 1
            word_of = tf.gather(renumber, word_of)
            start_index = tf.where(tf.gather(starts, keep))[:, 0]
        num_words = tf.size(word_rows, out_type=tf.int64)
        words = tf.RaggedTensor.from_value_rowids(cps, word_of, nrows=num_words,
                                                  validate=False)
        first_class = tf.gather(classes, start_index)
        special = tf.where(first_class == _SPECIAL, tf.gather(cps, start_index) - _MARKER, -1)
        return words, word_rows, special, batch, early

    def _pieces(self, texts, max_words):
        """Word-piece ids ragged ``[batch, (pieces)]``: all of them, or (``max_words``)
        those of the first ``max_words`` words of each text.

        With ``max_words``, a first pass reads only the first bytes of each text
        (``_PREFIX_BYTES_PER_WORD`` per word); a text whose prefix does not show
        ``max_words`` complete words well before the cut is read again in full, so
        the result is exact."""
        texts = self._mark_specials(texts)
        if max_words is None:
            return self._pieces_of(texts, None)[0]
        cut = _PREFIX_BYTES_PER_WORD * (max_words + 1) + 2 * _PREFIX_GUARD
        prefix = tf.strings.substr(texts, 0, cut, unit="BYTE")
        pieces, early = self._pieces_of(prefix, max_words, guard=cut - _PREFIX_GUARD)
        complete = tf.logical_or(tf.strings.length(texts) <= cut, early > max_words)
        redo = tf.where(tf.logical_not(complete))[:, 0]
        again, _ = self._pieces_of(tf.gather(texts, redo), max_words)
        batch = tf.size(complete, out_type=tf.int64)
        index = tf.tensor_scatter_nd_update(tf.range(batch), redo[:, None],
                                            batch + tf.range(tf.size(redo, out_type=tf.int64)))
        return tf.gather(tf.concat([pieces, again], 0), index)

    def _pieces_of(self, texts, max_words, guard=None):
        words, word_rows, special, batch, early = self._words(texts, max_words, guard)
        strings = tf.strings.unicode_encode(words, "UTF-8")
        lengths = tf.cast(words.row_lengths(), tf.int32)
        ids = tf.cast(self._start_table.lookup(strings), tf.int32)
        ids = tf.where(lengths > MAX_INPUT_CHARS_PER_WORD, self._unk_id, ids)
        ids = tf.where(special >= 0,
                       tf.gather(self._special_ids, tf.maximum(special, 0)), ids)
        pending = tf.where(ids < 0)[:, 0]
        piece_rows = self._wordpiece(tf.gather(words, pending), tf.gather(strings, pending))
        # every word's pieces, in order: one piece, or the pending word's pieces
        counts = tf.tensor_scatter_nd_update(
            tf.ones_like(ids), pending[:, None], tf.cast(piece_rows.row_lengths(), tf.int32))
        offsets = tf.cumsum(counts, exclusive=True)
        total = tf.reduce_sum(counts)
        single = tf.where(ids >= 0)[:, 0]
        piece_row = piece_rows.value_rowids()
        within = tf.range(tf.size(piece_row, out_type=tf.int64)) - \
            tf.gather(piece_rows.row_splits, piece_row)
        pending_pos = tf.gather(tf.gather(offsets, pending), piece_row) + \
            tf.cast(within, tf.int32)
        values = tf.scatter_nd(
            tf.concat([tf.gather(offsets, single), pending_pos], 0)[:, None],
            tf.concat([tf.gather(ids, single), piece_rows.flat_values], 0), [total])
        row_counts = tf.math.unsorted_segment_sum(counts, word_rows, batch)
        pieces = tf.RaggedTensor.from_row_lengths(values, tf.cast(row_counts, tf.int64),
                                                  validate=False)
        return pieces, early

    def _wordpiece(self, words, strings):
        """Greedy longest-match-first WordPiece of words not in the vocabulary as a
        whole: ragged ``[words, (pieces)]``, ``[UNK]`` for a word that cannot be matched."""
        n = tf.cast(words.row_lengths(), tf.int32)
        num = tf.size(n)
        # byte offset of each character's end, per word
        cps = words.flat_values
        nbytes = 1 + tf.cast(cps >= 0x80, tf.int32) + tf.cast(cps >= 0x800, tf.int32) + \
            tf.cast(cps >= _BMP, tf.int32)
        word_start = tf.cast(words.row_splits[:-1], tf.int32)
        ends = tf.cumsum(nbytes) - tf.gather(tf.cumsum(nbytes, exclusive=True),
                                             tf.gather(word_start, words.value_rowids()))
        # (word, position) pairs, then candidates (word, position, k chars)
        pair_word = tf.repeat(tf.range(num), n)
        pair_start = tf.cumsum(n, exclusive=True)
        pos = tf.range(tf.size(pair_word)) - tf.gather(pair_start, pair_word)
        limit = tf.where(pos == 0, self._max_start_chars, self._max_cont_chars)
        m = tf.minimum(limit, tf.gather(n, pair_word) - pos)
        cand_pair = tf.repeat(tf.range(tf.size(pair_word)), m)
        cand_first = tf.cumsum(m, exclusive=True)
        k = tf.range(tf.size(cand_pair)) + 1 - tf.gather(cand_first, cand_pair)
        cand_word = tf.gather(pair_word, cand_pair)
        cand_pos = tf.gather(pos, cand_pair)
        base = tf.gather(word_start, cand_word)
        begin = tf.where(cand_pos == 0, 0,
                         tf.gather(ends, base + tf.maximum(cand_pos - 1, 0)))
        end = tf.gather(ends, base + cand_pos + k - 1)
        pieces = tf.strings.substr(tf.gather(strings, cand_word), begin, end - begin,
                                   unit="BYTE")
        is_start = cand_pos == 0
        parts = tf.dynamic_partition(pieces, tf.cast(is_start, tf.int32), 2)
        indices = tf.dynamic_partition(tf.range(tf.size(pieces)), tf.cast(is_start, tf.int32),
                                       2)
        found = tf.dynamic_stitch(indices, [self._cont_table.lookup(parts[0]),
                                            self._start_table.lookup(parts[1])])
        found = tf.cast(found, tf.int32)
        best_k = tf.math.unsorted_segment_max(tf.where(found >= 0, k, 0), cand_pair,
                                              tf.size(pair_word))
        best_k = tf.maximum(best_k, 0)
        best_id = tf.gather(found, cand_first + tf.maximum(best_k - 1, 0))

        # walk the longest matches from position 0, one piece per iteration
        def step(at, failed, path):
            active = tf.logical_and(at < n, tf.logical_not(failed))
            pair = pair_start + tf.minimum(at, n - 1)
            jump = tf.where(active, tf.gather(best_k, tf.where(active, pair, 0)), 0)
            failed = tf.logical_or(failed, tf.logical_and(active, jump == 0))
            column = tf.where(tf.logical_and(active, jump > 0), pair, -1)
            return at + jump, failed, tf.concat([path, column[:, None]], 1)

        def more(at, failed, path):
            return tf.reduce_any(tf.logical_and(at < n, tf.logical_not(failed)))

        _, failed, path = tf.while_loop(
            more, step, (tf.zeros_like(n), tf.zeros_like(n, tf.bool), tf.fill([num, 1], -1)),
            shape_invariants=(n.shape, n.shape, tf.TensorShape([None, None])))
        path = path[:, 1:]
        unk = tf.range(tf.shape(path)[1] + 1)[None, :] == 0
        ids = tf.where(failed[:, None], self._unk_id,
                       tf.gather(best_id, tf.maximum(tf.concat(
                           [path, tf.fill([num, 1], -1)], 1), 0)))
        keep = tf.where(failed[:, None], unk, tf.concat([path, tf.fill([num, 1], -1)], 1) >= 0)
        return tf.ragged.boolean_mask(ids, keep)
