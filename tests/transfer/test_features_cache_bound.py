"""The features cache folder is bounded: least recently used files are deleted."""

import os

import numpy as np
import pytest

import kerastl as ktl
from kerastl.atomic import TEMP_PREFIX, temp_name
from kerastl.data import features as low_level
from kerastl.errors import UserInputError
from kerastl.transfer.features import CACHE_MAX_BYTES, prune_cache


def _write(folder, name, size, mtime):
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def test_prune_deletes_least_recently_used_feature_files_only(tmp_path):
    for i, name in enumerate(["features-a.npz", "features-b.npz", "features-c.npz"]):
        _write(tmp_path, name, 100, 1_000 + i)
    _write(tmp_path, "notes.txt", 1000, 1)  # not a cache file: never counted nor deleted
    _write(tmp_path, temp_name(tmp_path / "features-d.npz"), 1000, 1)  # being written
    removed = prune_cache(tmp_path, 250)
    assert [p.name for p in removed] == ["features-a.npz"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(TEMP_PREFIX)) \
        == ["features-b.npz", "features-c.npz", "notes.txt"]
    assert len(list(tmp_path.glob(f"{TEMP_PREFIX}*-features-d.npz"))) == 1
    # The file in use stays even when it alone is over the bound.
    removed = prune_cache(tmp_path, 50, keep=(tmp_path / "features-b.npz",))
    assert [p.name for p in removed] == ["features-c.npz"]
    assert sorted(p.name for p in tmp_path.glob("features-*.npz")) == ["features-b.npz"]
    assert prune_cache(tmp_path, 10**9) == []


def test_extract_features_keeps_the_cache_under_its_bound(tmp_path, backbone, monkeypatch):
    calls = []

    def mean_features(_backbone, dataset, **_kwargs):  # the cache is under test, not the net
        images, labels = map(np.concatenate, zip(*((x.numpy(), y.numpy()) for x, y in dataset)))
        calls.append(1)
        return np.repeat(images.mean(axis=(1, 2, 3))[:, None], 1280, axis=1), labels

    monkeypatch.setattr(low_level, "extract_features", mean_features)
    rng = np.random.default_rng(0)
    data = [(rng.uniform(0, 255, (6, 32, 32, 3)).astype("float32"), np.arange(6) % 2)
            for _ in range(3)]
    cache = tmp_path / "features"

    def run(i, bound):
        before = set(os.listdir(cache)) if cache.exists() else set()
        feats, _ = ktl.extract_features(backbone, data[i], cache=cache, verbose=0,
                                        cache_max_bytes=bound)
        np.testing.assert_allclose(feats[:, 0], data[i][0].mean(axis=(1, 2, 3)), rtol=1e-6)
        return sorted(set(os.listdir(cache)) - before)

    (a,) = run(0, None)
    size = (cache / a).stat().st_size
    assert size > 6 * 1280 * 4  # six 1280-D float32 feature vectors at least
    bound = int(2.5 * size)  # room for two files
    (b,) = run(1, bound)
    os.utime(cache / a, ns=(1, 1))
    os.utime(cache / b, ns=(2, 2))
    assert run(0, bound) == [] and len(calls) == 2  # a hit: a is now the most recent
    (c,) = run(2, bound)  # three files do not fit: b, least recently used, goes
    assert len(calls) == 3
    assert sorted(os.listdir(cache)) == sorted([a, c])
    assert sum((cache / n).stat().st_size for n in os.listdir(cache)) <= bound
    # A bound below one file keeps only the file of the call.
    assert run(1, 1) == [b] and len(calls) == 4
    assert os.listdir(cache) == [b]


@pytest.mark.parametrize("bound", [0, -5, 1.5, "2GB", True])
def test_bad_bound_is_one_clear_error(tmp_path, backbone, bound):
    x = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(UserInputError, match=r"cache_max_bytes must be a number of bytes > 0 "
                                             r"\(or None for no bound\)\. Received: "):
        ktl.extract_features(backbone, (x, np.arange(2)), cache=tmp_path, cache_max_bytes=bound)
    assert list(tmp_path.iterdir()) == []
    assert CACHE_MAX_BYTES == 2 * 1024**3
