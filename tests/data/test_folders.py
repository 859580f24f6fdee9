import os

import numpy as np
import pytest
from data_helpers import collect, make_class_folder, write_image

import kerastl as ktl
from kerastl.errors import DataError, UserInputError


def test_class_folder_shapes_labels_and_sorted_names(class_folder):
    splits = ktl.data.image_folder(class_folder, image_size=16, batch_size=4,
                                   validation_split=0.25)
    assert splits.class_names == ["ant", "bird", "cat"]
    assert splits.counts == {"train": 15, "val": 5}
    assert splits.image_size == (16, 16)
    assert splits.test is None
    assert splits.augmented is False
    assert splits.skipped == []
    assert splits.class_counts == [4, 8, 3]
    x, y = collect(splits.train)
    assert x.shape == (15, 16, 16, 3) and x.dtype == np.float32
    assert y.dtype == np.int32
    # class k (by folder order bird, ant, cat) is solid grey k*40: labels match pixels
    grey = {0: 40.0, 1: 0.0, 2: 80.0}
    for image, label in zip(x, y, strict=True):
        assert np.allclose(image, grey[int(label)], atol=1)


def test_validation_split_zero_gives_no_val(class_folder):
    splits = ktl.data.image_folder(class_folder, image_size=8, validation_split=0)
    assert splits.val is None
    assert splits.counts == {"train": 20}


def test_train_val_test_layout(tmp_path, rng):
    root = tmp_path / "ds"
    make_class_folder(str(root / "train"), ["a", "b"], 5, rng)
    make_class_folder(str(root / "validation"), ["a", "b"], 2, rng)
    make_class_folder(str(root / "test"), ["a", "b"], 3, rng)
    splits = ktl.data.image_folder(root, image_size=8, batch_size=2)
    assert splits.counts == {"train": 10, "val": 4, "test": 6}
    assert splits.class_names == ["a", "b"]
    _, y = collect(splits.test)
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_train_test_layout_cuts_val_from_train(tmp_path, rng):
    root = tmp_path / "ds"
    make_class_folder(str(root / "train"), ["a", "b"], 10, rng)
    make_class_folder(str(root / "test"), ["a", "b"], 2, rng)
    splits = ktl.data.image_folder(root, image_size=8, validation_split=0.2)
    assert splits.counts == {"train": 16, "val": 4, "test": 4}


def test_unknown_class_in_test_is_an_error(tmp_path, rng):
    root = tmp_path / "ds"
    make_class_folder(str(root / "train"), ["a", "b"], 2, rng)
    make_class_folder(str(root / "test"), ["a", "zebra"], 1, rng)
    with pytest.raises(DataError, match="zebra"):
        ktl.data.image_folder(root, image_size=8)


def test_bad_arguments_raise_clear_errors(class_folder, tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        ktl.data.image_folder(tmp_path / "missing", image_size=8)
    with pytest.raises(UserInputError, match="image_size"):
        ktl.data.image_folder(class_folder, image_size=(8,))
    with pytest.raises(UserInputError, match="validation_split"):
        ktl.data.image_folder(class_folder, image_size=8, validation_split=1.5)
    with pytest.raises(UserInputError, match="resize"):
        ktl.data.image_folder(class_folder, image_size=8, resize="squash")
    with pytest.raises(UserInputError, match="policy"):
        ktl.data.image_folder(class_folder, image_size=8, augment="wild")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="No class subfolders"):
        ktl.data.image_folder(empty, image_size=8)


def test_all_files_bad_is_a_data_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="No readable training image"):
        ktl.data.image_folder(tmp_path, image_size=8)


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad", "random_crop"])
def test_resize_modes_output_size(tmp_path, rng, mode):
    write_image(str(tmp_path / "a" / "wide.png"), rng, size=(10, 40))
    write_image(str(tmp_path / "b" / "tall.png"), rng, size=(40, 10))
    splits = ktl.data.image_folder(tmp_path, image_size=(12, 16), validation_split=0,
                                   resize=mode)
    x, _ = collect(splits.train)
    assert x.shape == (2, 12, 16, 3)
    assert splits.augmented is (mode == "random_crop")


def test_pad_mode_pads_with_black(tmp_path):
    path = tmp_path / "a" / "wide.png"
    os.makedirs(path.parent)
    from PIL import Image

    Image.fromarray(np.full((10, 40, 3), 200, np.uint8)).save(path)
    splits = ktl.data.image_folder(tmp_path, image_size=16, validation_split=0, resize="pad")
    x, _ = collect(splits.train)
    assert np.allclose(x[0, 0], 0) and np.allclose(x[0, 8], 200, atol=1)


def test_labels_csv_multi_label(tmp_path, rng):
    for i in range(6):
        write_image(str(tmp_path / f"img{i}.png"), rng)
    write_image(str(tmp_path / "unlisted.png"), rng)
    rows = ["file,labels", "img0.png,cat dog", "img1.png,dog", "img2.png,cat",
            "img3.png,cat;dog", "img4.png,bird", "img5.png,dog", "gone.png,cat"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    splits = ktl.data.image_folder(tmp_path, image_size=8, labels_csv="labels.csv",
                                   validation_split=0, shuffle=False)
    assert splits.class_names == ["bird", "cat", "dog"]
    assert splits.label_mode == "multi_hot"
    _, y = collect(splits.train)
    assert y.shape == (6, 3) and y.dtype == np.int32
    assert sorted(map(tuple, y.tolist())) == sorted(
        [(0, 1, 1), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (0, 0, 1)])
    reasons = dict(splits.skipped)
    assert "not listed" in reasons[str(tmp_path / "unlisted.png")]
    assert "does not exist" in reasons[os.path.normpath(str(tmp_path / "gone.png"))]


def test_file_cache_is_named_after_the_source(class_folder, tmp_path, rng):
    prefix = str(tmp_path / "cache" / "imgs")
    s = ktl.data.image_folder(class_folder, image_size=8, validation_split=0, cache=prefix)
    x1, _ = collect(s.train)
    first = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert first and all(name.startswith("imgs_train_") for name in first)
    # A new file changes the fingerprint: a fresh cache, not the stale one.
    write_image(os.path.join(class_folder, "ant", "new.png"), rng, value=0)
    s = ktl.data.image_folder(class_folder, image_size=8, validation_split=0, cache=prefix)
    x2, _ = collect(s.train)
    assert len(x2) == len(x1) + 1
    assert len({n.split(".")[0] for n in os.listdir(tmp_path / "cache")}) == 2


def test_datasets_have_known_cardinality(class_folder):
    # Keras needs it for exact steps per epoch (and warns on every epoch otherwise).
    s = ktl.data.image_folder(class_folder, image_size=8, batch_size=3, validation_split=0.25,
                              augment="light")
    assert int(s.train.cardinality()) == 5  # 15 train images / 3
    assert int(s.val.cardinality()) == 2  # 5 val images / 3, rounded up


def test_labels_csv_class_columns_and_split_column(tmp_path, rng):
    rows = ["path,split,cat,dog"]
    for i in range(8):
        write_image(str(tmp_path / "pics" / f"{i}.png"), rng)
        split = "test" if i >= 6 else ("val" if i >= 4 else "train")
        rows.append(f"pics/{i}.png,{split},{i % 2},{int(i < 3)}")
    (tmp_path / "y.csv").write_text("\n".join(rows) + "\n")
    s = ktl.data.image_folder(tmp_path, image_size=8, labels_csv=str(tmp_path / "y.csv"))
    assert s.class_names == ["cat", "dog"]
    assert s.counts == {"train": 4, "val": 2, "test": 2}
    assert s.class_counts == [2, 3]  # files 0-3: cat on 1, 3; dog on 0, 1, 2
    _, y = collect(s.test)
    assert sorted(map(tuple, y.tolist())) == [(0, 0), (1, 0)]


def test_labels_csv_errors(tmp_path, rng):
    write_image(str(tmp_path / "a.png"), rng)
    (tmp_path / "bad.csv").write_text("file,cat\na.png,yes\n")
    with pytest.raises(DataError, match="line 2.*0 or 1"):
        ktl.data.image_folder(tmp_path, image_size=8, labels_csv="bad.csv")
    with pytest.raises(UserInputError, match="labels_csv not found"):
        ktl.data.image_folder(tmp_path, image_size=8, labels_csv="missing.csv")


def test_multi_label_split_is_stratified_by_label_set(tmp_path, rng):
    rows = ["file,labels"]
    for i in range(20):
        write_image(str(tmp_path / f"{i}.png"), rng)
        rows.append(f"{i}.png,{'a b' if i < 10 else 'b'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    s = ktl.data.image_folder(tmp_path, image_size=8, labels_csv="labels.csv",
                              validation_split=0.2)
    _, yv = collect(s.val)
    assert sorted(map(tuple, yv.tolist())) == [(0, 1), (0, 1), (1, 1), (1, 1)]


def test_auto_cache_skips_memory_cache_over_budget(class_folder, monkeypatch, caplog):
    from kerastl.data import pipeline

    monkeypatch.setattr(pipeline, "AUTO_CACHE_BYTES", 100)
    monkeypatch.setattr(pipeline, "AUTO_DISK_CACHE_BYTES", 100)
    with caplog.at_level("INFO", logger="kerastl.data.pipeline"):
        s = ktl.data.image_folder(class_folder, image_size=8, validation_split=0)
    assert "Not caching the train split" in caplog.text
    x, _ = collect(s.train)
    assert len(x) == 20


def test_random_crop_draws_new_windows_each_epoch_and_centre_for_val(tmp_path, rng):
    for i in range(6):
        write_image(str(tmp_path / "a" / f"{i}.png"), rng, size=(40, 40))
    s = ktl.data.image_folder(tmp_path, image_size=16, validation_split=0.5,
                              resize="random_crop", shuffle=False, deterministic=True)
    assert s.augmented is True
    e1, _ = collect(s.train)
    e2, _ = collect(s.train)
    assert e1.shape == (3, 16, 16, 3)
    assert not np.allclose(e1, e2)
    v1, _ = collect(s.val)
    v2, _ = collect(s.val)
    assert np.array_equal(v1, v2)


def test_non_utf8_and_unicode_file_names(tmp_path, rng):
    root = os.fsencode(str(tmp_path))
    for name in (b"caf\xc3\xa9.png", b"bad\xff.png"):  # valid UTF-8, then invalid
        folder = os.path.join(root, b"a")
        os.makedirs(folder, exist_ok=True)
        write_image(os.fsdecode(os.path.join(folder, name)), rng)
    s = ktl.data.image_folder(tmp_path, image_size=8, validation_split=0)
    assert s.counts == {"train": 2} and s.skipped == []
    x, _ = collect(s.train)
    assert x.shape == (2, 8, 8, 3)
