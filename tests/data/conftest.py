"""Fixtures for the data tests (helpers live in data_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import make_class_folder


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def class_folder(tmp_path, rng):
    return make_class_folder(str(tmp_path / "imgs"), ["bird", "ant", "cat"], [10, 6, 4], rng)
