"""The BERT encoder as Keras layers, in the Hugging Face weight layout.

Written here rather than taken from KerasHub for three measured reasons:
KerasHub's ``BertBackbone`` hard-codes the tanh approximation of GELU where
BERT checkpoints use the exact one (2.8e-4 drift from the published
sentence-transformers similarities, and a swapped activation is lost on a
``.keras`` reload); its tokenizer needs tensorflow-text ops that a stock TF
Serving cannot load; and it would pull tensorflow-text into every install.
The encoder is small: embeddings, ``num_layers`` post-LayerNorm transformer
layers, a tanh pooler. Every projection is a ``keras.layers.Dense``, so
``Dense.enable_lora`` gives LoRA, and ``freeze``/``unfreeze`` see one layer per
group (``embeddings``, ``layer_0`` ..., ``pooler``).
"""

from __future__ import annotations

import dataclasses
import math

import keras
from keras import ops

from kerastl.errors import UserInputError
from kerastl.text.presets import (
    TextBackboneSpec,
    _groups,
    checkpoint_dir,
    is_text_backbone,
    read_config,
    text_backbone_spec,
    verify_checkpoint,
)

_SERIALIZE = keras.saving.register_keras_serializable(package="kerastl")

#: How a text backbone turns token vectors into one feature vector.
POOLING_MODES = ("mean", "cls")


@_SERIALIZE
class BertEmbeddings(keras.layers.Layer):
    """Word + position + segment embeddings, LayerNorm, dropout."""

    def __init__(self, vocab_size: int, hidden_size: int, max_positions: int = 512,
                 type_vocab_size: int = 2, dropout: float = 0.1,
                 layer_norm_epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.hidden_size = int(vocab_size), int(hidden_size)
        self.max_positions, self.type_vocab_size = int(max_positions), int(type_vocab_size)
        self.dropout, self.layer_norm_epsilon = float(dropout), float(layer_norm_epsilon)
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(self.vocab_size, self.hidden_size), initializer=init)
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_positions, self.hidden_size),
            initializer=init)
        self.token_type_embeddings = self.add_weight(
            name="token_type_embeddings", shape=(self.type_vocab_size, self.hidden_size),
            initializer=init)
        self.norm.build((*input_shape, self.hidden_size))
        self.built = True

    def call(self, token_ids, training=None):
        length = ops.shape(token_ids)[1]
        x = ops.take(self.word_embeddings, token_ids, axis=0)
        x = x + ops.expand_dims(self.position_embeddings[:length], 0)
        x = x + self.token_type_embeddings[0]   # single-segment inputs
        return self.drop(self.norm(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.hidden_size)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size, "max_positions": self.max_positions,
                "type_vocab_size": self.type_vocab_size, "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon}


@_SERIALIZE
class BertLayer(keras.layers.Layer):
    """One post-LayerNorm transformer layer: self-attention, then a GELU feed-forward.

    ``call(x, padding_mask)``: padded positions are never attended to.
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.1, attention_dropout: float = 0.1,
                 layer_norm_epsilon: float = 1e-12, approximate_gelu: bool = False, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise UserInputError(
                f"hidden_size must be a multiple of num_heads. Received: "
                f"hidden_size={hidden_size}, num_heads={num_heads}")
        self.hidden_size, self.num_heads = int(hidden_size), int(num_heads)
        self.intermediate_size = int(intermediate_size)
        self.dropout, self.attention_dropout = float(dropout), float(attention_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.approximate_gelu = bool(approximate_gelu)
        init = keras.initializers.TruncatedNormal(stddev=0.02)

        def dense(units, name, activation=None):
            return keras.layers.Dense(units, activation=activation, kernel_initializer=init,
                                      name=name)

        self.query = dense(hidden_size, "query")
        self.key = dense(hidden_size, "key")
        self.value = dense(hidden_size, "value")
        self.attention_output = dense(hidden_size, "attention_output")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon,
                                                              name="attention_norm")
        self.intermediate = dense(intermediate_size, "intermediate")
        self.output_dense = dense(hidden_size, "output")
        self.output_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon,
                                                           name="output_norm")
        self.attention_drop = keras.layers.Dropout(attention_dropout)
        self.drop = keras.layers.Dropout(dropout)

    def build(self, x_shape, padding_mask_shape=None):
        input_shape = x_shape
        for layer in (self.query, self.key, self.value, self.attention_output):
            layer.build(input_shape)
        self.attention_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build((*input_shape[:-1], self.intermediate_size))
        self.output_norm.build(input_shape)
        self.built = True

    def _heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        head_dim = self.hidden_size // self.num_heads
        x = ops.reshape(x, (batch, length, self.num_heads, head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, x, padding_mask, training=None):
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        scores = scores / math.sqrt(self.hidden_size // self.num_heads)
        keep = ops.cast(padding_mask, scores.dtype)[:, None, None, :]
        scores = scores + (1.0 - keep) * ops.cast(-1e9, scores.dtype)
        weights = self.attention_drop(ops.softmax(scores, axis=-1), training=training)
        context = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        context = ops.reshape(context, (batch, length, self.hidden_size))
        attended = self.drop(self.attention_output(context), training=training)
        x = self.attention_norm(x + attended)
        hidden = keras.activations.gelu(self.intermediate(x), approximate=self.approximate_gelu)
        out = self.drop(self.output_dense(hidden), training=training)
        return self.output_norm(x + out)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return x_shape

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "dropout": self.dropout, "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "approximate_gelu": self.approximate_gelu}


@_SERIALIZE
class BertPooler(keras.layers.Layer):
    """BERT's pooler: tanh(Dense(first token))."""

    def __init__(self, hidden_size: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.dense = keras.layers.Dense(hidden_size, activation="tanh", name="dense")

    def build(self, input_shape):
        self.dense.build((input_shape[0], input_shape[-1]))
        self.built = True

    def call(self, x):
        return self.dense(x[:, 0, :])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size}


@_SERIALIZE
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of the token vectors where ``padding_mask`` is true (sentence-transformers'
    mean pooling); an all-padding row gives zeros."""

    def call(self, sequence, padding_mask):
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), -1)
        total = ops.sum(sequence * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), 1e-9)
        return total / count

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])


@_SERIALIZE
class TextBackbone(keras.Model):
    """A BERT encoder from raw strings to one feature vector per text.

    ``tf.string [batch]`` -> tokenizer (inside the model) -> embeddings ->
    ``num_layers`` transformer layers -> pooling -> ``float32 [batch, hidden]``.
    ``pooling="mean"`` is the masked mean of the token vectors (how
    sentence-transformers checkpoints such as MiniLM were trained);
    ``pooling="cls"`` is BERT's tanh pooler over the first token.

    Build it with :func:`build_text_backbone`. Its weighted layers are
    ``embeddings``, ``layer_0`` ... ``layer_{n-1}`` (and ``pooler`` with
    ``pooling="cls"``), one freezing group each, input side first.
    """

    def __init__(self, *, tokenizer, vocab_size: int, num_layers: int, hidden_size: int,
                 num_heads: int, intermediate_size: int, max_positions: int = 512,
                 type_vocab_size: int = 2, dropout: float = 0.1, attention_dropout: float = 0.1,
                 layer_norm_epsilon: float = 1e-12, approximate_gelu: bool = False,
                 pooling: str = "mean", backbone_name: str = "", **kwargs):
        if pooling not in POOLING_MODES:
            raise UserInputError(
                f"pooling must be one of {', '.join(POOLING_MODES)}. Received: pooling={pooling!r}")
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        text = keras.Input(shape=(), dtype="string", name="text")
        tokens = tokenizer(text)
        mask = tokens["padding_mask"]
        x = BertEmbeddings(vocab_size, hidden_size, max_positions, type_vocab_size, dropout,
                           layer_norm_epsilon, name="embeddings")(tokens["token_ids"])
        for i in range(num_layers):
            x = BertLayer(hidden_size, num_heads, intermediate_size, dropout, attention_dropout,
                          layer_norm_epsilon, approximate_gelu, name=f"layer_{i}")(x, mask)
        if pooling == "mean":
            features = MaskedMeanPooling(name="pooling")(x, mask)
        else:
            features = BertPooler(hidden_size, name="pooler")(x)
        kwargs.setdefault("name", "text_backbone")
        super().__init__(inputs=text, outputs=features, **kwargs)
        self.tokenizer = tokenizer
        self._arch = {"vocab_size": int(vocab_size), "num_layers": int(num_layers),
                      "hidden_size": int(hidden_size), "num_heads": int(num_heads),
                      "intermediate_size": int(intermediate_size),
                      "max_positions": int(max_positions), "type_vocab_size": int(type_vocab_size),
                      "dropout": float(dropout), "attention_dropout": float(attention_dropout),
                      "layer_norm_epsilon": float(layer_norm_epsilon),
                      "approximate_gelu": bool(approximate_gelu), "pooling": pooling}
        self.backbone_name = backbone_name

    @property
    def hidden_size(self) -> int:
        return self._arch["hidden_size"]

    @property
    def pooling(self) -> str:
        return self._arch["pooling"]

    @property
    def sequence_length(self) -> int:
        return int(self.tokenizer.sequence_length)

    @property
    def kerastl_spec(self) -> TextBackboneSpec:
        """The spec freezing uses: the registry's (or a local folder's) groups, without
        ``pooler`` when pooling is the (weightless) mean."""
        if self.backbone_name and is_text_backbone(self.backbone_name):
            spec = text_backbone_spec(self.backbone_name)
        else:
            groups, cuts = _groups(self._arch["num_layers"])
            spec = TextBackboneSpec(
                name=self.backbone_name or self.name, family="bert",
                num_layers=self._arch["num_layers"], hidden_size=self.hidden_size,
                groups=groups, group_cuts=cuts)
        if self.pooling == "mean" and spec.groups[-1] == "pooler":
            spec = dataclasses.replace(spec, groups=spec.groups[:-1],
                                       group_cuts=spec.group_cuts[:-1])
        return spec

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "backbone_name": self.backbone_name,
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer), **self._arch,
                # which layers unfreeze() left trainable, so a reloaded model (and its
                # saved optimizer state) sees the same trainable weights
                "frozen_layers": [layer.name for layer in self.layers
                                  if layer.weights and not layer.trainable]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        frozen = config.pop("frozen_layers", [])
        model = cls(**config)
        for name in frozen:
            model.get_layer(name).trainable = False
        return model


def build_text_backbone(name: str = "minilm_l6", *, weights: str | None = "pretrained",
                        sequence_length: int | None = None, pooling: str = "mean",
                        dropout: float | None = None) -> TextBackbone:
    """Build a BERT-class backbone from raw strings to features, pretrained by default.

    Args:
        name: a registered text backbone (``"minilm_l6"``) or a local folder in
            the Hugging Face layout (``config.json``, ``model.safetensors``,
            ``vocab.txt``).
        weights: ``"pretrained"`` (the packaged checkpoint, sha256-checked) or
            ``None`` (random initialisation, same architecture and vocabulary).
        sequence_length: tokens per text, ``[CLS]`` and ``[SEP]`` included
            (longer texts are truncated); default the spec's (128 for MiniLM).
        pooling: ``"mean"`` (masked mean of token vectors) or ``"cls"`` (BERT's pooler).
        dropout: override the checkpoint's hidden/attention dropout.

    Raises:
        UserInputError: unknown backbone or bad argument.
        WeightsUnavailableError: the weights package is missing or altered.

    Example:
        >>> backbone = build_text_backbone("minilm_l6", sequence_length=64)
        >>> backbone(tf.constant(["a short text"])).shape
        TensorShape([1, 384])
    """
    from kerastl.text.checkpoint import arch_from_hf, load_hf_weights, read_safetensors
    from kerastl.text.tokenizer import WordPieceTokenizer

    if weights not in ("pretrained", None):
        raise UserInputError(
            f"weights must be 'pretrained' or None for a text backbone. Received: "
            f"weights={weights!r}")
    spec = text_backbone_spec(name)
    length = spec.default_sequence_length if sequence_length is None else sequence_length
    if isinstance(length, bool) or not isinstance(length, int) or not \
            3 <= length <= spec.max_sequence_length:
        raise UserInputError(
            f"sequence_length must be an int from 3 to {spec.max_sequence_length} (the "
            f"position embeddings of '{spec.name}'). Received: sequence_length={length!r}")
    if dropout is not None and not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise UserInputError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    folder = checkpoint_dir(spec)
    arch = arch_from_hf(read_config(folder))
    if dropout is not None:
        arch["dropout"] = arch["attention_dropout"] = float(dropout)
    tokenizer = WordPieceTokenizer(str(folder / "vocab.txt"), sequence_length=length,
                                   lowercase=spec.lowercase, strip_accents=spec.lowercase,
                                   name="tokenizer")
    backbone = TextBackbone(tokenizer=tokenizer, **arch, pooling=pooling,
                            backbone_name=spec.name)
    if weights == "pretrained":
        verify_checkpoint(spec, folder)
        load_hf_weights(backbone, read_safetensors(folder / "model.safetensors"))
    return backbone
