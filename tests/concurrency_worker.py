"""One of several processes filling the same weights cache and feature cache at once.

Usage: python -m tests.concurrency_worker OUT_DIR INDEX N

Builds everything first, then writes OUT_DIR/ready-INDEX and waits for
OUT_DIR/go (the test creates it once all N are ready), so the N processes
convert the EfficientNet-Lite0 weights into the (empty) cache of
$KERASTL_HOME at the same moment; then waits for all N to finish that and
extracts features into the cache folder OUT_DIR/features at the same moment.
Writes OUT_DIR/result-INDEX.json and OUT_DIR/features-INDEX.npz.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _wait_for(condition, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.005)


def main() -> None:
    out, index, n = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    import keras
    import numpy as np

    import kerastl as ktl
    from kerastl.backbones.weights import lite_cached_weights, load_named_weights

    keras.utils.set_random_seed(0)
    backbone = ktl.build_backbone("mobilenet_v2", weights=None, image_size=32)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.arange(16) % 2

    (out / f"ready-{index}").touch()
    _wait_for((out / "go").exists, "the start signal")
    path = lite_cached_weights(0)
    weights = load_named_weights(path)  # a half-written file would fail here

    (out / f"weights-done-{index}").touch()
    _wait_for(lambda: len(list(out.glob("weights-done-*"))) == n, "the other processes")
    features, feature_labels = ktl.extract_features(backbone, (images, labels), batch_size=8,
                                                    cache=out / "features", verbose=0)
    np.savez(out / f"features-{index}.npz", features=features, labels=feature_labels)
    (out / f"result-{index}.json").write_text(json.dumps(
        {"weights_path": os.fspath(path), "layers": sorted(weights)}))


if __name__ == "__main__":
    main()
