"""Plots people would rather look at than read: training curves, confusion matrices."""

from __future__ import annotations

import os

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict[str, list], path: str | os.PathLike, *,
                 title: str = "Training curves") -> str:
    """Loss and metric curves by epoch, with the fine-tuning phase shaded.

    Args:
        history: merged history from :class:`FineTuneResult` (needs ``epoch``;
            ``phase`` optional).
        path: PNG file to write.

    Returns:
        The path written.
    """
    plt = _pyplot()
    epochs = history.get("epoch") or list(range(1, len(history.get("loss", [])) + 1))
    metrics = [k for k in history if not k.startswith("val_")
               and k not in ("epoch", "phase", "learning_rate")]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.6),
                             squeeze=False)
    phases = history.get("phase")
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, history[metric], marker="o", label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label=f"val {metric}")
        if phases and 2 in phases:
            first = epochs[phases.index(2)]
            ax.axvspan(first - 0.5, epochs[-1] + 0.5, color="tab:orange", alpha=0.08,
                       label="fine-tuning (phase 2)")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str],
                          path: str | os.PathLike, *, title: str = "Confusion matrix") -> str:
    """Row-normalised confusion matrix with counts written in each cell."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    totals = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
