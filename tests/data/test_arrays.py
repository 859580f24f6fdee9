import numpy as np
import pytest
from data_helpers import collect

import kerastl as ktl
from kerastl.errors import UserInputError


def test_greyscale_arrays_become_rgb_resized_and_split():
    x = np.stack([np.full((8, 8), i * 10, np.uint8) for i in range(20)])
    y = np.arange(20) % 4
    s = ktl.data.from_arrays(x, y, image_size=12, batch_size=5, validation_split=0.25,
                             class_names=["a", "b", "c", "d"])
    assert s.counts == {"train": 15, "val": 5}
    assert s.class_names == ["a", "b", "c", "d"]
    assert s.class_counts == [3, 4, 4, 4]
    xt, yt = collect(s.train)
    assert xt.shape == (15, 12, 12, 3) and xt.dtype == np.float32 and yt.dtype == np.int32
    # pixel value identifies the example: label == (value / 10) % 4
    values = xt[:, 0, 0, 0].round().astype(int)
    assert np.array_equal(values // 10 % 4, yt)
    assert np.allclose(xt[..., 0], xt[..., 2])
    xv, yv = collect(s.val)
    assert sorted(yv.tolist()) == [0, 0, 1, 2, 3]
    assert set(values.tolist()).isdisjoint(xv[:, 0, 0, 0].round().astype(int).tolist())


@pytest.mark.parametrize("shape", [(6, 5, 5, 1), (6, 5, 5, 3)])
def test_channel_layouts_and_float_input(shape):
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    s = ktl.data.from_arrays(x, np.array([0, 1] * 3), image_size=(4, 6), validation_split=0)
    xt, _ = collect(s.train)
    assert xt.shape == (6, 4, 6, 3)
    assert 0 <= xt.min() and xt.max() <= 255


def test_from_arrays_errors():
    with pytest.raises(UserInputError, match="shape"):
        ktl.data.from_arrays(np.zeros((4, 5, 5, 2)), [0, 1, 0, 1], image_size=8)
    with pytest.raises(UserInputError, match=r"\[0, 255\]"):
        ktl.data.from_arrays(np.full((4, 5, 5), -1.0), [0, 1, 0, 1], image_size=8)
    with pytest.raises(UserInputError, match="one per image"):
        ktl.data.from_arrays(np.zeros((4, 5, 5)), [0, 1], image_size=8)
    with pytest.raises(UserInputError, match="class_names"):
        ktl.data.from_arrays(np.zeros((4, 5, 5)), [0, 1, 2, 3], image_size=8,
                             class_names=["a", "b"])


def test_from_arrays_augment_flags_and_mixup_labels():
    x = np.random.default_rng(0).integers(0, 255, (16, 8, 8, 3), dtype=np.uint8)
    y = np.arange(16) % 2
    s = ktl.data.from_arrays(x, y, image_size=8, augment="light", validation_split=0)
    assert s.augmented is True and s.label_mode == "int"
    s = ktl.data.from_arrays(x, y, image_size=8, augment={"mixup": 0.4}, validation_split=0.25)
    assert s.label_mode == "one_hot"
    _, yt = collect(s.train)
    assert yt.shape == (12, 2) and yt.dtype == np.float32
    assert np.allclose(yt.sum(axis=1), 1.0, atol=1e-5)
    _, yv = collect(s.val)
    assert yv.dtype == np.int32 and yv.shape == (4,)


def test_from_arrays_augment_on_model():
    import keras

    x = np.zeros((8, 6, 6), np.uint8)
    s = ktl.data.from_arrays(x, np.arange(8) % 2, image_size=6, augment="light",
                             augment_on="model")
    assert s.augmented is False
    assert isinstance(s.augmentation, keras.Sequential) and len(s.augmentation.layers) == 3
    with pytest.raises(UserInputError, match="augment_on"):
        ktl.data.from_arrays(x, np.arange(8) % 2, image_size=6, augment_on="gpu")


def test_large_arrays_stream_instead_of_becoming_constants(monkeypatch):
    from kerastl.data import arrays

    monkeypatch.setattr(arrays, "_MAX_CONSTANT_BYTES", 0)
    x = np.stack([np.full((5, 5, 3), i, np.uint8) for i in range(10)])
    s = ktl.data.from_arrays(x, np.arange(10) % 2, image_size=5, validation_split=0.2)
    xt, yt = collect(s.train)
    xv, yv = collect(s.val)
    ids = sorted(xt[:, 0, 0, 0].astype(int).tolist() + xv[:, 0, 0, 0].astype(int).tolist())
    assert ids == list(range(10))
    assert np.array_equal(xt[:, 0, 0, 0].astype(int) % 2, yt)
    assert int(s.train.cardinality()) == 1  # 8 examples, batch 32


def test_from_arrays_cardinality_known():
    s = ktl.data.from_arrays(np.zeros((10, 4, 4), np.uint8), np.arange(10) % 2, image_size=4,
                             batch_size=4, validation_split=0.2)
    assert int(s.train.cardinality()) == 2 and int(s.val.cardinality()) == 1
