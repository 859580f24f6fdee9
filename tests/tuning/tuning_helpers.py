"""Helpers of the tuning tests: 32 px images, 3 separable classes."""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

TINY_BACKBONE = "mobilenet_v3_small"


def tiny_arrays(n: int = 36, seed: int = 0):
    """Images whose class sets their mean brightness (so accuracy can rise above chance)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3).astype("int32")
    x = rng.uniform(0, 60, size=(n, 32, 32, 3)) + 90.0 * y[:, None, None, None]
    x = x.astype("float32")
    return x, y


def tiny_datasets():
    """(train, val): 24 and 12 images in batches of 12."""
    x, y = tiny_arrays()
    train = tf.data.Dataset.from_tensor_slices((x[:24], y[:24])).batch(12)
    val = tf.data.Dataset.from_tensor_slices((x[24:], y[24:])).batch(12)
    return train, val


def write_image_folder(root: pathlib.Path, per_class: int = 8) -> pathlib.Path:
    """A class-per-subfolder PNG folder from :func:`tiny_arrays`."""
    from PIL import Image

    x, y = tiny_arrays(3 * per_class)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.clip(0, 255).astype("uint8")).save(folder / f"{i:03d}.png")
    return root


def write_config(path: pathlib.Path, data_dir: pathlib.Path, directory: pathlib.Path,
                 **overrides) -> pathlib.Path:
    """A small random-search YAML config over the tiny backbone (weights none, 1 epoch)."""
    import yaml

    config = {
        "project_name": "tiny", "directory": str(directory), "tuner": "random",
        "max_trials": 4, "max_epochs": 1, "seed": 3, "weights": "none",
        "backbones": [TINY_BACKBONE],
        "space": {"learning_rate": {"min": 1.0e-4, "max": 1.0e-2, "sampling": "log"},
                  "head_units": [0, 16, 32]},
        "fixed": {"augmentation": "none"},
        "data": {"source": "folder", "path": str(data_dir), "image_size": 32,
                 "batch_size": 8, "validation_split": 0.25, "seed": 0},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path
