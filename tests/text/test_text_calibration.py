"""Temperature scaling on a text classifier: the same "predictions" layer, folded exactly."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import kerastl as ktl
from kerastl.calibration import logits_and_labels, softmax
from kerastl.text.models import TextClassifier
from tests.text.conftest import TOPICS


def test_text_classifier_calibrates_and_folds_exactly(tiny_bert):
    model = TextClassifier(str(tiny_bert), 3, sequence_length=16, dropout=0.0,
                           class_names=list(TOPICS))
    dense = model.get_layer("predictions")
    dense.kernel.assign(np.random.default_rng(0).normal(0, 20, dense.kernel.shape)
                        .astype("float32"))  # confident and mostly wrong: T > 1
    texts = [t for topic in TOPICS.values() for t in topic]
    labels = np.repeat(np.arange(3), [len(v) for v in TOPICS.values()])
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(4)
    result = ktl.calibrate(model, data)
    assert result.temperature > 1 and result.nll_after < result.nll_before
    logits, _ = logits_and_labels(model, data)
    served = result.model.predict(tf.constant(texts), verbose=0)
    np.testing.assert_allclose(served, softmax(logits / result.temperature), atol=1e-6)
    assert result.model.class_names == tuple(TOPICS)
