"""Gradual unfreezing: one more backbone group becomes trainable every ``every`` epochs.

ULMFiT's schedule, for image backbones: start with the top ``start_groups``
groups trainable, and every ``every`` epochs unfreeze the next group down
(BatchNorm stays frozen and in inference mode unless ``train_bn=True``).

Keras 3 optimizers only update the variables they were built with, so the
optimizer must be built over every variable that may become trainable
before the first step: the callback does that at the start of training when
the optimizer is still unbuilt (:func:`prebuild_optimizer` does it by hand),
and refuses an optimizer already built for fewer variables. When it unfreezes a group it rebuilds
the training function (``make_train_function(force=True)``), which is what
Keras needs after ``trainable`` changes; optimizer state (Adam moments,
step count, schedule position) carries over.

Example:
    >>> ktl.unfreeze(model, groups=1)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    >>> model.fit(train, epochs=8, callbacks=[GradualUnfreezing(every=2)])
"""

from __future__ import annotations

import logging
import math

import keras

from kerastl._compat import flatten_layers, optimizer_knows, own_trainable_variables
from kerastl.errors import UserInputError
from kerastl.freezing import find_backbone, unfreeze

log = logging.getLogger(__name__)


def trainable_candidates(model: keras.Model) -> list:
    """Every variable of ``model`` that training could update once its layer is unfrozen."""
    seen, out = set(), []
    for layer in flatten_layers(model, include_self=True):
        for v in own_trainable_variables(layer):
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def prebuild_optimizer(optimizer: keras.optimizers.Optimizer,
                       model: keras.Model) -> keras.optimizers.Optimizer:
    """Build ``optimizer`` over all of ``model``'s trainable-capable variables; returns it.

    Raises:
        ValueError: the optimizer is already built on other variables.
    """
    if optimizer.built:
        unknown = _unknown(optimizer, model)
        if unknown:
            raise UserInputError(
                f"The optimizer is already built and does not know {len(unknown)} variables "
                f"of '{model.name}' (e.g. {unknown[0].path}). Pass a fresh optimizer.")
        return optimizer
    optimizer.build(trainable_candidates(model))
    return optimizer


def _unknown(optimizer, model) -> list:
    return [v for v in trainable_candidates(model) if not optimizer_knows(optimizer, v)]


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreeze one more backbone group every ``every`` epochs of this ``fit``.

    Args:
        every: epochs between two unfreezing steps (>= 1).
        start_groups: top groups trainable in the first epoch (>= 1).
        max_groups: stop at this many groups (default: all of them).
        train_bn: also train BatchNorm in the unfrozen groups.

    Attributes:
        events: ``[{"epoch": e (0-based, as Keras counts), "groups": k,
            "trainable_params": n}]``, one per unfreezing step (the first at
            the start of training).
    """

    def __init__(self, every: int = 1, *, start_groups: int = 1, max_groups: int | None = None,
                 train_bn: bool = False):
        super().__init__()
        for name, value in (("every", every), ("start_groups", start_groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"{name} must be an int >= 1. Received: {name}={value!r}")
        if max_groups is not None and (isinstance(max_groups, bool) or not isinstance(
                max_groups, int) or max_groups < start_groups):
            raise UserInputError(
                f"max_groups must be an int >= start_groups ({start_groups}). "
                f"Received: max_groups={max_groups!r}")
        self.every = every
        self.start_groups = start_groups
        self.max_groups = max_groups
        self.train_bn = train_bn
        self.events: list[dict] = []
        self._first_epoch: int | None = None
        self._groups = 0
        self._n_groups = 0

    def groups_at(self, epoch_in_run: int) -> int:
        """Groups trainable at the ``epoch_in_run``-th epoch of this fit (0-based)."""
        top = min(self._n_groups, self.max_groups or self._n_groups)
        return min(top, self.start_groups + epoch_in_run // self.every)

    def on_train_begin(self, logs=None):
        _backbone, spec = find_backbone(self.model)
        self._n_groups = len(spec.groups)
        self._first_epoch = None
        self._groups = 0
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise UserInputError("GradualUnfreezing needs a compiled model.")
        unfreeze(self.model, groups=min(self.start_groups, self._n_groups),
                 train_bn=self.train_bn)
        if not optimizer.built:  # no step taken yet: build it over every variable now
            prebuild_optimizer(optimizer, self.model)
        elif _unknown(optimizer, self.model):
            raise UserInputError(
                "GradualUnfreezing: the optimizer was already built for fewer variables "
                "(by an earlier fit), so it could never update the groups unfrozen later. "
                "Compile with a fresh optimizer, or call "
                "kerastl.training.gradual.prebuild_optimizer(optimizer, model) first.")

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
        target = self.groups_at(epoch - self._first_epoch)
        if target == self._groups:
            return
        unfreeze(self.model, groups=target, train_bn=self.train_bn)
        self._groups = target
        self.model.make_train_function(force=True)
        count = sum(math.prod(v.shape) for v in self.model.trainable_weights)
        self.events.append({"epoch": int(epoch), "groups": target, "trainable_params": count})
        log.info("Epoch %d: %d of %d backbone groups trainable (%s trainable parameters)",
                 epoch + 1, target, self._n_groups, f"{count:,}")
