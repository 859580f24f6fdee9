"""Test-time augmentation on the demo: test accuracy without vs with TTA, over seeds.

For each seed, the demo's recipe (``kerastl.demo.DemoConfig``: EfficientNet-Lite0
with ImageNet weights, few-shot Fashion-MNIST, 100 training images per class, 96 px;
the seed picks the images and the initialisation) is trained by ``ktl.fine_tune``,
then its 2,000 test images are predicted once per view (:mod:`kerastl.tta`):
``flip`` (the image and its mirror) and ``crops`` (those and five 87.5 % crops
resized back). Prints per-seed and mean accuracy without / with, and the ratio.

The demo trains without augmentation, so the mirrored and cropped views are
slightly out of its training distribution: TTA can help or hurt, and this
measures which.

With ``--json FILE``, each seed appends one line; seeds already there with the
same settings are not repeated.

Usage:
    python benchmarks/tta.py [--quick] [--seeds 3] [--head-epochs 15] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MODES = ("flip", "crops")


def run_seed(seed: int, head_epochs: int, epochs: int, quick: bool) -> dict:
    """Train the demo's model with ``seed``; test accuracy without and with each TTA mode."""
    import dataclasses

    import keras

    import kerastl as ktl
    from kerastl.demo import DemoConfig, demo_splits
    from kerastl.tta import predict_dataset_tta

    base = DemoConfig.quick() if quick else DemoConfig()
    config = dataclasses.replace(base, seed=seed, head_epochs=head_epochs, epochs=epochs)
    keras.utils.set_random_seed(seed)
    splits = demo_splits(config)
    started = time.perf_counter()
    model = ktl.build_classifier(ktl.build_backbone(config.backbone,
                                                    image_size=config.image_size), 10)
    result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=config.head_epochs,
                           epochs=config.epochs, learning_rate=config.learning_rate,
                           fine_tune_learning_rate=config.fine_tune_learning_rate, verbose=0)
    row = {"seed": seed, "head_epochs": head_epochs, "epochs": epochs, "quick": quick,
           "train_seconds": time.perf_counter() - started}
    for mode in MODES:
        _, _, seconds, summary = predict_dataset_tta(result.model, splits.test, mode)
        row[mode] = {**summary, "seconds": seconds}
    row["without"] = row["flip"]["accuracy_without"]
    return row


def _done(path, settings: dict) -> dict[int, dict]:
    rows = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if all(row.get(k) == v for k, v in settings.items()):
                    rows[row["seed"]] = row
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--head-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--quick", action="store_true",
                        help="tiny data (DemoConfig.quick: 32 px, 10 images/class), 1 seed")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    head_epochs, epochs = (2, 1) if args.quick else (args.head_epochs, args.epochs)
    settings = {"head_epochs": head_epochs, "epochs": epochs, "quick": args.quick}
    done = _done(args.json, settings)
    rows = []
    for seed in range(seeds):
        row = done.get(seed) or run_seed(seed, head_epochs, epochs, args.quick)
        if seed not in done and args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"seed {seed}: without {row['without']:.4f}  flip {row['flip']['accuracy_with']:.4f}"
              f"  crops {row['crops']['accuracy_with']:.4f}  (trained {row['train_seconds']:.0f} s,"
              f" head {head_epochs} + {epochs} epochs)", flush=True)
    without = float(np.mean([r["without"] for r in rows]))
    print(f"mean over {len(rows)} seeds: without {without:.4f}")
    for mode in MODES:
        with_tta = float(np.mean([r[mode]["accuracy_with"] for r in rows]))
        views = len(rows[0][mode]["views"])
        print(f"  {mode:<5} ({views} views): {with_tta:.4f}  gain {100 * (with_tta - without):+.2f} "
              f"pp  ratio {with_tta / without:.4f}")
    best = max(np.mean([r[m]["accuracy_with"] for r in rows]) for m in MODES)
    print(f"result: tta {best / without:.4f} (target > 1: TTA raises test accuracy)")


if __name__ == "__main__":
    main()
