import numpy as np
import pytest
from data_helpers import collect, make_class_folder

import kerastl as ktl
from kerastl.data import stratified_split


def test_stratified_split_is_disjoint_complete_and_stratified():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    train, val = stratified_split(labels, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80
    assert set(train).isdisjoint(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert np.bincount(np.asarray(labels)[val]).tolist() == [10, 6, 4]


def test_stratified_split_reproducible_and_seed_dependent():
    labels = [i % 4 for i in range(200)]
    a = stratified_split(labels, 0.3, seed=7)
    b = stratified_split(labels, 0.3, seed=7)
    c = stratified_split(labels, 0.3, seed=8)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_stratified_split_keeps_a_training_example_per_class():
    train, val = stratified_split([0, 1, 1, 2, 2, 2], 0.9, seed=0)
    assert sorted(np.asarray([0, 1, 1, 2, 2, 2])[train].tolist()) == [0, 1, 2]


def _file_splits(root, seed):
    splits = ktl.data.image_folder(root, image_size=8, validation_split=0.3, seed=seed,
                                   shuffle=False, deterministic=True)
    return splits


def test_image_folder_split_reproducible_disjoint_stratified(tmp_path, rng):
    # Each image is a distinct solid grey so pixel values identify files.
    root = tmp_path / "imgs"
    for k, name in enumerate(["a", "b"]):
        for i in range(10):
            from data_helpers import write_image

            write_image(str(root / name / f"{i}.png"), rng, value=k * 100 + i * 5)
    ids = {}
    for seed in (1, 1, 2):
        s = _file_splits(root, seed)
        xt, yt = collect(s.train)
        xv, yv = collect(s.val)
        train_ids = sorted(xt[:, 0, 0, 0].round().astype(int).tolist())
        val_ids = sorted(xv[:, 0, 0, 0].round().astype(int).tolist())
        assert set(train_ids).isdisjoint(val_ids)
        assert len(train_ids) + len(val_ids) == 20
        assert np.bincount(yv).tolist() == [3, 3]
        ids.setdefault(seed, []).append(val_ids)
    assert ids[1][0] == ids[1][1]
    assert ids[1][0] != ids[2][0]


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_split_counts_add_up(tmp_path, rng, fraction):
    root = make_class_folder(str(tmp_path / "i"), ["x", "y", "z"], [7, 5, 3], rng)
    s = ktl.data.image_folder(root, image_size=8, validation_split=fraction)
    assert s.counts["train"] + s.counts["val"] == 15
    assert s.counts["val"] == round(15 * fraction)
