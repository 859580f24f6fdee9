import numpy as np
import pytest
import tensorflow_datasets as tfds
from data_helpers import collect, make_class_folder

import kerastl as ktl
from kerastl.errors import DataError, UserInputError


def test_local_tfds_image_folder(tmp_path, rng):
    root = tmp_path / "tfds_folder"
    make_class_folder(str(root / "train"), ["cat", "dog"], 6, rng, ext=".jpg")
    make_class_folder(str(root / "test"), ["cat", "dog"], 2, rng, ext=".jpg")
    s = ktl.data.from_tfds(str(root), image_size=16, batch_size=4, validation_split=0.25)
    assert s.class_names == ["cat", "dog"]
    assert s.counts == {"train": 9, "val": 3, "test": 4}
    assert s.class_counts == [4, 5]
    assert [int(d.cardinality()) for d in (s.train, s.val, s.test)] == [3, 1, 1]
    x, y = collect(s.train)
    assert x.shape == (9, 16, 16, 3) and x.dtype == "float32" and y.dtype == "int32"
    _, yv = collect(s.val)
    assert sorted(yv.tolist()) == [0, 0, 1]
    xt, yt = collect(s.test)
    assert sorted(yt.tolist()) == [0, 0, 1, 1]
    # cat images are grey 0, dog images grey 40 (JPEG: within a few levels)
    for image, label in zip(xt, yt, strict=True):
        assert abs(float(image.mean()) - 40 * int(label)) < 4


def test_unknown_tfds_name_suggests_close_matches():
    with pytest.raises(UserInputError, match="Did you mean: mnist"):
        ktl.data.from_tfds("mnistt", image_size=8)


def test_unavailable_tfds_data_says_how_to_provide_it(tmp_path):
    with pytest.raises(DataError, match="data_dir=DIR"):
        ktl.data.from_tfds("mnist", image_size=8, data_dir=str(tmp_path / "none"),
                           download=False)


class KtlTinyImages(tfds.core.GeneratorBasedBuilder):
    """A tiny builder prepared offline: 12 train and 4 test greyscale images."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(10, 10, 1)),
            "label": tfds.features.ClassLabel(names=["dark", "light"]),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "test": self._generate_examples(4)}

    def _generate_examples(self, n):
        for i in range(n):
            label = i % 2
            yield i, {"image": np.full((10, 10, 1), 20 + 200 * label, np.uint8),
                      "label": label}


def test_prepared_tfds_name_with_data_dir(tmp_path):
    data_dir = str(tmp_path / "tfds")
    try:
        KtlTinyImages(data_dir=data_dir).download_and_prepare()
    except ImportError as err:  # an incomplete tfds install (e.g. etils[epath] extras)
        pytest.skip(f"tfds cannot prepare datasets here: {err}")
    s = ktl.data.from_tfds("ktl_tiny_images", image_size=6, data_dir=data_dir,
                           validation_split=0.25, download=False)
    assert s.class_names == ["dark", "light"]
    assert s.counts == {"train": 9, "val": 3, "test": 4}
    x, y = collect(s.train)
    assert x.shape == (9, 6, 6, 3)
    assert np.allclose(x.mean(axis=(1, 2, 3)), 20 + 200 * y)


def test_tfds_split_slices(tmp_path):
    data_dir = str(tmp_path / "tfds")
    try:
        KtlTinyImages(data_dir=data_dir).download_and_prepare()
    except ImportError as err:
        pytest.skip(f"tfds cannot prepare datasets here: {err}")
    s = ktl.data.from_tfds("ktl_tiny_images", image_size=6, data_dir=data_dir,
                           split=("train[:8]", "train[8:]", None), download=False)
    assert s.counts == {"train": 8, "val": 4}
    assert s.test is None
    _, yv = collect(s.val)
    _, yt = collect(s.train)
    assert len(yv) == 4
    assert np.bincount(np.concatenate([yt, yv])).tolist() == [6, 6]
    assert s.class_counts == np.bincount(yt, minlength=2).tolist()
    with pytest.raises(DataError, match="no split 'training'"):
        ktl.data.from_tfds("ktl_tiny_images", image_size=6, data_dir=data_dir,
                           split=("training",), download=False)
