"""Fashion-MNIST for the demo and benchmarks: offline from Debian, online from Keras.

Order of sources: ``$KERASTL_FASHION_MNIST_DIR`` or the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), then
``keras.datasets.fashion_mnist`` (downloads when online).
"""

from __future__ import annotations

import gzip
import logging
import os
import pathlib

import numpy as np

from kerastl.errors import DataError

log = logging.getLogger(__name__)

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def _read_idx(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} is not an IDX ubyte file")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated")
    return array.reshape(dims)


def load_fashion_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)``: uint8 28x28 images, int labels.

    Raises:
        DataError: no local copy and the download failed; the message says
            how to install the Debian package.
    """
    folder = pathlib.Path(os.environ.get("KERASTL_FASHION_MNIST_DIR", DEBIAN_DIR))
    if all((folder / f).is_file() for f in _FILES.values()):
        arrays = {k: _read_idx(folder / f) for k, f in _FILES.items()}
        log.info("Fashion-MNIST from %s", folder)
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    try:
        import keras

        log.info("Fashion-MNIST not found in %s; trying keras.datasets (download)", folder)
        return keras.datasets.fashion_mnist.load_data()
    except Exception as err:  # keras raises a bare Exception on download failure
        raise DataError(
            f"Fashion-MNIST is not available: no files in {folder} and the download failed "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). Offline, install "
            "the Debian package: apt-get install dataset-fashion-mnist (or set "
            "KERASTL_FASHION_MNIST_DIR to a folder with the four .gz files)."
        ) from err


def few_shot_indices(labels: np.ndarray, per_class: int, *, seed: int,
                     exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    taken = np.zeros(len(labels), dtype=bool)
    if exclude is not None:
        taken[exclude] = True
    picked = []
    for cls in np.unique(labels):
        candidates = np.flatnonzero((labels == cls) & ~taken)
        if len(candidates) < per_class:
            raise DataError(f"Class {cls} has only {len(candidates)} examples left; "
                            f"{per_class} were asked for")
        picked.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))
