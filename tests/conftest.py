"""Shared fixtures: tiny seeded data, isolated caches, offline by construction."""

from __future__ import annotations

import gc
import os
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kerastl  # noqa: E402,F401  (registers custom layers before any .keras load)


def _freeze_what_lives() -> None:
    """Move every live object (TensorFlow's ~400k after import) out of the collector's
    view: a full ``gc.collect()`` (each test's clear_session, kerastl's graph release)
    then scans only what tests made since, ~0.02 s instead of ~0.4 s per call."""
    gc.collect()
    gc.freeze()


_freeze_what_lives()


def pytest_collection_finish(session):
    _freeze_what_lives()  # and the test modules' imports (keras_tuner, matplotlib...)


#: The longest files, longest first (seconds in a full two-worker run on 2 cores):
#: pytest-xdist (``--dist loadfile``) hands whole files out in collection order, so
#: starting these first leaves only short files for the end, and neither worker idles
#: while the other finishes a long file (xdist's own order, most tests first, put the
#: one-test files of 80-100 s last).
SLOWEST_FILES = (
    "cli/test_hostile_sweep.py",  # 447
    "distribute/test_strategies.py",  # 308
    "training/test_fine_tune.py",  # 217
    "cli/test_cli.py",  # 190
    "backbones/test_registry.py",  # 169
    "export/test_real_weights.py",  # 106 (one test)
    "distribute/test_fault_tolerance.py",  # 82 (one test)
    "export/test_consumers.py",  # 72 for its fixture alone
    "distribute/test_cli_multi_worker.py",  # 73 (one test)
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Order files: SLOWEST_FILES first, then the rest by number of tests, most first.

    Within a file the order is unchanged, and a file's tests stay together."""
    def file_of(item) -> str:
        return item.nodeid.split("::", 1)[0]

    counts = Counter(file_of(item) for item in items)
    rank = {f"tests/{name}": i for i, name in enumerate(SLOWEST_FILES)}

    def key(item):
        path = file_of(item)
        return rank.get(path, len(rank)), -counts[path], path

    items.sort(key=key)


#: Cyclic garbage frozen by a test's teardown (below) is only reclaimed by a full
#: collection with the freeze lifted; one runs after a test file when the process holds
#: more than this (tests that read memory figures start from a collected heap anyway).
_RSS_COLLECT_BYTES = int(os.environ.get("KERASTL_TEST_RSS_COLLECT_MB", "2000")) * 2**20


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # clear_session's own gc.collect() would scan everything earlier tests left alive
    # (module fixtures, TensorFlow's function caches: ~1.1M objects, 0.85 s per test
    # in a full run, 800 s of 3,000). Collect what this test made, then freeze the
    # survivors, so the next test's collection (and Python's automatic ones) scan only
    # that test's objects.
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _collect_after_each_file():
    yield
    if _rss_bytes() > _RSS_COLLECT_BYTES:  # reclaim the cycles frozen since import
        gc.unfreeze()
        gc.collect()
        gc.freeze()


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
