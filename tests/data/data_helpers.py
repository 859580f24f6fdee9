"""Helpers for the data tests: small generated image folders, dataset collection."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def write_image(path, rng, size=(20, 24), mode="RGB", fmt=None, value=None):
    """Write a random (or solid ``value``) image; returns the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h, w = size
    if value is None:
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        array = np.full((h, w, 3), value, dtype=np.uint8)
    image = Image.fromarray(array)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, fmt)
    return path


def make_class_folder(root, classes, per_class, rng, ext=".png"):
    """``root/<class>/<i><ext>``; class ``k`` images are solid grey ``k * 40``."""
    for k, name in enumerate(classes):
        count = per_class[k] if isinstance(per_class, (list, tuple)) else per_class
        for i in range(count):
            write_image(os.path.join(root, name, f"{i:03d}{ext}"), rng, value=k * 40)
    return root


def collect(ds):
    """All ``(images, labels)`` of a dataset as two numpy arrays."""
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)
