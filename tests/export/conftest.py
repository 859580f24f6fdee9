"""Fixtures for export tests: tiny models with input-dependent outputs, real photos."""

from __future__ import annotations

import pytest
from export_helpers import tiny_backbone, tiny_classifier

import kerastl as ktl


@pytest.fixture
def classifier():
    return tiny_classifier()


@pytest.fixture
def regressor():
    return ktl.build_regressor(tiny_backbone(), 2)


@pytest.fixture(scope="session")
def photos():
    """40 random crops of scikit-image's sample photos at 32 px (float32, integer values)."""
    from kerastl.export.samples import sample_images

    return sample_images(40, (32, 32), seed=3)
