"""The thumbnails of :func:`kerastl.inspect`: suspected label errors and duplicate pairs."""

from __future__ import annotations

import math
import os

import numpy as np

from kerastl.reports.plots import _pyplot, _save, _short


def _show(ax, image, title: str) -> None:
    image = np.asarray(image)
    ax.imshow(np.clip(image, 0, 255).astype("uint8"), cmap="gray" if image.ndim == 2 else None)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def plot_label_errors(images, suspects: list[dict], class_names: list[str],
                      path: str | os.PathLike, *, count: int = 24) -> str:
    """A grid of the top suspects, each titled ``given -> suggested (p)``.

    Args:
        images: ``(N, H, W, 3)`` in [0, 255], indexed by each suspect's ``"index"``.
        suspects: entries of ``report["label_errors"]`` (most suspect first).
        class_names: class names by index.
        path: PNG file to write.
        count: at most this many images.
    """
    plt = _pyplot()
    shown = suspects[:count]
    cols = min(6, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, shown, strict=False):
        _show(ax, images[s["index"]],
              f"given: {_short(class_names[s['given']], 14)}\n"
              f"suggested: {_short(class_names[s['suggested']], 14)} "
              f"({s['suggested_probability']:.2f})")
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no suspected label errors", ha="center", va="center")
    fig.suptitle("Likely label errors (lowest out-of-fold probability of the given label)",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_duplicates(images, pairs: list[dict], path: str | os.PathLike, *,
                    count: int = 12) -> str:
    """Duplicate pairs side by side, titled with their splits and similarity."""
    plt = _pyplot()
    shown = pairs[:count]
    rows = max(1, len(shown))
    fig, axes = plt.subplots(rows, 2, figsize=(4.0, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for (left, right), pair in zip(axes, shown, strict=False):
        kind = "exact" if pair["exact"] else f"cos {pair['similarity']:.3f}"
        for ax, side in ((left, pair["a"]), (right, pair["b"])):
            _show(ax, images[side["index"]], f"{side['split']} #{side['split_index']} ({kind})")
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no duplicates", ha="center", va="center")
    fig.suptitle("Duplicates and near-duplicates" + (" (leaks across splits marked)"
                                                      if any(p["leak"] for p in shown) else ""),
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
