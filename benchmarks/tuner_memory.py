"""Resident memory of a long ``ktl.tuning.search`` in one process (default mode).

A long search in one process used to grow by every trial's traced graphs
(keras-team/keras-tuner#395, #1031): TensorFlow's gradient registry keeps
them alive (tensorflow/tensorflow#97697). kerastl releases each trial's models
(``clear_session``, the trial's registry entries via ``kerastl.memory``,
``gc``, ``malloc_trim``). This runs a random search of
20 trials in this process (the default, ``isolate_trials=False``) over two
backbones, head sizes, dropout, learning rates, unfreeze depth and optimizer
(32 px random images, 1 head epoch + 1 fine-tuning epoch per trial,
``weights=None``) and reads the process's resident set size after trial 2 and
after the last trial.

Target: RSS after trial 20 <= 1.2 x RSS after trial 2. ``--quick`` runs 8
trials of one head epoch on one backbone (same measurement after trial 2 and
the last).

Usage:
    python benchmarks/tuner_memory.py [--quick] [--trials 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 short trials, one backbone")
    parser.add_argument("--trials", type=int, default=None)
    args = parser.parse_args(argv)
    trials = args.trials or (8 if args.quick else 20)
    if trials < 3:
        parser.error("--trials must be >= 3")

    import numpy as np
    import psutil
    import tensorflow as tf

    import kerastl as ktl

    rng = np.random.default_rng(0)
    y = (np.arange(48) % 3).astype("int32")
    x = (rng.uniform(0, 60, (48, 32, 32, 3)) + 90.0 * y[:, None, None, None]).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x[:36], y[:36])).batch(12)
    val = tf.data.Dataset.from_tensor_slices((x[36:], y[36:])).batch(12)
    process = psutil.Process()
    rss: dict[int, float] = {}
    times: list[float] = []
    start = time.perf_counter()

    def record(info):
        n = info["trials_run"]
        rss[n] = process.memory_info().rss / 2**20
        times.append(time.perf_counter() - start)
        print(f"trial {n:>2} ({info['trial_id']}, {info['status']}): RSS {rss[n]:.0f} MiB, "
              f"{times[-1]:.0f} s", flush=True)

    backbones = ("mobilenet_v3_small",) if args.quick else ("mobilenet_v3_small", "mobilenet_v2")
    tmp = tempfile.mkdtemp(prefix="kerastl_tuner_memory_")
    try:
        ktl.tuning.search(train, val, backbones=backbones, tuner="random", max_trials=trials,
                          max_epochs=1 if args.quick else 2, directory=tmp,
                          project_name="memory", overwrite=True, weights=None, seed=0,
                          fixed={"augmentation": "none"}, on_trial_end=record, plots=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = max(rss)
    ratio = rss[last] / rss[2]
    print(f"RSS after trial 2: {rss[2]:.0f} MiB")
    print(f"RSS after trial {last}: {rss[last]:.0f} MiB")
    print(f"ratio trial {last} / trial 2: {ratio:.3f}")
    print(f"result: tuner_memory {ratio:.3f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
