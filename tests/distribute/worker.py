"""A fine_tune run used by the distribution tests, one process per worker or device setup.

Usage: python -m tests.distribute.worker OUT_DIR MODE[,MODE...] [--logical-cpus N]
Several comma-separated modes run one after the other in this one process (one
TensorFlow start instead of one per mode), each writing into OUT_DIR/<mode>/.
MODE: "single" (no strategy), "mirrored" (MirroredStrategy over the logical
CPUs), "mirrored-custom" (the same with kerastl's strategy.run loop), or
"multi_worker" (MultiWorkerMirroredStrategy from TF_CONFIG). A "-scope" suffix
("mirrored-scope", "multi_worker-scope") builds the model inside
``strategy.scope()``, as TensorFlow's guides do, and calls fine_tune without
``strategy=``: the strategy is inferred from the model's variables. Writes the final
weights to OUT_DIR/weights-<task>.npz, the history to OUT_DIR/history-<task>.json,
and (chief only) OUT_DIR/model.keras.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GLOBAL_BATCH = 8


def data(tf, np):
    rng = np.random.default_rng(0)
    y = np.arange(32) % 3
    palette = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], "float32")
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 20, (32, 32, 32, 3)), 0, 255)
    ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("int32")))
    return ds.take(24).batch(GLOBAL_BATCH), ds.skip(24).batch(GLOBAL_BATCH)


_STRATEGIES: dict = {}


def run(mode: str, out: pathlib.Path, backup_dir, tf, np) -> None:
    import keras

    import kerastl as ktl

    strategy, loop, task = None, "auto", 0
    in_scope = mode.endswith("-scope")
    kind = mode.split("-")[0]
    if kind in ("multi_worker", "mirrored"):
        # One strategy per process: a second one's collectives reuse the first one's
        # instance keys, and TensorFlow aborts them (shape mismatch).
        strategy = _STRATEGIES.get(kind) or _STRATEGIES.setdefault(
            kind, ktl.distribute.get_strategy(kind))
        if kind == "multi_worker":
            task = strategy.cluster_resolver.task_id
        loop = "custom" if mode.endswith("custom") else "auto"
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    # Real weights (a random frozen backbone gives ~constant features, so nothing would
    # train) with drop-connect off: the replicas' runs then differ only by float sums.
    with strategy.scope() if in_scope else contextlib.nullcontext():
        backbone = ktl.build_backbone("efficientnet_lite0", weights="imagenet", image_size=32)
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
        model = ktl.build_classifier(backbone, 3, dropout=0.0)
    np.savez(out / f"initial-{task}.npz", *model.get_weights())
    train, val = data(tf, np)
    result = ktl.fine_tune(model, train, val, head_epochs=2, epochs=1, unfreeze={"groups": 1},
                           learning_rate=1e-2, fine_tune_learning_rate=1e-3, verbose=0,
                           patience=None, cache_features=False,
                           strategy=None if in_scope else strategy,
                           training_loop=loop, backup_dir=backup_dir)
    np.savez(out / f"weights-{task}.npz", *result.model.get_weights())
    (out / f"history-{task}.json").write_text(json.dumps(
        {"history": result.history, "replicas": strategy.num_replicas_in_sync if strategy else 1,
         "chief": ktl.distribute.is_chief(strategy)}))
    if ktl.distribute.is_chief(strategy):
        from kerastl.training.run import save_model_atomically

        save_model_atomically(result.model, out / "model.keras")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("mode")
    parser.add_argument("--logical-cpus", type=int, default=1)
    parser.add_argument("--backup-dir", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    import tensorflow as tf

    if args.logical_cpus > 1:  # before TensorFlow initialises its devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    import numpy as np

    modes = args.mode.split(",")
    for mode in modes:
        out = pathlib.Path(args.out)
        if len(modes) > 1:
            out = out / mode
            out.mkdir(parents=True, exist_ok=True)
        backup = args.backup_dir
        if backup and len(modes) > 1:
            backup = os.path.join(backup, mode)
        run(mode, out, backup, tf, np)


if __name__ == "__main__":
    main()
