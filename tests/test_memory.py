import gc
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastl.memory import GraphRelease, custom_gradient_names, forget_custom_gradients


def _trace_custom_gradient():
    @tf.custom_gradient
    def double(x):
        return 2.0 * x, lambda dy: 2.0 * dy

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = double(x)
        return tape.gradient(y, x)

    return float(step(tf.constant(3.0)))


def test_forget_removes_only_entries_registered_since():
    assert _trace_custom_gradient() == 2.0
    before = custom_gradient_names()
    assert before, "tf.custom_gradient in a tf.function registers a named gradient"
    assert _trace_custom_gradient() == 2.0
    new = custom_gradient_names() - before
    assert len(new) == 1
    assert forget_custom_gradients(before) == 1
    assert custom_gradient_names() == before
    assert forget_custom_gradients(before) == 0


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 8, 8, 3)).astype("float32")
    y = (np.arange(24) % 3).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _fit_one(data):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data, epochs=1, verbose=0)
    return model


def _func_graphs() -> int:
    gc.collect()
    return sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects())


def test_graph_release_frees_the_traced_graphs_of_finished_models():
    data = _data()
    graphs = GraphRelease()
    _fit_one(data)
    graphs.release()
    after_one = _func_graphs()
    for _ in range(3):
        graphs = GraphRelease()
        _fit_one(data)
        graphs.release()
    # Without the release every fit leaves its train-step graph behind
    # (tensorflow/tensorflow#97697): +1 FuncGraph per model, at least.
    assert _func_graphs() <= after_one


def test_a_model_kept_across_a_release_still_trains():
    data = _data()
    kept = _fit_one(data)
    before = [np.array(w) for w in kept.get_weights()]
    graphs = GraphRelease()
    _fit_one(data)
    graphs.release(clear_session=False)
    history = kept.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, kept.get_weights(), strict=True))
    # and a new model can still compute gradients afterwards
    fresh = _fit_one(data)
    assert fresh.optimizer.iterations.numpy() == 3


@pytest.mark.parametrize("clear", [True, False])
def test_release_returns_the_number_removed(clear):
    graphs = GraphRelease()
    _trace_custom_gradient()
    assert graphs.release(clear_session=clear) == 1
    assert graphs.release(clear_session=clear) == 0


def test_a_moved_gradient_registry_warns_once_instead_of_removing_nothing_silently(monkeypatch):
    from tensorflow.python.framework import ops

    from kerastl import _compat, memory

    monkeypatch.setattr(memory, "_warned", False)
    monkeypatch.delattr(ops, "_gradient_registry")
    with pytest.raises(_compat.PrivateAPIMissing, match="_gradient_registry"):
        _compat.gradient_registry()
    with pytest.warns(RuntimeWarning, match="cannot release traced models' graphs"):
        assert forget_custom_gradients(set()) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not on every trial
        assert custom_gradient_names() == set()


def test_fine_tune_hands_freed_heap_back_after_every_epoch(monkeypatch):
    """Each training epoch ends with malloc_trim (benchmarks/train_memory.py: phase 2 grew
    from epoch to epoch by what glibc kept of the epoch's freed batches)."""
    import kerastl as ktl
    from kerastl.training import callbacks

    calls = []
    monkeypatch.setattr(callbacks, "trim_heap", lambda: calls.append(1))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 2)).batch(4)
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None,
                                                    image_size=32), 2)
    result = ktl.fine_tune(model, ds, ds, head_epochs=2, epochs=1, verbose=0, patience=None,
                           cache_features=False)
    assert len(result.history["loss"]) == 3
    assert len(calls) == 3  # head epochs 1, 2 and the fine-tuning epoch
