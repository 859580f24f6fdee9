"""Temperature scaling: calibrated probabilities with no new layer (Guo et al., 2017).

:func:`calibrate` fits one temperature ``T > 0`` on a validation split by
minimising the negative log-likelihood of ``softmax(logits / T)``, then folds
it into the model: the ``"predictions"`` Dense layer's kernel and bias are
divided by ``T``. That is exact, ``softmax((xW + b) / T) = softmax(x(W/T) + b/T)``,
so the calibrated model saved to ``.keras`` or exported with
:func:`kerastl.export_saved_model` serves calibrated probabilities as it is.
The top-1 class never changes (dividing logits by ``T > 0`` keeps their order).

The logits are computed exactly: the input of the ``"predictions"`` layer
(a sub-model of the classifier) times its kernel plus its bias, in float64,
never ``log`` of the probabilities.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kerastl.errors import UserInputError

#: Bins of the expected calibration error (equal-width confidence bins).
ECE_BINS = 15
#: Where the temperature is searched (a fitted value at a bound is logged in the report).
T_BOUNDS = (0.01, 100.0)


@dataclasses.dataclass
class CalibrationResult:
    """What :func:`calibrate` fitted and measured on the validation split.

    Attributes:
        model: the calibrated model (a copy unless ``in_place=True``).
        temperature: the fitted ``T`` (> 1: the model was over-confident).
        ece_before, ece_after: expected calibration error (``bins`` bins).
        nll_before, nll_after: mean negative log-likelihood.
        accuracy: top-1 accuracy (the same before and after).
        examples: validation examples the temperature was fitted on.
        bins: bins of the ECE.
        plot: the reliability diagram written, or ``None``.
    """

    model: object
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    accuracy: float
    examples: int
    bins: int = ECE_BINS
    plot: str | None = None

    def to_dict(self) -> dict:
        """The figures as JSON-ready values (no model)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in out.items()}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, *,
                               bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width confidence bins of ``|accuracy - confidence| * share``.

    Args:
        probabilities: ``(N, classes)``.
        labels: ``(N,)`` integer labels.
        bins: number of bins over ``[0, 1]`` (a confidence of exactly 1 falls in the last).

    Returns:
        The ECE, in ``[0, 1]``.
    """
    stats = reliability_bins(probabilities, labels, bins=bins)
    total = stats["count"].sum()
    gaps = np.abs(stats["accuracy"] - stats["confidence"]) * stats["count"]
    return float(np.nansum(gaps) / total) if total else 0.0


def reliability_bins(probabilities, labels, *, bins: int = ECE_BINS) -> dict:
    """Per bin: ``count``, mean ``confidence`` and ``accuracy`` (NaN for an empty bin)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = _int_labels(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / count
        accuracy = np.bincount(which, correct.astype(np.float64), minlength=bins) / count
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy,
            "edges": np.linspace(0.0, 1.0, bins + 1)}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in :data:`T_BOUNDS` minimising the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1 / T``, so a bounded scalar search on ``log T`` finds
    its minimum.
    """
    from scipy.optimize import minimize_scalar

    labels = _int_labels(labels)
    found = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                            bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def predictions_layer(model):
    """The model's softmax ``"predictions"`` Dense layer (the one temperature scaling folds into).

    Raises:
        UserInputError: no such layer, or not a softmax Dense layer.
    """
    import keras

    try:
        layer = model.get_layer("predictions")
    except ValueError:
        layer = None
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if not isinstance(layer, keras.layers.Dense) or activation != "softmax":
        raise UserInputError(
            "Temperature scaling needs a softmax classifier whose last layer is a Dense layer "
            "named 'predictions' (as ktl.build_classifier builds). Received: model "
            f"'{getattr(model, 'name', model)}' with "
            f"{'no such layer' if layer is None else f'{type(layer).__name__}({activation})'}")
    return layer


def logits_and_labels(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Exact pre-softmax logits (float64) and integer labels over ``(inputs, labels)`` batches."""
    import keras

    layer = predictions_layer(model)
    features = keras.Model(model.inputs, layer.input)
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    bias = (np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias
            else np.zeros(kernel.shape[1]))
    logits, labels = [], []
    for batch in dataset:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise UserInputError("The validation dataset must yield (inputs, labels) batches.")
        x = np.asarray(keras.ops.convert_to_numpy(features(batch[0], training=False)),
                       dtype=np.float64)
        logits.append(x @ kernel + bias)
        labels.append(_int_labels(np.asarray(batch[1])))
    if not logits:
        raise UserInputError("The validation dataset is empty: nothing to calibrate on.")
    return np.concatenate(logits), np.concatenate(labels)


def fold_temperature(model, temperature: float) -> None:
    """Divide the ``"predictions"`` layer's kernel and bias by ``temperature``, in place."""
    if not temperature > 0:
        raise UserInputError(f"temperature must be > 0. Received: {temperature!r}")
    layer = predictions_layer(model)
    layer.kernel.assign(layer.kernel.numpy() / np.float32(temperature))
    if layer.use_bias:
        layer.bias.assign(layer.bias.numpy() / np.float32(temperature))


def copy_model(model):
    """A new model of the same config with the same weights (kerastl's task models keep
    their contract: class names, resize, image size)."""
    import keras

    twin = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    twin.set_weights(model.get_weights())
    return twin


def calibrate(model, val_dataset, *, in_place: bool = False, bins: int = ECE_BINS,
              plot: str | os.PathLike | None = None) -> CalibrationResult:
    """Fit a temperature on ``val_dataset`` and fold it into the classifier's last layer.

    Args:
        model: a softmax classifier with a Dense ``"predictions"`` layer (image or
            text task models from :func:`kerastl.build_classifier` and
            :func:`kerastl.text.build_text_classifier`).
        val_dataset: ``(inputs, int or one-hot labels)`` batches, held out from training.
        in_place: change ``model`` itself; default: a calibrated copy, ``model`` untouched.
        bins: bins of the expected calibration error.
        plot: a PNG path for the reliability diagram (before / after), or ``None``.

    Returns:
        A :class:`CalibrationResult`: the calibrated model, ``temperature`` and the
        ECE and NLL before and after on ``val_dataset``.

    Raises:
        UserInputError: not a softmax classifier, or an empty dataset.

    Example:
        >>> result = ktl.calibrate(model, splits.val, plot="reliability.png")
        >>> result.temperature, result.ece_before, result.ece_after
        >>> result.model.save("model.calibrated.keras")
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise UserInputError(f"bins must be a positive int. Received: bins={bins!r}")
    logits, labels = logits_and_labels(model, val_dataset)
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits / temperature)
    calibrated = model if in_place else copy_model(model)
    fold_temperature(calibrated, temperature)
    written = None
    if plot is not None:
        written = plot_reliability(before, after, labels, plot, bins=bins,
                                   title=f"Temperature scaling (T = {temperature:.3f})")
    return CalibrationResult(
        model=calibrated, temperature=temperature,
        ece_before=expected_calibration_error(before, labels, bins=bins),
        ece_after=expected_calibration_error(after, labels, bins=bins),
        nll_before=nll(logits, labels), nll_after=nll(logits, labels, temperature),
        accuracy=float(np.mean(before.argmax(axis=1) == labels)), examples=int(len(labels)),
        bins=bins, plot=written)


def plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray,
                     path: str | os.PathLike, *, bins: int = ECE_BINS,
                     title: str = "Reliability diagram") -> str:
    """Two reliability diagrams side by side (before / after): accuracy per confidence bin
    against the diagonal of perfect calibration, with each panel's ECE."""
    from kerastl.reports.plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharey=True)
    for ax, probs, name in zip(axes, (before, after), ("before", "after"), strict=True):
        stats = reliability_bins(probs, labels, bins=bins)
        width = 1.0 / bins
        centres = stats["edges"][:-1] + width / 2
        filled = stats["count"] > 0
        ax.bar(centres[filled], stats["accuracy"][filled], width=width * 0.95,
               color="tab:blue", edgecolor="black", linewidth=0.4, label="accuracy")
        ax.plot(centres[filled], stats["confidence"][filled], "o", color="tab:red",
                markersize=4, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ece = expected_calibration_error(probs, labels, bins=bins)
        ax.set_title(f"{name}: ECE {ece:.4f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def _int_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    return labels.argmax(axis=-1) if labels.ndim == 2 else labels.astype(np.int64).reshape(-1)


RELIABILITY_FILE = "reliability.png"


def calibrated_model_path(model_path):
    """``model.keras`` -> ``model.calibrated.keras`` in the same folder (never the input)."""
    import pathlib

    path = pathlib.Path(model_path)
    return path.with_name(f"{path.name.removesuffix('.keras')}.calibrated.keras")


def split_calibration(model, dataset, temperature: float, *, bins: int = ECE_BINS) -> dict:
    """ECE and NLL of ``model`` on ``dataset`` before and after dividing its logits by
    ``temperature`` (``model`` is the uncalibrated one)."""
    logits, labels = logits_and_labels(model, dataset)
    before, after = softmax(logits), softmax(logits / temperature)
    return {"examples": int(len(labels)),
            "ece_before": expected_calibration_error(before, labels, bins=bins),
            "ece_after": expected_calibration_error(after, labels, bins=bins),
            "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature)}
