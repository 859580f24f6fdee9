"""kerastl's metadata about its datasets lives beside them (kerastl.data.info), not on them."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.data.pipeline import epoch_order, pass_counter


def _splits(**kwargs):
    x = np.random.default_rng(0).integers(0, 255, (16, 6, 6, 3), dtype=np.uint8)
    return ktl.data.from_arrays(x, np.arange(16) % 2, image_size=6, batch_size=4,
                                validation_split=0.25, seed=0, **kwargs)


def test_an_augmented_training_set_is_recorded_and_a_user_map_inherits_it():
    s = _splits(augment="light")
    assert ktl.data.is_augmented(s.train)
    assert ktl.data.dataset_info(s.train).augmented is True
    mapped = s.train.map(lambda a, b: (a / 255.0, b)).take(2)
    # The derived dataset has no record of its own, but cannot undo the random draws.
    assert ktl.data.dataset_info(mapped) == ktl.data.DatasetInfo()
    assert ktl.data.is_augmented(mapped)
    assert ktl.data.is_augmented(tf.data.Dataset.zip((s.val, mapped)))
    assert not ktl.data.is_augmented(s.val)
    # A stated value decides for the dataset (and what it is built from).
    assert not ktl.data.is_augmented(ktl.data.describe(s.train.map(lambda a, b: (a, b)),
                                                       augmented=False))


def test_plain_kerastl_and_user_datasets_are_not_augmented():
    s = _splits()
    assert not ktl.data.is_augmented(s.train)
    assert not ktl.data.is_augmented(s.train.map(lambda a, b: (a, b)))
    assert not ktl.data.is_augmented(tf.data.Dataset.range(3))
    # The order's metadata belongs to the exact dataset: a derived one has none.
    info = ktl.data.dataset_info(s.train)
    assert info.pass_counter is pass_counter(s.train) is not None
    assert epoch_order(s.train)["batch_size"] == 4
    assert epoch_order(s.train.map(lambda a, b: (a, b))) is None


def test_apply_augmentation_and_user_splits_record_it():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 6, 6, 3), "float32"),
                                             np.zeros(4, "int32"))).batch(2)
    out, augmented = ktl.data.apply_augmentation(ds, "light", seed=1)
    assert augmented and ktl.data.is_augmented(out)
    plain = ds.map(lambda a, b: (a, b))
    ktl.data.Splits(train=plain, val=None, test=None, class_names=["a"], augmented=True)
    assert ktl.data.is_augmented(plain)


def test_describe_checks_fields_and_keeps_no_dataset_alive():
    ds = tf.data.Dataset.range(3)
    with pytest.raises(TypeError, match="Unknown DatasetInfo field"):
        ktl.data.describe(ds, augmentd=True)
    ref = weakref.ref(ktl.data.describe(ds, augmented=True))
    del ds
    gc.collect()
    assert ref() is None
