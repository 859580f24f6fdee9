"""Shared fixtures: tiny seeded data, isolated caches, offline by construction."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kerastl  # noqa: E402,F401  (registers custom layers before any .keras load)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def lite_weights_home(tmp_path_factory):
    """A private KERASTL_HOME so weight-conversion tests start from an empty cache."""
    return tmp_path_factory.mktemp("kerastl_home")


@pytest.fixture
def tiny_images():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(12, 32, 32, 3)).astype("float32")
    y = np.arange(12) % 3
    return x, y
