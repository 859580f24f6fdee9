"""Plots people would rather look at than read: training curves, confusion matrices."""

from __future__ import annotations

import os
import textwrap

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> str:
    """Lay out, write the PNG and free the figure; returns the path."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return os.fspath(path)


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
    return _save(_history_figure(history, title=title), path)


def _plain_ticks(ax) -> None:
    """Whole epochs on x; y labels written out in full (no "1e-5+1.098" offset text)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)


def _history_figure(history: dict[str, list], *, title: str = "Training curves"):
    """The figure :func:`plot_history` writes (not closed: the caller saves or inspects it)."""
    plt = _pyplot()
    epochs = history.get("epoch") or list(range(1, len(history.get("loss", [])) + 1))
    metrics = [k for k in history if not k.startswith("val_")
               and k not in ("epoch", "phase", "learning_rate")]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.6),
                             squeeze=False, layout="constrained")
    phases = history.get("phase")
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, history[metric], marker="o", label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label=f"val {metric}")
        if phases and 2 in phases:
            first = epochs[phases.index(2)]
            ax.axvspan(first - 0.5, epochs[-1] + 0.5, color="tab:orange", alpha=0.08,
                       label="fine-tuning (phase 2)")
        if len(epochs):
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        _plain_ticks(ax)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


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
    return _save(fig, path)


def plot_lr_find(result, path: str | os.PathLike, *, title: str = "Learning-rate finder") -> str:
    """Loss vs learning rate (log scale) of :func:`kerastl.lr_find`, suggestions marked.

    Args:
        result: an ``LRFindResult`` (``learning_rates``, ``losses``, ``smoothed``,
            ``suggestions``, ``method``).
        path: PNG file to write.

    Returns:
        The path written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.learning_rates, result.losses, color="tab:blue", alpha=0.3, label="loss")
    ax.plot(result.learning_rates, result.smoothed, color="tab:blue", label="smoothed loss")
    markers = {"valley": "tab:red", "steepest": "tab:green", "minimum": "tab:purple"}
    lrs = np.asarray(result.learning_rates)
    for name, rate in result.suggestions.items():
        index = int(np.argmin(np.abs(np.log(lrs) - np.log(rate)))) if len(lrs) else 0
        y = result.smoothed[index] if result.smoothed else 0.0
        chosen = " (suggested)" if name == result.method else ""
        ax.plot([rate], [y], "o", color=markers.get(name, "black"),
                label=f"{name}: {rate:.2g}{chosen}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    if result.smoothed:
        low, high = min(result.smoothed), max(result.smoothed[:max(1, len(result.smoothed) // 2)])
        ax.set_ylim(low - 0.1 * abs(low), max(high, low) * 1.5 + 1e-3)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def most_confident_errors(probabilities: np.ndarray, labels: np.ndarray, *,
                          count: int = 16) -> list[int]:
    """Indices of the wrong predictions with the highest predicted probability, highest first."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    if not len(probabilities):
        return []
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][:count]]


def plot_errors(images: np.ndarray, probabilities: np.ndarray, labels: np.ndarray,
                class_names: list[str], path: str | os.PathLike, *, count: int = 16,
                title: str = "Most confidently wrong predictions") -> tuple[str, list[int]]:
    """A grid of the most confidently wrong images, each titled true / predicted (p).

    Args:
        images: the evaluated images, ``(N, H, W, 3)`` in [0, 255] (or ``(N, H, W)``).
        probabilities: ``(N, classes)`` model outputs.
        labels: ``(N,)`` integer labels (or one-hot).
        class_names: class names by index.
        path: PNG file to write.
        count: at most this many images.

    Returns:
        ``(path, indices)``: the PNG written and the indices shown (may be empty:
        the PNG then says there were no errors).
    """
    indices = most_confident_errors(probabilities, labels, count=count)
    fig = _errors_figure(images, probabilities, labels, class_names, indices, title=title)
    return _save(fig, path), indices


def _short(name: str, limit: int = 24) -> str:
    """A class name cut to ``limit`` characters so a cell title stays in its column."""
    return name if len(name) <= limit else name[:limit - 1] + "\u2026"


def _errors_figure(images, probabilities, labels, class_names, indices, *,
                   title: str = "Most confidently wrong predictions"):
    """The figure :func:`plot_errors` writes (not closed: the caller saves or inspects it).

    Each cell is as tall as its image at 2.6 inches wide plus room for the two-line
    title, so row titles never run into the images above; the figure is never narrower
    than the title.
    """
    plt = _pyplot()
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    cols = max(1, min(4, len(indices)))
    rows = max(1, -(-len(indices) // cols))
    cell = 2.6
    aspect = 1.0  # height / width of the images shown
    if len(indices):
        shape = np.shape(images[indices[0]])
        aspect = min(2.0, max(0.25, shape[0] / max(1, shape[1])))
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(max(cell * cols, 4.8), (cell * aspect + 0.55) * rows + 0.5))
    for ax in axes.ravel():
        ax.axis("off")
    if not indices:
        axes[0, 0].text(0.5, 0.5, "no errors", ha="center", va="center", fontsize=12)
    for ax, i in zip(axes.ravel(), indices):
        image = np.clip(np.asarray(images[i], dtype="float32"), 0, 255) / 255.0
        ax.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1
                  else None)
        p = probabilities[i]
        predicted = int(np.argmax(p))
        ax.set_title(f"true: {_short(class_names[int(labels[i])])}\n"
                     f"pred: {_short(class_names[predicted])} ({p[predicted]:.2f})", fontsize=8)
    fig.suptitle(title)
    return fig


def write_text_errors(texts, probabilities, labels, class_names, path, *, count: int = 12,
                      width: int = 110) -> str | None:
    """A figure of the ``count`` most confidently wrong texts: true and predicted class,
    confidence, and the start of each text. ``None`` when nothing is wrong."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels).astype(int)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    if wrong.size == 0:
        return None
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    plt = _pyplot()
    rows = len(wrong)
    fig, ax = plt.subplots(figsize=(11, 0.95 * rows + 0.9))
    ax.axis("off")
    ax.set_title(f"Most confidently wrong texts ({len(wrong)} of "
                 f"{int((predicted != labels).sum())} errors)", loc="left", fontsize=11)
    for row, i in enumerate(wrong):
        text = texts[i].decode("utf-8", "replace") if isinstance(texts[i], bytes) else texts[i]
        snippet = textwrap.shorten(" ".join(str(text).split()), width=2 * width,
                                   placeholder=" ...")
        y = 1 - (row + 0.15) / rows
        ax.text(0, y, f"true: {class_names[labels[i]]}   predicted: "
                      f"{class_names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})",
                transform=ax.transAxes, fontsize=9, fontweight="bold", va="top")
        ax.text(0, y - 0.32 / rows, "\n".join(textwrap.wrap(snippet, width)[:2]),
                transform=ax.transAxes, fontsize=8.5, va="top", family="monospace")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
