"""Test-time augmentation: average a classifier's probabilities over fixed views of each image.

The views are deterministic (no randomness, the same answer every time):

==========  =====================================================================
``"flip"``  the image and its horizontal (left-right) mirror: 2 views
``"crops"`` the two views of ``"flip"``, then five crops of 87.5 % of each side
            (the centre and the four corners), each resized back to the model's
            size with bilinear interpolation: 7 views
==========  =====================================================================

``tta=True`` in :func:`kerastl.predict` / :func:`kerastl.evaluate` means ``"flip"``.
The probabilities of all views are averaged with equal weights.
"""

from __future__ import annotations

import numpy as np

from kerastl.errors import UserInputError

MODES = ("flip", "crops")
#: Side of the five crops of ``"crops"``, as a fraction of the image's side.
CROP_FRACTION = 0.875


def tta_mode(tta) -> str | None:
    """``None`` (off), ``"flip"`` or ``"crops"`` from ``tta`` (``False``/``None``, ``True``
    = ``"flip"``, or a mode name)."""
    if tta is None or tta is False:
        return None
    if tta is True:
        return "flip"
    if tta in MODES:
        return tta
    raise UserInputError(f"tta must be True, False, 'flip' or 'crops'. Received: tta={tta!r}")


def view_names(mode: str) -> list[str]:
    """The views of ``mode``, in the order :func:`tta_views` makes them."""
    names = ["identity", "horizontal_flip"]
    if tta_mode(mode) == "crops":
        names += [f"crop_{where}" for where in ("centre", "top_left", "top_right",
                                                "bottom_left", "bottom_right")]
    return names


def tta_views(images, mode: str = "flip") -> list:
    """The views of a batch of images ``(N, H, W, C)`` (tensors or arrays), each ``(N, H, W, C)``."""
    import tensorflow as tf

    mode = tta_mode(mode)
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    if images.shape.rank != 4:
        raise UserInputError(f"Test-time augmentation takes images (N, H, W, C). "
                             f"Received shape {tuple(images.shape)}")
    views = [images, tf.reverse(images, axis=[2])]
    if mode == "crops":
        height, width = int(images.shape[1]), int(images.shape[2])
        ch, cw = max(1, round(height * CROP_FRACTION)), max(1, round(width * CROP_FRACTION))
        centre = ((height - ch) // 2, (width - cw) // 2)
        corners = (centre, (0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw))
        for top, left in corners:
            crop = images[:, top:top + ch, left:left + cw, :]
            views.append(tf.image.resize(crop, (height, width), method="bilinear"))
    return views


def _outputs(model, view) -> np.ndarray:
    """``model``'s outputs on one view, through its compiled predict step (float64)."""
    return np.asarray(model.predict_on_batch(view), dtype=np.float64)


def predict_tta(model, images, mode="flip") -> np.ndarray:
    """The mean of ``model``'s outputs over the views of one batch of ``images``."""
    outputs = [_outputs(model, view) for view in tta_views(images, mode)]
    return (sum(outputs) / len(outputs)).astype(np.float32)


def predict_dataset_tta(model, dataset, tta="flip") -> tuple[np.ndarray, np.ndarray, float, dict]:
    """``(averaged probabilities, labels, seconds, summary)`` over ``(images, labels)`` batches.

    The summary holds the views and the top-1 accuracy with the image alone (the
    first view, from the same pass) and with the views averaged, and the gain.
    """
    import time

    mode = tta_mode(tta)
    if mode is None:
        raise UserInputError("predict_dataset_tta needs tta=True, 'flip' or 'crops'.")
    averaged, plain, labels = [], [], []
    start = time.perf_counter()
    for batch in dataset:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise UserInputError("The dataset must yield (images, labels) batches.")
        if getattr(batch[0], "dtype", None) == "string":
            raise UserInputError("Test-time augmentation flips and crops images; a text "
                                 "model has none. Leave --tta out.")
        outputs = [_outputs(model, view) for view in tta_views(batch[0], mode)]
        plain.append(outputs[0].astype(np.float32))
        averaged.append((sum(outputs) / len(outputs)).astype(np.float32))
        labels.append(np.asarray(batch[1]))
    seconds = time.perf_counter() - start
    if not averaged:
        raise UserInputError("The dataset to evaluate is empty.")
    probs, plain, labels = np.concatenate(averaged), np.concatenate(plain), np.concatenate(labels)
    flat = labels.argmax(axis=1) if labels.ndim == 2 else labels
    without = float(np.mean(plain.argmax(axis=1) == flat))
    with_tta = float(np.mean(probs.argmax(axis=1) == flat))
    return probs, labels, seconds, {"mode": mode, "views": view_names(mode),
                                    "accuracy_without": without, "accuracy_with": with_tta,
                                    "gain": with_tta - without}
