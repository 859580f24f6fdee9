"""Tiny seeded backbones and data for the transfer tests."""

import numpy as np
import pytest

import kerastl as ktl


@pytest.fixture(scope="module")
def backbone():
    """A randomly initialised MobileNetV2 at 32 px (1280-D features)."""
    return ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)


@pytest.fixture
def colour_images():
    """24 noisy images of 3 colour classes (red, green, blue), labels 0..2."""
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype="float32")
    x = colours[y][:, None, None, :] + rng.normal(0, 30, (24, 32, 32, 3))
    return np.clip(x, 0, 255).astype("float32"), y


def make_blobs(n=300, classes=5, dim=16, seed=0, spread=1.5):
    """Gaussian blobs: features (n, dim) float32 and labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (classes, dim))
    y = np.arange(n) % classes
    x = centres[y] + rng.normal(0, 1.0, (n, dim))
    return x.astype("float32"), y


@pytest.fixture
def blobs():
    """The :func:`make_blobs` generator."""
    return make_blobs
