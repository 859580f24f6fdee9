"""Learning-rate schedules: one-cycle, cosine with warmup, constant.

Each is a ``keras.optimizers.schedules.LearningRateSchedule`` (serialisable:
cosine is Keras's own ``CosineDecay``, one-cycle is registered under the
``kerastl`` package), usable anywhere Keras takes a
``learning_rate=``. Steps count optimizer updates, not epochs:
``total_steps = epochs * steps_per_epoch``.

Example:
    >>> sched = ktl.training.schedules.make_schedule("onecycle", 1e-3, total_steps=300)
    >>> model.compile(optimizer=keras.optimizers.Adam(sched), loss=...)
"""

from __future__ import annotations

import math

import keras
from keras import ops

from kerastl.defaults import DEFAULT_SCHEDULE as DEFAULT_SCHEDULE
from kerastl.defaults import SCHEDULES
from kerastl.errors import UserInputError


def _check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise UserInputError(f"{name} must be a finite number {bound}. Received: {name}={value!r}")
    return float(value)


def _check_fraction(name: str, value) -> float:
    value = _check_positive(name, value, allow_zero=True)
    if value >= 1:
        raise UserInputError(f"{name} must be in [0, 1). Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="kerastl")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle policy as fastai uses it (cosine warm-up then cosine annealing).

    The rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of ``total_steps``, then falls to
    ``max_lr / (div_factor * final_div_factor)``; after ``total_steps`` it
    stays at that final rate.

    Args:
        max_lr: peak learning rate.
        total_steps: optimizer steps the cycle spans.
        pct_start: fraction of the steps spent warming up.
        div_factor: initial rate is ``max_lr / div_factor``.
        final_div_factor: final rate is the initial rate / ``final_div_factor``.
    """

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.25,
                 div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.max_lr = _check_positive("max_lr", max_lr)
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise UserInputError(f"total_steps must be an int >= 1. Received: {total_steps!r}")
        self.total_steps = total_steps
        self.pct_start = _check_fraction("pct_start", pct_start)
        self.div_factor = _check_positive("div_factor", div_factor)
        self.final_div_factor = _check_positive("final_div_factor", final_div_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        warm = max(1.0, round(self.pct_start * self.total_steps))
        anneal = max(1.0, self.total_steps - warm)
        up = ops.minimum(step / warm, 1.0)
        down = ops.clip((step - warm) / anneal, 0.0, 1.0)
        rising = start + (self.max_lr - start) * (1 - ops.cos(math.pi * up)) / 2
        falling = end + (self.max_lr - end) * (1 + ops.cos(math.pi * down)) / 2
        return ops.where(step < warm, rising, falling) if self.pct_start > 0 else falling

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor}


def _check_steps(total_steps, warmup_steps) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise UserInputError(f"total_steps must be an int >= 1. Received: {total_steps!r}")
    if (isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int)
            or not 0 <= warmup_steps < total_steps):
        raise UserInputError(
            f"warmup_steps must be an int in [0, total_steps={total_steps}). "
            f"Received: {warmup_steps!r}")


def _cosine_decay_args(base_lr: float, total_steps: int, warmup_steps: int,
                       min_ratio: float) -> dict:
    """``CosineDecay`` arguments for: linear warm-up from ``base_lr / (warmup_steps + 1)``
    at step 0 to ``base_lr`` at ``warmup_steps``, then cosine decay to ``base_lr * min_ratio``
    at ``total_steps``."""
    if not warmup_steps:
        return {"initial_learning_rate": base_lr, "decay_steps": total_steps,
                "alpha": min_ratio}
    return {"initial_learning_rate": base_lr / (warmup_steps + 1),
            "decay_steps": total_steps - warmup_steps, "alpha": min_ratio,
            "warmup_target": base_lr, "warmup_steps": warmup_steps}


def warmup_cosine(base_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_ratio: float = 0.0) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up to ``base_lr``, then cosine decay to ``base_lr * min_ratio``.

    Keras's own ``CosineDecay`` (with ``warmup_target``/``warmup_steps``), so a saved
    model's optimizer needs nothing from kerastl to load. The rate at step ``s`` is
    ``base_lr * (s + 1) / (warmup_steps + 1)`` during the warm-up, then
    ``low + (base_lr - low) * (1 + cos(pi * p)) / 2`` with ``low = base_lr * min_ratio``
    and ``p = (s - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1].

    Args:
        base_lr: rate reached at the end of the warm-up.
        total_steps: optimizer steps in all (warm-up included).
        warmup_steps: steps of linear warm-up (0: none).
        min_ratio: final rate as a fraction of ``base_lr``.

    Raises:
        ValueError: a bad rate, step count or ratio.
    """
    base_lr = _check_positive("base_lr", base_lr)
    _check_steps(total_steps, warmup_steps)
    min_ratio = _check_fraction("min_ratio", min_ratio)
    return keras.optimizers.schedules.CosineDecay(
        **_cosine_decay_args(base_lr, total_steps, warmup_steps, min_ratio))


@keras.saving.register_keras_serializable(package="kerastl")
class WarmupCosine(keras.optimizers.schedules.CosineDecay):
    """:func:`warmup_cosine` under its former class name and arguments.

    Kept so code that builds ``WarmupCosine(...)`` and ``.keras`` files saved before
    ``make_schedule("cosine")`` returned Keras's ``CosineDecay`` (they name
    ``kerastl>WarmupCosine`` with ``base_lr``/``total_steps``/``warmup_steps``/
    ``min_ratio``) keep working. The rates are Keras's ``CosineDecay``'s.

    Args:
        base_lr: rate reached at the end of the warm-up.
        total_steps: optimizer steps in all (warm-up included).
        warmup_steps: steps of linear warm-up (0: none).
        min_ratio: final rate as a fraction of ``base_lr``.
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_ratio: float = 0.0):
        base_lr = _check_positive("base_lr", base_lr)
        _check_steps(total_steps, warmup_steps)
        min_ratio = _check_fraction("min_ratio", min_ratio)
        super().__init__(**_cosine_decay_args(base_lr, total_steps, warmup_steps, min_ratio))
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_ratio": self.min_ratio}


#: Longest schedule: more steps are clipped to this (int32 steps, float32 fractions).
MAX_SCHEDULE_STEPS = 2**31 - 1


def make_schedule(name: str, learning_rate: float, *, total_steps: int | None = None,
                  warmup: float = 0.1):
    """A learning rate for ``name``: ``"constant"``, ``"onecycle"`` or ``"cosine"``.

    Args:
        name: schedule name.
        learning_rate: the constant rate, the one-cycle peak, or the cosine base rate.
        total_steps: optimizer steps the schedule spans (required unless constant).
        warmup: fraction of ``total_steps`` spent warming up (one-cycle ``pct_start``,
            cosine warm-up).

    Returns:
        A float (constant), a :class:`OneCycle`, or (cosine) Keras's ``CosineDecay``
        with warm-up (see :func:`warmup_cosine`).

    Raises:
        ValueError: unknown name, or a bad rate / step count.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    learning_rate = _check_positive("learning_rate", learning_rate)
    if key == "constant":
        return learning_rate
    if key not in ("onecycle", "cosine"):
        raise UserInputError(
            f"Unknown schedule '{name}'. Known: {', '.join(SCHEDULES)}. Received: {name!r}")
    if total_steps is None:
        raise UserInputError(f"The '{name}' schedule needs total_steps (epochs x steps/epoch).")
    warmup = _check_fraction("warmup", warmup)
    if isinstance(total_steps, int) and not isinstance(total_steps, bool):
        # e.g. epochs=10**20 (stopped early): the schedule's step counts are tensors,
        # and a cosine over 2**31 steps is flat for any run that ends.
        total_steps = min(total_steps, MAX_SCHEDULE_STEPS)
    if key == "onecycle":
        return OneCycle(learning_rate, total_steps, pct_start=warmup)
    return warmup_cosine(learning_rate, total_steps, warmup_steps=int(warmup * total_steps))


def current_rate(optimizer) -> float:
    """The optimizer's learning rate right now (the schedule evaluated at its step)."""
    rate = optimizer.learning_rate
    return float(ops.convert_to_numpy(rate))
