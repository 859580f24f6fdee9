"""The demo: EfficientNet-Lite0 (real ImageNet weights) fine-tuned on few-shot Fashion-MNIST.

100 training images per class (seeded), 50 per class for validation (other
training images), and 2,000 images of the official test split (200 per
class) for the reported test accuracy.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from kerastl.data.arrays import from_arrays
from kerastl.data.fashion_mnist import CLASS_NAMES, few_shot_indices, load_fashion_mnist
from kerastl.data.splits import Splits
from kerastl.training.run import claim_free_dir, train_and_report

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo; ``quick()`` is the seconds-long variant used by tests."""

    backbone: str = "efficientnet_lite0"
    image_size: int = 96
    train_per_class: int = 100
    val_per_class: int = 50
    test_per_class: int = 200
    batch_size: int = 32
    head_epochs: int = 15
    epochs: int = 6
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    seed: int = 0
    deterministic: bool = True  # ordered data: repeatable runs, comparable benchmarks

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(image_size=32, train_per_class=10, val_per_class=5, test_per_class=10,
                   head_epochs=2, epochs=1)


def _dataset(x: np.ndarray, y: np.ndarray, config: DemoConfig, *,
             shuffle: bool) -> tf.data.Dataset:
    """One split through kerastl's own array pipeline (greyscale -> RGB, resize, cache)."""
    return from_arrays(x, y, image_size=config.image_size, batch_size=config.batch_size,
                       validation_split=0, class_names=CLASS_NAMES, seed=config.seed,
                       shuffle=shuffle, deterministic=config.deterministic or not shuffle).train


def demo_splits(config: DemoConfig) -> Splits:
    """The few-shot Fashion-MNIST splits of the demo (offline from Debian's package)."""
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    train_idx = few_shot_indices(y_train, config.train_per_class, seed=config.seed)
    val_idx = few_shot_indices(y_train, config.val_per_class, seed=config.seed + 1,
                               exclude=train_idx)
    test_idx = few_shot_indices(y_test, config.test_per_class, seed=config.seed + 2)
    size = config.image_size
    return Splits(
        train=_dataset(x_train[train_idx], y_train[train_idx], config, shuffle=True),
        val=_dataset(x_train[val_idx], y_train[val_idx], config, shuffle=False),
        test=_dataset(x_test[test_idx], y_test[test_idx], config, shuffle=False),
        class_names=list(CLASS_NAMES),
        counts={"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
        image_size=(size, size),
    )


def run_demo(output: str | os.PathLike | None = None, *, config: DemoConfig | None = None,
             verbose="auto") -> dict:
    """Run the demo end to end; returns the report (see ``train_and_report``)."""
    import keras

    config = config or DemoConfig()
    keras.utils.set_random_seed(config.seed)
    output = output or claim_free_dir("runs/demo")
    log.info("kerastl demo: %s (ImageNet weights) on Fashion-MNIST, %d images/class, %d px",
             config.backbone, config.train_per_class, config.image_size)
    splits = demo_splits(config)
    return train_and_report(
        splits, backbone=config.backbone, output=output, head_epochs=config.head_epochs,
        epochs=config.epochs, learning_rate=config.learning_rate,
        fine_tune_learning_rate=config.fine_tune_learning_rate, verbose=verbose,
        config=dataclasses.asdict(config),
    )
