import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.data import features as low_level


@pytest.fixture
def counted(monkeypatch):
    """Count the backbone passes of the in-memory extractor under the cache."""
    calls = []
    original = low_level.extract_features

    def counting(backbone, dataset, **kwargs):
        calls.append(backbone.input.shape[1])
        return original(backbone, dataset, **kwargs)

    monkeypatch.setattr(low_level, "extract_features", counting)
    return calls


def _images(size, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32"), np.arange(n) % 2


def test_without_cache_matches_low_level(backbone):
    x, y = _images(32)
    feats, labels = ktl.extract_features(backbone, (x, y), batch_size=4, verbose=0)
    expected = np.asarray(backbone(x, training=False))
    assert feats.shape == (6, 1280)
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, y)


def test_cache_hit_loads_and_changes_recompute(tmp_path, counted):
    cache = tmp_path / "features"
    bb32 = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    x, y = _images(32)
    first = ktl.extract_features(bb32, (x, y), cache=cache, verbose=0)
    again = ktl.extract_features(bb32, (x, y), cache=cache, verbose=0)
    assert len(counted) == 1  # second call read the file
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert len(list(cache.glob("features-mobilenet_v2-*.npz"))) == 1

    # other weights (same architecture, same size): recomputed
    bb32.weights[0].assign(bb32.weights[0] * 0.5)
    changed = ktl.extract_features(bb32, (x, y), cache=cache, verbose=0)
    assert len(counted) == 2
    assert not np.array_equal(changed[0], first[0])

    # other image size: recomputed
    bb48 = ktl.build_backbone("mobilenet_v2", weights=None, image_size=48)
    x48, y48 = _images(48)
    ktl.extract_features(bb48, (x48, y48), cache=cache, verbose=0)
    assert counted[-1] == 48 and len(counted) == 3

    # one pixel or one label different: recomputed
    x2 = x.copy()
    x2[0, 0, 0, 0] += 1
    ktl.extract_features(bb32, (x2, y), cache=cache, verbose=0)
    ktl.extract_features(bb32, (x, 1 - y), cache=cache, verbose=0)
    assert len(counted) == 5
    assert len(list(cache.glob("*.npz"))) == 5
    assert not list(cache.glob("*.tmp"))


def test_reshuffling_dataset_keeps_its_key_and_stays_aligned(tmp_path, backbone, counted):
    x, y = _images(32, n=8)
    y = np.arange(8)  # each label names its image
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(8, seed=1).batch(3)
    feats, labels = ktl.extract_features(backbone, ds, cache=tmp_path, verbose=0)
    feats2, labels2 = ktl.extract_features(backbone, ds, cache=tmp_path, verbose=0)
    assert len(counted) == 1
    expected = np.asarray(backbone(x, training=False))
    np.testing.assert_allclose(feats, expected[labels], atol=1e-5)
    np.testing.assert_array_equal(labels2, labels)


def test_classifier_and_name_use_the_backbone(colour_images):
    x, y = colour_images
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None,
                                                    image_size=32), 3)
    feats, _ = ktl.extract_features(model, (x[:4], y[:4]), verbose=0)
    assert feats.shape == (4, 1280)  # backbone features, not the head's probabilities


def test_corrupt_cache_file_is_recomputed(tmp_path, backbone, counted):
    x, y = _images(32)
    ktl.extract_features(backbone, (x, y), cache=tmp_path, verbose=0)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a zip")
    feats, _ = ktl.extract_features(backbone, (x, y), cache=tmp_path, verbose=0)
    assert len(counted) == 2 and feats.shape == (6, 1280)


def test_errors(tmp_path, backbone):
    x, y = _images(32)
    with pytest.raises(ValueError, match="pair of arrays"):
        ktl.extract_features(backbone, x)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        ktl.extract_features(backbone, (x[0], y))
    with pytest.raises(ValueError, match="backbone name, a model"):
        ktl.extract_features(42, (x, y))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        ktl.extract_features(backbone, (x, y), cache=tmp_path / "file")
    fmap = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32, pooling=None)
    with pytest.raises(ValueError, match="pooling='avg'"):
        ktl.extract_features(fmap, (x, y))
    with pytest.raises(ValueError, match="empty"):
        ktl.extract_features(backbone, tf.data.Dataset.from_tensor_slices((x, y)).take(0)
                             .batch(2), cache=tmp_path)
