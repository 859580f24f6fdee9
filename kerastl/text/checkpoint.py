"""Reading Hugging Face BERT checkpoints: ``config.json`` to an architecture, and
``model.safetensors`` (``encoder.layer.N...`` names) into a :class:`TextBackbone`."""

from __future__ import annotations

import pathlib

from kerastl.errors import MissingExtraError, UserInputError


def arch_from_hf(config: dict) -> dict:
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise UserInputError(f"Unsupported hidden_act {act!r} (BERT uses 'gelu').")
    return {
        "vocab_size": int(config["vocab_size"]),
        "num_layers": int(config["num_hidden_layers"]),
        "hidden_size": int(config["hidden_size"]),
        "num_heads": int(config["num_attention_heads"]),
        "intermediate_size": int(config["intermediate_size"]),
        "max_positions": int(config.get("max_position_embeddings", 512)),
        "type_vocab_size": int(config.get("type_vocab_size", 2)),
        "dropout": float(config.get("hidden_dropout_prob", 0.1)),
        "attention_dropout": float(config.get("attention_probs_dropout_prob", 0.1)),
        "layer_norm_epsilon": float(config.get("layer_norm_eps", 1e-12)),
        "approximate_gelu": act != "gelu",
    }


def read_safetensors(path: pathlib.Path) -> dict:
    """All tensors of a ``.safetensors`` file as numpy arrays (the ``kerastl[text]`` extra)."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise MissingExtraError(
            "Reading BERT checkpoints needs the safetensors package: pip install 'kerastl[text]'"
        ) from None
    tensors = load_file(str(path))
    # Some exports prefix every name with the architecture ("bert.").
    if tensors and all(k.startswith("bert.") for k in tensors if not k.startswith("cls.")):
        tensors = {k[len("bert."):]: v for k, v in tensors.items() if k.startswith("bert.")}
    return tensors


def load_hf_weights(backbone, tensors: dict) -> None:
    """Copy Hugging Face BERT weights (``encoder.layer.N...`` names) into ``backbone``.

    Raises:
        UserInputError: a tensor is missing or has the wrong shape.
    """
    def take(name, transpose=False):
        if name not in tensors:
            raise UserInputError(f"The checkpoint lacks tensor '{name}'.")
        value = tensors[name]
        return value.T if transpose else value

    def assign(variable, value, name):
        if tuple(variable.shape) != tuple(value.shape):
            raise UserInputError(f"Tensor '{name}' has shape {tuple(value.shape)}; the model "
                                 f"expects {tuple(variable.shape)}.")
        variable.assign(value)

    def dense(layer, prefix):
        assign(layer.kernel, take(f"{prefix}.weight", True), f"{prefix}.weight")
        assign(layer.bias, take(f"{prefix}.bias"), f"{prefix}.bias")

    def norm(layer, prefix):
        assign(layer.gamma, take(f"{prefix}.weight"), f"{prefix}.weight")
        assign(layer.beta, take(f"{prefix}.bias"), f"{prefix}.bias")

    emb = backbone.get_layer("embeddings")
    for attr in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        assign(getattr(emb, attr), take(f"embeddings.{attr}.weight"), attr)
    norm(emb.norm, "embeddings.LayerNorm")
    for i in range(backbone._arch["num_layers"]):
        layer, p = backbone.get_layer(f"layer_{i}"), f"encoder.layer.{i}"
        dense(layer.query, f"{p}.attention.self.query")
        dense(layer.key, f"{p}.attention.self.key")
        dense(layer.value, f"{p}.attention.self.value")
        dense(layer.attention_output, f"{p}.attention.output.dense")
        norm(layer.attention_norm, f"{p}.attention.output.LayerNorm")
        dense(layer.intermediate, f"{p}.intermediate.dense")
        dense(layer.output_dense, f"{p}.output.dense")
        norm(layer.output_norm, f"{p}.output.LayerNorm")
    if backbone.pooling == "cls":
        dense(backbone.get_layer("pooler").dense, "pooler.dense")
