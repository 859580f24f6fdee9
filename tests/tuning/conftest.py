"""Fixtures of the tuning tests."""

from __future__ import annotations

import pytest
from tuning_helpers import tiny_datasets


@pytest.fixture
def tiny_data():
    return tiny_datasets()
