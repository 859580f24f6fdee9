"""kerastl.export.trust: the ops a SavedModel signature reaches, read without running it."""

from __future__ import annotations

import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.errors import UserInputError
from kerastl.export.trust import DENIED_OPS, check_trusted, denied_ops, reachable_ops

BYTES = tf.TensorSpec([None], tf.string)


def _save(fn, path) -> str:
    """A SavedModel whose serving_default is ``fn`` (a tf.function of image_bytes)."""
    module = tf.Module()
    module.fn = fn
    tf.saved_model.save(module, str(path), signatures={"serving_default":
                                                       fn.get_concrete_function()})
    return str(path)


def _scores(image_bytes, extra=0.0):
    return {"probabilities": tf.zeros([tf.shape(image_bytes)[0], 3]) + extra}


def writes_file(path, target) -> str:
    """serving_default writes the first request's bytes to ``target``."""
    @tf.function(input_signature=[BYTES])
    def serve(image_bytes):
        tf.io.write_file(str(target), image_bytes[0])
        return _scores(image_bytes)
    return _save(serve, path)


def calls_python(path) -> str:
    @tf.function(input_signature=[BYTES])
    def serve(image_bytes):
        value = tf.py_function(lambda x: x, [tf.zeros([1])], tf.float32)
        return _scores(image_bytes, tf.reduce_sum(value))
    return _save(serve, path)


def writes_in_nested_branch(path, target) -> str:
    """WriteFile two function levels down: a tf.cond branch calling an inner tf.function,
    and no output depends on it."""
    @tf.function
    def inner(data):
        tf.io.write_file(str(target), data)
        return tf.constant(1.0)

    @tf.function(input_signature=[BYTES])
    def serve(image_bytes):
        flag = tf.cond(tf.size(image_bytes) > 0, lambda: inner(image_bytes[0]),
                       lambda: tf.constant(0.0))
        return _scores(image_bytes, flag)
    return _save(serve, path)


def reads_in_map_fn(path) -> str:
    """ReadFile inside map_fn (a While body in the function library)."""
    @tf.function(input_signature=[BYTES])
    def serve(image_bytes):
        sizes = tf.map_fn(lambda name: tf.strings.length(tf.io.read_file(name)),
                          image_bytes, fn_output_signature=tf.int32)
        return _scores(image_bytes, tf.cast(tf.reduce_sum(sizes), tf.float32))
    return _save(serve, path)


def test_write_file_is_found_and_refused(tmp_path):
    path = writes_file(tmp_path / "sm", tmp_path / "pwned")
    assert "WriteFile" in reachable_ops(path)
    assert denied_ops(path) == {"WriteFile": "writes files"}
    with pytest.raises(UserInputError) as info:
        check_trusted(path)
    message = str(info.value)
    assert "\n" not in message and "WriteFile" in message and "--trust-savedmodel" in message
    check_trusted(path, trust=True)  # the user vouches: no check
    assert not (tmp_path / "pwned").exists()  # reading the graph ran nothing


def test_py_function_is_found(tmp_path):
    assert denied_ops(calls_python(tmp_path / "sm")) == {"EagerPyFunc": "runs Python code"}


def test_ops_inside_nested_functions_are_found(tmp_path):
    path = writes_in_nested_branch(tmp_path / "sm", tmp_path / "pwned")
    ops = reachable_ops(path)
    assert {"WriteFile", "If"} <= ops or {"WriteFile", "StatelessIf"} <= ops
    assert "WriteFile" in denied_ops(path)
    assert denied_ops(reads_in_map_fn(tmp_path / "map")) == {"ReadFile": "reads files"}


def test_kerastl_export_passes(tmp_path):
    from export_helpers import CLASS_NAMES, tiny_classifier

    path = ktl.export_saved_model(tiny_classifier(), tmp_path, name="pets",
                                  class_names=CLASS_NAMES, warmup=False)
    for signature in ("serving_default", "predict_images"):
        ops = reachable_ops(path, signature)
        assert {"Conv2D", "Softmax"} <= ops  # the model itself is reached...
        assert not ops & set(DENIED_OPS)  # ...and nothing refused
        check_trusted(path, signature)
    with pytest.raises(UserInputError, match="has no signature 'nope'"):
        reachable_ops(path, "nope")


def test_not_a_saved_model(tmp_path):
    with pytest.raises(UserInputError, match="no saved_model.pb"):
        reachable_ops(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"\xff" * 40)
    with pytest.raises(UserInputError, match="does not parse as a SavedModel"):
        reachable_ops(tmp_path)


def test_deny_list_names_real_ops():
    assert set(DENIED_OPS) <= set(dir(tf.raw_ops))
