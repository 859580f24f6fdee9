"""Layout of the PNGs: whole-epoch ticks, no offset text, titles inside the figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from kerastl.reports.plots import _errors_figure, _history_figure, plot_history  # noqa: E402


def _inside(inner, outer, slack=0.5):
    return (inner.x0 >= outer.x0 - slack and inner.y0 >= outer.y0 - slack
            and inner.x1 <= outer.x1 + slack and inner.y1 <= outer.y1 + slack)


@pytest.mark.parametrize("epochs", [1, 2, 3, 7])
def test_curves_have_whole_epoch_ticks_and_no_offset(epochs):
    # losses near ln(3) that differ in the 5th decimal: the case that gave "1e-5+1.098"
    loss = list(1.09861 - 1e-5 * np.arange(epochs))
    history = {"epoch": list(range(1, epochs + 1)), "loss": loss,
               "val_loss": [v + 1e-5 for v in loss], "accuracy": [0.33] * epochs,
               "phase": [1] * (epochs - epochs // 2) + [2] * (epochs // 2)}
    fig = _history_figure(history)
    try:
        fig.canvas.draw()
        assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
        for ax in fig.axes:
            assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
            low, high = ax.get_xlim()
            assert (low, high) == (0.5, epochs + 0.5)
            shown = [t for t in ax.get_xticks() if low <= t <= high]
            assert shown and all(float(t).is_integer() for t in shown)
            labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            assert labels and all(text.lstrip("\u2212-").isdigit() for text in labels)
            assert ax.xaxis.get_offset_text().get_text() == ""
            assert ax.yaxis.get_offset_text().get_text() == ""
        if epochs > 1:  # the y labels carry the digits the offset used to hold
            loss_labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
            assert any(text.startswith("1.0986") for text in loss_labels), loss_labels
    finally:
        plt.close(fig)


def test_plot_history_writes_png(tmp_path):
    path = plot_history({"epoch": [1, 2], "loss": [0.9, 0.7]}, tmp_path / "c.png")
    assert path == str(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _errors(count, shape=(32, 32), names=("dandelion", "sunflowers")):
    n = 8
    images = np.random.default_rng(0).uniform(0, 255, (n, *shape, 3))
    probs = np.tile([0.9, 0.1], (n, 1))
    probs[:count] = [0.2, 0.8]
    return _errors_figure(images, probs, np.zeros(n, int), list(names), list(range(count)))


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_errors_title_is_inside_the_figure(count):
    fig = _errors(count)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        title = fig.get_suptitle()
        assert title == "Most confidently wrong predictions"
        assert _inside(fig._suptitle.get_window_extent(renderer), box)
        for ax in fig.axes[:count]:
            assert _inside(ax.title.get_window_extent(renderer), box)
            assert ax.get_title().startswith("true: dandelion\npred: sunflowers (0.80)")
    finally:
        plt.close(fig)


@pytest.mark.parametrize("count,shape", [(5, (32, 32)), (6, (64, 32)), (3, (32, 96))])
def test_errors_row_titles_do_not_overlap_the_images(count, shape):
    fig = _errors(count, shape)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        shown = fig.axes[:count]
        images = [ax.get_images()[0].get_window_extent(renderer) for ax in shown]
        titles = [ax.title.get_window_extent(renderer) for ax in shown]
        suptitle = fig._suptitle.get_window_extent(renderer)
        for t, title in enumerate(titles):
            assert _inside(title, fig.bbox)
            assert not title.overlaps(suptitle)
            for i, image in enumerate(images):
                assert not title.overlaps(image), (t, i, title, image)
            for other in titles[t + 1:]:
                assert not title.overlaps(other)
    finally:
        plt.close(fig)


def test_long_class_names_are_shortened():
    fig = _errors(1, names=("a" * 40, "b"))
    try:
        assert fig.axes[0].get_title() == "true: " + "a" * 23 + "\u2026\npred: b (0.80)"
    finally:
        plt.close(fig)
