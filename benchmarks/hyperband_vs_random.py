"""Hyperband vs random search at an equal total epoch budget, on the demo data.

The demo data: few-shot Fashion-MNIST (Debian's ``dataset-fashion-mnist``,
offline), EfficientNet-Lite0 with its real ImageNet weights. Hyperband runs
first; its epoch budget is the sum over its trials of the epochs it asked for
(``tuner/epochs - tuner/initial_epoch``). Random search then gets
``budget // max_epochs`` trials of ``max_epochs`` epochs each (never more
epochs than Hyperband). Both search the same space with the same seed; the
best validation accuracy of each is printed side by side.

Ratio: Hyperband best / random best (target >= 1: Hyperband is at least as
good for the same compute). ``--quick``: 32 px, 10 images per class,
max_epochs 2, Hyperband factor 2.

Usage:
    python benchmarks/hyperband_vs_random.py [--quick] [--max-epochs 6] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _epochs_asked(rows: list[dict], max_epochs: int) -> int:
    total = 0
    for r in rows:
        if r.get("tuner/epochs") is not None:
            total += int(r["tuner/epochs"]) - int(r.get("tuner/initial_epoch") or 0)
        else:
            total += max_epochs
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--factor", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    max_epochs = args.max_epochs or (2 if args.quick else 6)
    size = args.image_size or (32 if args.quick else 64)
    per_class = args.per_class or (10 if args.quick else 40)
    factor = args.factor or (2 if args.quick else 3)

    import kerastl as ktl
    from kerastl.demo import DemoConfig, demo_splits

    splits = demo_splits(DemoConfig(image_size=size, train_per_class=per_class,
                                    val_per_class=max(10, per_class // 2), test_per_class=1,
                                    batch_size=32, seed=args.seed))
    print(f"data: Fashion-MNIST, {splits.counts['train']} train / {splits.counts['val']} val "
          f"images at {size} px; backbone efficientnet_lite0 (ImageNet weights)")
    common = dict(backbones=("efficientnet_lite0",), max_epochs=max_epochs, overwrite=True,
                  seed=args.seed, weights="imagenet", plots=False,
                  fixed={"augmentation": "none"})
    tmp = tempfile.mkdtemp(prefix="kerastl_hb_vs_random_")
    try:
        t0 = time.perf_counter()
        hb = ktl.tuning.search(splits, tuner="hyperband", factor=factor, directory=tmp,
                               project_name="hyperband", **common)
        hb_time = time.perf_counter() - t0
        budget = _epochs_asked(hb.trials, max_epochs)
        n_random = max(1, budget // max_epochs)
        t0 = time.perf_counter()
        rs = ktl.tuning.search(splits, tuner="random", max_trials=n_random, directory=tmp,
                               project_name="random", **common)
        rs_time = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [("", "hyperband", "random"),
            ("trials", len(hb.trials), len(rs.trials)),
            ("epochs asked", budget, _epochs_asked(rs.trials, max_epochs)),
            ("epochs run", int(sum(r.get("epochs") or 0 for r in hb.trials)),
             int(sum(r.get("epochs") or 0 for r in rs.trials))),
            ("best val_accuracy", f"{hb.best_score:.4f}", f"{rs.best_score:.4f}"),
            ("seconds", f"{hb_time:.0f}", f"{rs_time:.0f}")]
    for name, a, b in rows:
        print(f"{name:<20}{a!s:>12}{b!s:>12}")
    ratio = hb.best_score / rs.best_score if rs.best_score else float("inf")
    print(f"ratio hyperband / random best val_accuracy: {ratio:.3f}")
    print(f"result: hyperband_vs_random {ratio:.3f} (target >= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
