"""Quickstart: build -> freeze -> fine_tune -> export, on a slice of Fashion-MNIST.

Runs offline in a couple of minutes on a laptop CPU:

    python examples/quickstart.py --per-class 30 --image-size 64

Uses EfficientNet-Lite0 with its real ImageNet weights (kerastl[lite]) and the
Debian package dataset-fashion-mnist (or keras.datasets when online).
"""

from __future__ import annotations

import argparse

import numpy as np

import kerastl as ktl
from kerastl.data.fashion_mnist import CLASS_NAMES, few_shot_indices, load_fashion_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--export-dir", default="SavedModels")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    idx = few_shot_indices(y_train, args.per_class, seed=0)
    splits = ktl.data.from_arrays(x_train[idx], y_train[idx], image_size=args.image_size,
                                  validation_split=0.2, class_names=CLASS_NAMES)
    print(f"train/val examples: {splits.counts}")

    backbone = ktl.build_backbone("efficientnet_lite0", image_size=args.image_size)
    model = ktl.build_classifier(backbone, splits.num_classes, dropout=0.2)
    ktl.freeze(model)
    for row in ktl.trainable_report(model):
        print(f"  {row['group']:<8} trainable {row['trainable_params']:>9,} / "
              f"{row['total_params']:>9,}")

    result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=8, epochs=3,
                           unfreeze={"groups": 3})
    print("best epoch:", {k: round(v, 4) for k, v in result.best_val_metrics.items()})

    test_idx = few_shot_indices(y_test, 50, seed=1)
    test = ktl.data.from_arrays(x_test[test_idx], y_test[test_idx], image_size=args.image_size,
                                validation_split=0.0, class_names=CLASS_NAMES).train
    batches = [(result.model.predict(x, verbose=0), y.numpy()) for x, y in test]  # one pass
    probs = np.concatenate([p for p, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    print(f"test accuracy on {len(labels)} images: {np.mean(probs.argmax(1) == labels):.4f}")

    path = ktl.export_saved_model(result.model, args.export_dir, name="fashion_quickstart",
                                  class_names=CLASS_NAMES)
    print(f"exported for TF Serving: {path}")


if __name__ == "__main__":
    main()
