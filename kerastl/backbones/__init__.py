"""Backbones: the registry of specs, builders and pretrained weights."""

from kerastl.backbones.builder import build_backbone
from kerastl.backbones.hub import HubBackbone
from kerastl.backbones.preprocessing import Preprocess
from kerastl.backbones.registry import BackboneSpec, backbone_spec, list_backbones, register

__all__ = [
    "BackboneSpec",
    "HubBackbone",
    "Preprocess",
    "backbone_spec",
    "build_backbone",
    "list_backbones",
    "register",
]
