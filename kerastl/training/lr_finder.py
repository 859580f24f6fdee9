"""Learning-rate finder: an exponential sweep of the rate, as fastai's ``lr_find``.

Train for up to ``num_steps`` mini-batches while the rate grows
exponentially from ``start_lr`` to ``end_lr``, record the loss of each
batch, smooth it (exponential moving average with bias correction), stop
when it diverges, suggest a rate, and put the model's weights back exactly
as they were. The model's own compiled optimizer is never touched.

Suggestions (fastai's names): ``valley`` (default; the middle of the longest
steadily falling stretch), ``steepest`` (steepest descent of the smoothed
loss) and ``minimum`` (the rate at the lowest smoothed loss, / 10).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from kerastl.errors import UserInputError

log = logging.getLogger(__name__)

SUGGESTIONS = ("valley", "steepest", "minimum")


@dataclasses.dataclass
class LRFindResult:
    """What :func:`lr_find` returns.

    Attributes:
        learning_rates: the rate of each step taken.
        losses: the raw loss of each step.
        smoothed: the smoothed loss of each step.
        suggestion: the suggested rate (by ``method``).
        suggestions: every method's suggestion, ``{name: rate}``.
        method: the method behind ``suggestion``.
        plot: the PNG written, or None.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    suggestions: dict[str, float]
    method: str = "valley"
    plot: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(name, value, low=0.0):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= low:
        raise UserInputError(f"{name} must be a finite number > {low}. Received: {name}={value!r}")


def _suggest(lrs: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
    n = len(lrs)
    log_lrs = np.log10(lrs)
    slopes = np.gradient(smoothed, log_lrs) if n > 2 else np.zeros(n)
    steepest = float(lrs[int(np.argmin(slopes))])
    minimum = float(lrs[int(np.argmin(smoothed))] / 10)
    # valley: longest increasing run of "loss still going down" counted backwards,
    # i.e. the longest stretch where the smoothed loss keeps decreasing; take its middle.
    best_len, best_start, start = 0, 0, 0
    for i in range(1, n + 1):
        if i == n or smoothed[i] >= smoothed[i - 1]:
            if i - start > best_len:
                best_len, best_start = i - start, start
            start = i
    if best_len >= 3:
        mid = best_start + (best_len * 2) // 3  # fastai takes 2/3 down the valley
        valley = float(lrs[min(mid, n - 1)])
    else:
        valley = steepest
    return {"valley": valley, "steepest": steepest, "minimum": minimum}


def lr_find(model: keras.Model, train, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, optimizer: str = "adam", loss=None, beta: float = 0.98,
            diverge: float = 4.0, method: str = "valley", plot: str | os.PathLike | None = None,
            verbose: bool = False) -> LRFindResult:
    """Sweep the learning rate exponentially and suggest one; the weights are restored.

    Trains whatever is trainable in ``model`` now (freeze or unfreeze it first
    to match the phase you are choosing a rate for).

    Args:
        model: a Keras model; it may or may not be compiled.
        train: dataset of ``(inputs, labels)`` batches; repeated as needed.
        start_lr: first rate.
        end_lr: last rate (reached at ``num_steps``).
        num_steps: mini-batches in the sweep.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``... (a fresh one; see ``make_optimizer``).
        loss: a Keras loss; default chosen from the model's head and labels.
        beta: smoothing factor of the loss's moving average.
        diverge: stop once the smoothed loss exceeds ``diverge`` x its minimum.
        method: which suggestion to return: ``"valley"``, ``"steepest"`` or ``"minimum"``.
        plot: write the loss-vs-rate plot (PNG) here.
        verbose: log each step.

    Returns:
        An :class:`LRFindResult`.

    Raises:
        ValueError: bad arguments, an empty dataset, or a loss that is not
            finite from the first step.
    """
    from kerastl.training.fine_tune import default_loss_and_metrics, make_optimizer

    _check("start_lr", start_lr)
    _check("end_lr", end_lr, low=start_lr)
    _check("diverge", diverge, low=1.0)
    if not 0 <= beta < 1:
        raise UserInputError(f"beta must be in [0, 1). Received: beta={beta!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 5:
        raise UserInputError(f"num_steps must be an int >= 5. Received: num_steps={num_steps!r}")
    if method not in SUGGESTIONS:
        raise UserInputError(
            f"Unknown method '{method}'. Known: {', '.join(SUGGESTIONS)}. Received: {method!r}")
    if loss is None:
        loss, _ = default_loss_and_metrics(model, train)
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    variables = list(model.trainable_variables)
    if not variables:
        raise UserInputError(f"Model '{model.name}' has no trainable weights: unfreeze "
                             "something before looking for a learning rate.")
    saved = model.get_weights()
    opt = make_optimizer(optimizer, start_lr)
    factor = (end_lr / start_lr) ** (1 / (num_steps - 1))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            value = tf.reduce_mean(loss_fn(y, pred))
            if model.losses:
                value = value + tf.add_n(model.losses)
        grads = tape.gradient(value, variables)
        opt.apply(grads, variables)
        return value

    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    try:
        batches = iter(train.repeat())
        for i in range(num_steps):
            lr = start_lr * factor ** i
            opt.learning_rate = lr
            try:
                x, y = next(batches)[:2]
            except StopIteration:
                raise UserInputError("The training dataset is empty.") from None
            value = float(step(x, y))
            if not math.isfinite(value):
                if i == 0:
                    raise UserInputError(
                        f"The loss is not finite at the first step (lr={start_lr:g}); check the "
                        "data and the model before looking for a learning rate.")
                break
            avg = beta * avg + (1 - beta) * value
            smooth = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            best = min(best, smooth)
            if verbose:
                log.info("lr_find step %d: lr=%.3g loss=%.4f smoothed=%.4f", i + 1, lr, value,
                         smooth)
            if i > 0 and smooth > diverge * best:
                break
    finally:
        model.set_weights(saved)
    # Skip the last steps, where the loss has started to explode (fastai does the same).
    keep = max(3, len(lrs) - 2) if len(lrs) > 8 else len(lrs)
    suggestions = _suggest(np.array(lrs[:keep]), np.array(smoothed[:keep]))
    result = LRFindResult(lrs, losses, smoothed, suggestions[method], suggestions, method)
    if plot is not None:
        from kerastl.reports.plots import plot_lr_find

        result.plot = plot_lr_find(result, plot)
    log.info("lr_find: suggested learning rate %.3g (%s)", result.suggestion, method)
    return result
