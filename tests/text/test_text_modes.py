"""Text in kerastl's other modes: feature extraction with a linear head, and k-fold
cross-validation of text classifiers."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import main
from kerastl.text.models import TextClassifier


def test_feature_extraction_run_is_a_linear_head_on_frozen_embeddings(tiny_bert, text_folder,
                                                                       tmp_path):
    out = tmp_path / "fe"
    assert main(["train", str(text_folder), "--backbone", str(tiny_bert), "--mode",
                 "feature-extraction", "--sequence-length", "16", "--validation-split", "0.25",
                 "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "feature-extraction" and report["task"] == "text"
    assert report["linear_head"]["kind"] == "logistic"
    model = keras.saving.load_model(out / "model.keras")
    assert isinstance(model, TextClassifier) and model.class_names == ("business", "sport",
                                                                       "tech")
    # the saved model answers what the report measured on the validation split
    splits = ktl.data.text_folder(text_folder, validation_split=0.25,
                                  seed=report["config"]["seed"], shuffle=False)
    probs = model.predict(tf.constant(splits.val_texts), verbose=0)
    accuracy = float(np.mean(probs.argmax(1) == np.array(splits.val_labels)))
    assert accuracy == report["val_metrics"]["accuracy"]


@pytest.mark.slow
def test_cross_validate_text_classifiers(tiny_bert):
    from tests.text.conftest import TOPICS

    texts = np.array([t for topic in TOPICS.values() for t in topic])
    labels = np.repeat(np.arange(3), 4)
    cv = ktl.cross_validate(lambda: TextClassifier(str(tiny_bert), 3, sequence_length=16),
                            (texts, labels), k=2, head_epochs=1, epochs=0, batch_size=4)
    assert len(cv.folds) == 2
    assert all(0.0 <= fold["accuracy"] <= 1.0 for fold in cv.folds)
    assert cv.mean["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in cv.folds]))
