"""Serving a text model: raw strings in, with the WordPiece tokenizer in core TF ops.

``serving_default(text: tf.string [batch])`` answers ``probabilities``,
``classes``, ``class_names``, ``top_k_indices`` and ``top_k_scores`` (or
``predictions`` for a regressor). The tokenizer runs in the graph with core
TensorFlow ops only, so a server without tensorflow-text (TF Serving's stock
image bundles an old one) loads and answers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from kerastl._compat import flatten_layers
from kerastl.errors import UserInputError
from kerastl.export.signatures import SERVING_SIGNATURE, classify_outputs, tf_variables

TEXT_INPUT = "text"

#: Warmup texts when the user gives none: short, long, accented, empty.
SYNTHETIC_TEXTS = (
    "A short example text.",
    "Une phrase accentuée, avec des caractères comme é, ü et ñ.",
    " ".join(["A much longer text that is truncated to the model's sequence length."] * 40),
    "",
)


def is_text_model(model: keras.Model) -> bool:
    """True for a model taking one batch of strings (a kerastl text task model)."""
    inputs = getattr(model, "inputs", None) or []
    return len(inputs) == 1 and str(getattr(inputs[0], "dtype", "")) == "string"


def _lookup_tables(model: keras.Model) -> list:
    """The tf.lookup tables the model's layers own: a SavedModel must track them, or the
    loaded graph has no table to read."""
    found, seen = [], set()

    def visit(value, depth):
        if isinstance(value, tf.lookup.StaticHashTable | tf.lookup.StaticVocabularyTable):
            if id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        elif depth and isinstance(value, list | tuple):
            for item in value:
                visit(item, depth - 1)
        elif depth and isinstance(value, dict):
            for item in value.values():
                visit(item, depth - 1)

    for layer in flatten_layers(model, include_self=True):
        for value in vars(layer).values():
            visit(value, 2)
    return found


class TextServingModule(tf.Module):
    """The ``tf.Module`` saved for a text model (variables and lookup tables tracked,
    the Keras model itself not, so loading needs neither Keras nor kerastl)."""

    def __init__(self, model: keras.Model, *, task: str, class_names: Sequence[str] | None,
                 top_k: int):
        super().__init__(name="kerastl_text_serving")
        self._setattr_tracking = False
        self._model = model
        self._setattr_tracking = True
        self.model_variables = tf_variables(model)
        self.lookup_tables = _lookup_tables(model)
        self._task = task
        self._num_outputs = int(model.output_shape[-1])
        self._top_k = min(int(top_k), self._num_outputs)
        if task != "regression":
            self.class_name_table = tf.Variable(list(class_names), trainable=False,
                                                dtype=tf.string, name="class_names")
        self.serving_default = tf.function(
            self._serving_default, autograph=False,
            input_signature=[tf.TensorSpec([None], tf.string, name=TEXT_INPUT)])

    def _serving_default(self, text):
        scores = tf.cond(
            tf.shape(text)[0] > 0,
            lambda: tf.cast(self._model(text, training=False), tf.float32),
            lambda: tf.zeros([0, self._num_outputs], tf.float32))
        scores = tf.ensure_shape(scores, [None, self._num_outputs])
        if self._task == "regression":
            return {"predictions": scores}
        return classify_outputs(scores, self._top_k, self.class_name_table)

    def signatures(self) -> dict:
        return {SERVING_SIGNATURE: self.serving_default.get_concrete_function()}


def example_texts(examples, limit: int = 8) -> list[bytes]:
    """Warmup texts: the user's (a list of strings, or a dataset of texts or
    ``(texts, labels)`` batches), else :data:`SYNTHETIC_TEXTS`."""
    if examples is None:
        return [t.encode("utf-8") for t in SYNTHETIC_TEXTS][:limit]
    if isinstance(examples, tf.data.Dataset):
        texts = []
        for item in examples.unbatch().take(limit):
            value = item[0] if isinstance(item, tuple) else item
            texts.append(bytes(value.numpy()))
        return texts
    if isinstance(examples, str | bytes) or not hasattr(examples, "__iter__"):
        raise UserInputError("example texts must be a list of strings or a dataset of texts. "
                             f"Received: {type(examples).__name__}")
    out = []
    for text in list(examples)[:limit]:
        if not isinstance(text, str | bytes):
            raise UserInputError(f"example texts must be strings. Received: {text!r}")
        out.append(text.encode("utf-8") if isinstance(text, str) else text)
    return out


def build_text_requests(model_name: str, texts: Sequence[bytes]) -> list:
    """Warmup ``PredictionLog`` protos: each text alone, then all of them batched."""
    from kerastl.export.warmup import MAX_WARMUP_RECORDS, _serving_protos

    prediction_log_pb2, predict_pb2 = _serving_protos()

    def request(batch):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model_name
        req.model_spec.signature_name = SERVING_SIGNATURE
        req.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(list(batch), dtype=tf.string))
        return prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=req))

    logs = [request([t]) for t in texts]
    if len(texts) > 1:
        logs.append(request(texts))
    return logs[:MAX_WARMUP_RECORDS]
