"""Phase-1 epoch time with and without frozen-feature caching, side by side.

Same data (few-shot Fashion-MNIST from the demo, real EfficientNet-Lite0
ImageNet weights), same seed, same head: ``ktl.fine_tune(..., epochs=0)``
once with ``cache_features=False`` (every epoch runs the frozen backbone) and
once with ``cache_features=True`` (features computed once, then the head
trains on them). Prints the per-epoch times, the one-off extraction time,
validation accuracy of each, and the speed-up from the second epoch on
(median epoch time without / with caching). Target: >= 10x, validation
accuracy within 0.5 pp.

Usage:
    python benchmarks/feature_cache.py [--quick] [--epochs 15] [--image-size 96]
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras

import kerastl as ktl
from kerastl.demo import DemoConfig, demo_splits


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def run(splits, *, cache: bool, epochs: int, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    model = ktl.build_classifier(
        ktl.build_backbone("efficientnet_lite0", image_size=splits.image_size), 10, dropout=0.2)
    timer = EpochTimer()
    start = time.perf_counter()
    result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=epochs, epochs=0,
                           cache_features=cache, callbacks=[timer], patience=None, verbose=0)
    total = time.perf_counter() - start
    keras.backend.clear_session()
    return {"epoch_times": timer.times, "total": total,
            "extraction": result.timings.get("feature_extraction", 0.0),
            "val_accuracy": result.history["val_accuracy"][-1],
            "best_val_accuracy": max(result.history["val_accuracy"]),
            "cached": result.cached_features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, 3 epochs (< 2 min)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        config = DemoConfig(image_size=64, train_per_class=20, val_per_class=10,
                            test_per_class=10, seed=args.seed, deterministic=True)
        epochs = 3
    else:
        config = DemoConfig(image_size=args.image_size, seed=args.seed, deterministic=True)
        epochs = args.epochs
    splits = demo_splits(config)
    print(f"data: {splits.counts['train']} train / {splits.counts['val']} val images, "
          f"{config.image_size} px, {epochs} phase-1 epochs, EfficientNet-Lite0 ImageNet")

    # Fresh splits for each run: a dataset object continues its sequence of
    # epoch orders across runs, so reusing one would give the second run other batches.
    full = run(splits, cache=False, epochs=epochs, seed=args.seed)
    cached = run(demo_splits(config), cache=True, epochs=epochs, seed=args.seed)
    assert cached["cached"] and not full["cached"]

    later_full = statistics.median(full["epoch_times"][1:])
    later_cached = statistics.median(cached["epoch_times"][1:])
    ratio = later_full / later_cached
    gap_pp = 100 * abs(full["val_accuracy"] - cached["val_accuracy"])
    best_gap_pp = 100 * abs(full["best_val_accuracy"] - cached["best_val_accuracy"])
    print(f"{'':<22}{'no cache':>12}{'cached':>12}")
    for i, (a, b) in enumerate(zip(full["epoch_times"], cached["epoch_times"]), start=1):
        print(f"epoch {i} time (s){'':<8}{a:>12.3f}{b:>12.3f}")
    print(f"feature extraction (s){'':<0}{'-':>12}{cached['extraction']:>12.2f}")
    print(f"phase 1 total (s){'':<5}{full['total']:>12.2f}{cached['total']:>12.2f}")
    print(f"val accuracy{'':<10}{full['val_accuracy']:>12.4f}{cached['val_accuracy']:>12.4f}")
    print(f"best val accuracy{'':<5}{full['best_val_accuracy']:>12.4f}"
          f"{cached['best_val_accuracy']:>12.4f}")
    print(f"median epoch time from epoch 2: {later_full:.3f} s vs {later_cached:.3f} s; "
          f"val accuracy gap: final epoch {gap_pp:.2f} pp, best epoch {best_gap_pp:.2f} pp "
          "(target <= 0.5 pp; both runs see the same batches in the same order)")
    print(f"result: feature_cache {ratio:.1f} (target 10)")


if __name__ == "__main__":
    main()
