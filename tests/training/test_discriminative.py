import keras
import numpy as np
import pytest

import kerastl as ktl
from kerastl.training.discriminative import (
    discriminative_optimizer,
    group_multipliers,
    layerwise_multipliers,
    no_decay_variables,
    variable_groups,
)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"), np.arange(8) % 3


def _model():
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None, image_size=32),
                                 3, dropout=0.0)
    # BatchNorm in training mode keeps activations (and gradients) healthy at random init
    return ktl.unfreeze(model, train_bn=True)


def _one_step(model, optimizer, x, y):
    before = {v.path: np.array(v.numpy()) for v in model.trainable_weights}
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return {v.path: np.array(v.numpy()) - before[v.path] for v in model.trainable_weights}


def test_group_multipliers_follow_layerwise_decay():
    model = _model()
    rates = group_multipliers(model, 0.5)
    groups = ktl.backbone_spec("mobilenet_v2").groups
    assert rates["classifier"] == 1.0
    assert set(rates) == set(ktl.backbone_spec("mobilenet_v2").groups) | {"classifier"}
    assert [rates[g] for g in groups] == [0.5 ** (len(groups) - i) for i in range(len(groups))]
    per_var = layerwise_multipliers(model, 0.5, multipliers={"stem": 0.0})
    assert per_var["predictions/kernel"] == 1.0
    assert per_var["Conv1/kernel"] == 0.0  # explicit override
    assert len(per_var) == len(model.weights)
    with pytest.raises(ValueError, match=r"decay must be a number in \(0, 1\]"):
        group_multipliers(model, 1.5)
    with pytest.raises(ValueError, match="Unknown layer group 'stage9'. Groups of this model"):
        layerwise_multipliers(model, 0.5, multipliers={"stage9": 1.0})
    with pytest.raises(ValueError, match="Unknown optimizer 'lion'"):
        discriminative_optimizer(model, "lion")


def test_sgd_step_is_exactly_scaled_per_group(batch):
    x, y = batch
    model = _model()
    start = model.get_weights()
    plain = _one_step(model, keras.optimizers.SGD(0.1), x, y)
    model.set_weights(start)
    opt = discriminative_optimizer(model, "sgd", 0.1, decay=0.5, momentum=0.0)
    scaled = _one_step(model, opt, x, y)
    mult = layerwise_multipliers(model, 0.5)
    checked = 0
    for path, delta in plain.items():
        if np.abs(delta).max() > 1e-5:  # float32 deltas of O(1) weights resolve ~1e-7
            np.testing.assert_allclose(scaled[path], delta * mult[path], rtol=1e-2,
                                       atol=3e-7, err_msg=path)
            checked += 1
    assert checked > 50


def test_adam_lower_groups_move_less_per_step(batch):
    """Adam normalises gradients, so the per-variable rate (not gradient scaling) sets the step."""
    x, y = batch
    model = _model()
    lr = 1e-2
    deltas = _one_step(model, discriminative_optimizer(model, "adam", lr, decay=0.5), x, y)
    groups = variable_groups(model)
    rates = group_multipliers(model, 0.5)
    moved = {}
    for path, delta in deltas.items():
        moved.setdefault(groups[path], []).append(np.abs(delta).mean())
    order = list(ktl.backbone_spec("mobilenet_v2").groups) + ["classifier"]
    means = [float(np.mean(moved[g])) for g in order]
    assert all(a < b for a, b in zip(means, means[1:])), means
    for group, mean in zip(order, means):  # first Adam step: |update| ~ lr x multiplier
        assert mean / (lr * rates[group]) == pytest.approx(1.0, abs=0.3), group


def test_adamw_skips_norm_and_bias_and_round_trips(tmp_path, batch):
    x, y = batch
    model = _model()
    opt = discriminative_optimizer(model, "adamw", 1e-3, decay=0.5, weight_decay=0.1)
    opt.build(model.trainable_variables)
    skipped = {v.path for v in no_decay_variables(model)}
    for v in model.trainable_variables:
        assert opt._use_weight_decay(v) == (v.path not in skipped), v.path
    assert "bn_Conv1/gamma" in skipped and "predictions/bias" in skipped
    assert "Conv1/kernel" not in skipped
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer).__name__ == "DiscriminativeAdamW"
    assert loaded.optimizer.lr_multipliers == opt.lr_multipliers


def test_weight_decay_is_scaled_by_the_group_rate():
    model = _model()
    wd, lr = 0.5, 0.1
    opt = discriminative_optimizer(model, "adamw", lr, decay=0.5, weight_decay=wd)
    variables = model.trainable_variables
    before = [np.array(v.numpy()) for v in variables]
    opt.apply([np.zeros(v.shape, "float32") for v in variables], variables)  # decay only
    mult = layerwise_multipliers(model, 0.5)
    for v, b in zip(variables, before):
        expected = b if not opt._use_weight_decay(v) else b * (1 - wd * lr * mult[v.path])
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=v.path)
