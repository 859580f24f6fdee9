"""The KerasTuner search on text data: TextHyperModel chosen from the data, sequence
length tuned, the best model a TextClassifier keeping its class names."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.errors import UserInputError
from kerastl.text.models import TextClassifier
from kerastl.tuning.text import TextHyperModel


def _data():
    from tests.text.conftest import TOPICS

    texts = [t for topic in TOPICS.values() for t in topic]
    labels = np.repeat(np.arange(3), 4).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(6)
    return ds


@pytest.mark.slow
def test_a_text_search_tunes_sequence_length_and_keeps_class_names(tiny_bert, tmp_path):
    ds = _data()
    hm = TextHyperModel(3, backbones=(str(tiny_bert),), class_names=["b", "s", "t"],
                        space={"sequence_length": [8, 16]}, fixed={"optimizer": "adam"})
    result = ktl.tuning.search(ds, ds, hypermodel=hm, tuner="random", max_trials=2,
                               max_epochs=2, directory=tmp_path, project_name="text",
                               plots=False)
    assert len(result.trials) == 2
    assert {row["sequence_length"] for row in result.trials} <= {8, 16}
    best = result.best_model()
    assert isinstance(best, TextClassifier) and best.class_names == ("b", "s", "t")
    assert best.sequence_length == result.best_hyperparameters["sequence_length"]


def test_text_data_gets_a_text_hypermodel_and_bad_spaces_are_refused(tiny_bert):
    from kerastl.tuning.arguments import _hypermodel_and_project

    ds = _data()
    hm, project = _hypermodel_and_project(
        None, None, "random", ds, ds, backbones=(str(tiny_bert),), image_size=None,
        num_classes=None, weights="imagenet", space=None, fixed=None, seed=1, verbose=0,
        strategy=None, class_names=None)
    assert isinstance(hm, TextHyperModel) and hm.num_classes == 3
    assert "augmentation" not in hm.hyperparameters and "sequence_length" in hm.hyperparameters
    assert hm.definitions["unfreeze_groups"]["max"] == 3  # embeddings + 2 layers
    with pytest.raises(UserInputError, match="Unknown hyperparameter"):
        TextHyperModel(3, backbones=(str(tiny_bert),), fixed={"augmentation": "light"})
    with pytest.raises(UserInputError, match="Unknown text backbone"):
        TextHyperModel(3, backbones=("efficientnet_lite0",))
