"""EfficientNet-Lite0..4 in Keras 3, and the port of their ImageNet weights.

EfficientNet-Lite is EfficientNet made friendly to mobile accelerators and
quantisation: no squeeze-and-excitation, ReLU6 instead of swish, and a stem
(32 channels) and head (1280 channels) that stay fixed when the network is
scaled. Padding is TensorFlow ``"same"``, BatchNorm epsilon 1e-3, and inputs
are normalised as ``(x - 127) / 128`` (done by :class:`Preprocess`).

Layer names follow Keras's own EfficientNet (``stem_conv``, ``block2a_...``,
``top_conv``) so the same layer groups apply.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

# (kernel, repeats, in, out, expand, stride) for the 7 stages of EfficientNet-B0.
_BASE_BLOCKS = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)

#: variant -> (width multiplier, depth multiplier, image size, dropout)
LITE_PARAMS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 280, 0.3),
    4: (1.4, 1.8, 300, 0.3),
}

_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_DROP_CONNECT = 0.2


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def block_plan(variant: int) -> list[dict]:
    """The flat list of MBConv blocks for a variant, with Keras layer prefixes."""
    width, depth, _, _ = LITE_PARAMS[variant]
    plan = []
    n_stages = len(_BASE_BLOCKS)
    for stage, (kernel, repeats, f_in, f_out, expand, stride) in enumerate(_BASE_BLOCKS):
        # Lite keeps the first and last stage's depth fixed (fix_head_stem).
        if stage not in (0, n_stages - 1):
            repeats = int(math.ceil(depth * repeats))
        f_in, f_out = _round_filters(f_in, width), _round_filters(f_out, width)
        if stage == 0:
            f_in = _STEM_FILTERS
        for r in range(repeats):
            plan.append({
                "prefix": f"block{stage + 1}{chr(ord('a') + r)}_",
                "kernel": kernel,
                "in": f_in if r == 0 else f_out,
                "out": f_out,
                "expand": expand,
                "stride": stride if r == 0 else 1,
            })
    return plan


def _mbconv(x, block: dict, drop_rate: float):
    prefix = block["prefix"]
    inputs = x
    filters = block["in"] * block["expand"]
    if block["expand"] != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False,
                          name=prefix + "expand_conv")(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM,
                                      name=prefix + "expand_bn")(x)
        x = layers.ReLU(6.0, name=prefix + "expand_activation")(x)
    x = layers.DepthwiseConv2D(block["kernel"], strides=block["stride"], padding="same",
                               use_bias=False, name=prefix + "dwconv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM,
                                  name=prefix + "bn")(x)
    x = layers.ReLU(6.0, name=prefix + "activation")(x)
    x = layers.Conv2D(block["out"], 1, padding="same", use_bias=False,
                      name=prefix + "project_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM,
                                  name=prefix + "project_bn")(x)
    if block["stride"] == 1 and block["in"] == block["out"]:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def efficientnet_lite_layers(x, variant: int, *, include_top: bool, pooling: str | None,
                             classes: int = 1000):
    """Apply EfficientNet-Lite to an already-normalised tensor ``x``."""
    if variant not in LITE_PARAMS:
        raise ValueError(f"EfficientNet-Lite variant must be 0..4. Received: {variant!r}")
    _, _, _, dropout = LITE_PARAMS[variant]
    x = layers.Conv2D(_STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    plan = block_plan(variant)
    for i, block in enumerate(plan):
        x = _mbconv(x, block, _DROP_CONNECT * i / len(plan))
    x = layers.Conv2D(_HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


# ---------------------------------------------------------------------------
# Weight port from the PyTorch state_dict (lukemelas-style key layout).
# ---------------------------------------------------------------------------

def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _dwconv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # C,1,H,W -> H,W,C,1


def _bn(sd: dict, key: str) -> list[np.ndarray]:
    return [sd[f"{key}.weight"], sd[f"{key}.bias"], sd[f"{key}.running_mean"],
            sd[f"{key}.running_var"]]


def convert_state_dict(sd: dict[str, np.ndarray], variant: int) -> dict[str, list[np.ndarray]]:
    """Map a PyTorch EfficientNet-Lite state_dict to ``{keras layer name: weights}``.

    Raises:
        ValueError: the state_dict does not match the variant's architecture.
    """
    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [_conv(sd["_conv_stem.weight"])],
        "stem_bn": _bn(sd, "_bn0"),
        "top_conv": [_conv(sd["_conv_head.weight"])],
        "top_bn": _bn(sd, "_bn1"),
    }
    if "_fc.weight" in sd:
        out["predictions"] = [sd["_fc.weight"].T, sd["_fc.bias"]]
    plan = block_plan(variant)
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    if n_blocks != len(plan):
        raise ValueError(
            f"The weights have {n_blocks} MBConv blocks but EfficientNet-Lite{variant} has "
            f"{len(plan)}: these are weights of another variant."
        )
    for i, block in enumerate(plan):
        src, dst = f"_blocks.{i}.", block["prefix"]
        if block["expand"] != 1:
            out[dst + "expand_conv"] = [_conv(sd[src + "_expand_conv.weight"])]
            out[dst + "expand_bn"] = _bn(sd, src + "_bn0")
        out[dst + "dwconv"] = [_dwconv(sd[src + "_depthwise_conv.weight"])]
        out[dst + "bn"] = _bn(sd, src + "_bn1")
        out[dst + "project_conv"] = [_conv(sd[src + "_project_conv.weight"])]
        out[dst + "project_bn"] = _bn(sd, src + "_bn2")
    return out


def assign_layer_weights(model: keras.Model, weights: dict[str, list[np.ndarray]],
                         *, source: str) -> int:
    """Set each named layer's weights; every weighted layer of ``model`` must be covered.

    Layers absent from ``model`` (the ImageNet classifier when
    ``include_top=False``) are skipped. Returns the number of layers set.

    Raises:
        ValueError: a weighted layer has no weights in ``weights`` or a shape differs.
    """
    count = 0
    for layer in model.layers:
        if not layer.weights or layer.name == "preprocess":
            continue
        if layer.name not in weights:
            raise ValueError(f"{source} has no weights for layer '{layer.name}'")
        values = weights[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(
                f"{source}: shape mismatch for layer '{layer.name}': the model expects "
                f"{expected}, the weights have {got}"
            )
        layer.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, layer.weights)])
        count += 1
    return count
