"""Sample photos shipped with kerastl, for verification, TFLite comparison and warmup requests.

Eight photos free of copyright restrictions (see ``samples/README.md``), so exporting and
verifying need nothing beyond a plain ``pip install kerastl``. Your own images are always
better: pass them as ``images=`` / ``example_images=`` (``--examples`` in the CLI).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import tensorflow as tf

SAMPLES_DIR = Path(__file__).with_name("samples")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "camera", "coins")


@lru_cache(maxsize=1)
def _decoded() -> tuple[np.ndarray, ...]:
    return tuple(tf.io.decode_jpeg((SAMPLES_DIR / f"{name}.jpg").read_bytes(),
                                   channels=3).numpy() for name in PHOTOS)


def sample_photos() -> list[np.ndarray]:
    """The shipped sample photos as ``uint8`` RGB arrays (longest side 384 px)."""
    return [p.copy() for p in _decoded()]


def resize_rounded(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize rounded to integers: the data layer's default ("stretch")."""
    out = tf.image.resize(tf.convert_to_tensor(images, tf.float32), size, method="bilinear")
    return tf.clip_by_value(tf.round(out), 0, 255).numpy().astype(np.float32)


def random_crops(photos: list[np.ndarray], count: int, min_side: int, *,
                 seed: int = 0) -> list[np.ndarray]:
    """``count`` square crops, cycling through ``photos``, at their native resolution.

    Sides are drawn between ``min_side`` and the photo's short side, so the
    crops are downscaled to the model's size, as client photos usually are.
    """
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        low = min(min_side, h, w)
        side = int(rng.integers(low, min(h, w) + 1))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crops.append(photo[top:top + side, left:left + side])
    return crops


def sample_images(count: int, size: tuple[int, int], *, seed: int = 0,
                  return_crops: bool = False):
    """Random crops of the sample photos, resized to ``size`` like the data layer.

    Returns:
        float32 ``(count, H, W, 3)`` integer-valued images in ``[0, 255]``
        (and the native-resolution ``uint8`` crops when ``return_crops``).
    """
    crops = random_crops(sample_photos(), count, max(size), seed=seed)
    images = np.stack([resize_rounded(c[None], size)[0] for c in crops])
    return (images, crops) if return_crops else images
