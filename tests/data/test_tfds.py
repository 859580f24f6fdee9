import pytest
from conftest import collect, make_class_folder

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


@pytest.mark.slow
def test_unavailable_tfds_data_says_how_to_provide_it(tmp_path):
    # Offline (or without the data), preparing fails; the error says what to do.
    with pytest.raises(DataError, match="data_dir=DIR"):
        ktl.data.from_tfds("mnist", image_size=8, data_dir=str(tmp_path / "none"))
