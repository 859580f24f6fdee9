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
from kerastl.memory import trim_heap  # noqa: E402


def _freeze_what_lives() -> None:
    """Move every live object (TensorFlow's ~400k after import) out of the collector's
    view: a full ``gc.collect()`` (each test's clear_session, kerastl's graph release)
    then scans only what tests made since, ~0.02 s instead of ~0.4 s per call."""
    gc.collect()
    gc.freeze()


_freeze_what_lives()


def pytest_collection_finish(session):
    _freeze_what_lives()  # and the test modules' imports (keras_tuner, matplotlib...)


#: Every file that took 20 s or more, longest first (seconds: one full two-worker run on
#: 2 cores, tests/conftest.py's per-test freeze in place). pytest-xdist (``--dist
#: loadfile``) hands whole files out in this order: longest first, so the run ends on
#: short files and neither worker idles while the other finishes a long one (ordering
#: by number of tests put one-test files of 25-95 s last).
SLOWEST_FILES = (
    "cli/test_hostile_sweep.py",  # 246
    "distribute/test_strategies.py",  # 248 before its subprocesses were merged
    "cli/test_cli.py",  # 141
    "training/test_fine_tune.py",  # 138
    "export/test_real_weights.py",  # 131
    "backbones/test_registry.py",  # 115
    "distribute/test_fault_tolerance.py",  # 95
    "text/test_cli_text.py",  # 73
    "tuning/test_search.py",  # 66
    "export/test_consumers.py",  # 61
    "distribute/test_cli_multi_worker.py",  # 61
    "cli/test_run_contract.py",  # 46
    "training/test_checkpoint.py",  # 44
    "training/test_discriminative.py",  # 43
    "export/test_verify.py",  # 41
    "cli/test_cli_hygiene.py",  # 40
    "training/test_l2_sp.py",  # 39
    "export/test_saved_model.py",  # 39
    "export/test_concurrent_exports.py",  # 38
    "text/test_text_search.py",  # 36
    "tuning/test_distributed.py",  # 34
    "text/test_tokenizer.py",  # 33
    "cli/test_export_cli.py",  # 33
    "text/test_text_modes.py",  # 31
    "test_task_models.py",  # 28
    "training/test_gradual.py",  # 27
    "tuning/test_resume.py",  # 25
    "test_concurrency.py",  # 24
    "text/test_backbones.py",  # 21
    "test_calibration.py",  # 21
    "tuning/test_hostile_tune.py",  # 21
    "test_freezing.py",  # 21
    "training/test_micro_batch.py",  # 20
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


#: A test's teardown freezes what survives it (below), so cyclic garbage that a later
#: test drops (a module fixture's models, a backbone of 350M zero weights in
#: test_registry) waits for a full collection with the freeze lifted. One runs when the
#: process has grown by this much since the last: without it a worker reached 8 GB.
_FULL_COLLECT_GROWTH = int(os.environ.get("KERASTL_TEST_FULL_COLLECT_MB", "768")) * 2**20


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_rss_after_full = _rss_bytes()


def _collect_all() -> None:
    global _rss_after_full
    gc.unfreeze()
    gc.collect()
    trim_heap()  # hand the freed heap back, so RSS measures what is still alive
    gc.freeze()
    _rss_after_full = _rss_bytes()


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
    if _rss_bytes() - _rss_after_full > _FULL_COLLECT_GROWTH:
        _collect_all()


@pytest.fixture(autouse=True, scope="module")
def _collect_after_each_file():
    yield
    if _rss_bytes() - _rss_after_full > _FULL_COLLECT_GROWTH // 2:
        _collect_all()


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
