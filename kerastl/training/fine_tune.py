"""Two-phase fine-tuning: train the head on a frozen backbone, then unfreeze the top.

The flow fastai made standard, in Keras 3: freeze the backbone, train the
head at ``learning_rate`` (on cached backbone features when that is exact
and faster), unfreeze with BatchNorm kept in inference mode, recompile at
``fine_tune_learning_rate`` and continue; keep the weights of the best
validation epoch across both phases.
"""

from __future__ import annotations

import logging
import math
import sys

import keras
import tensorflow as tf

from kerastl import distribute
from kerastl._compat import flatten_layers
from kerastl.config import DEFAULTS, HEAD_INITS, REGULARIZATIONS, check_micro_batch_size
from kerastl.errors import UserInputError
from kerastl.freezing import find_backbone
from kerastl.training.optimizers import OPTIMIZERS as _OPTIMIZERS  # noqa: F401  (former name)
from kerastl.training.optimizers import (
    default_loss_and_metrics,  # noqa: F401  (still importable from here)
    make_optimizer,
    momentum_option,
)
from kerastl.training.phases import TwoPhases, fresh_metrics
from kerastl.training.result import FineTuneResult
from kerastl.training.schedules import make_schedule

log = logging.getLogger(__name__)


def _resolve_verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def fine_tune(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset | None = None, *,
              head_epochs: int = DEFAULTS.head_epochs, epochs: int = DEFAULTS.epochs,
              learning_rate: float = DEFAULTS.learning_rate,
              fine_tune_learning_rate: float = DEFAULTS.fine_tune_learning_rate,
              unfreeze: dict | None = DEFAULTS.unfreeze,
              callbacks: list | None = None, cache_features=DEFAULTS.cache_features,
              verbose="auto", optimizer: str = DEFAULTS.optimizer, loss=None, metrics=None,
              patience: int | None = DEFAULTS.patience,
              label_smoothing: float = DEFAULTS.label_smoothing,
              class_weight: dict | None = None,
              weight_decay: float | None = DEFAULTS.weight_decay, strategy=None,
              backup_dir=None, mixed_precision: str | None = DEFAULTS.mixed_precision,
              jit_compile: bool | None = None, training_loop: str = "auto",
              schedule: str = DEFAULTS.schedule, warmup: float = DEFAULTS.warmup,
              layerwise_lr_decay: float | None = DEFAULTS.layerwise_lr_decay,
              gradual_unfreeze_every: int | None = DEFAULTS.gradual_unfreeze_every,
              momentum: float | None = DEFAULTS.momentum,
              l2: float | None = DEFAULTS.l2,
              lora_rank: int | None = DEFAULTS.lora_rank,
              head_init: str = DEFAULTS.head_init,
              regularization: str | None = DEFAULTS.regularization,
              l2_sp: float = DEFAULTS.l2_sp,
              micro_batch_size: int | str | None = DEFAULTS.micro_batch_size) -> FineTuneResult:
    # Every default above is kerastl.FineTuneConfig's (kerastl/config.py), defined once.
    """Fine-tune ``model`` in two phases and return the best weights.

    Phase 1 trains only the head for ``head_epochs`` with the backbone frozen
    (BatchNorm in inference mode), on cached backbone features when
    ``cache_features`` allows. Phase 2 calls ``unfreeze(model, **unfreeze)``
    (default: the whole backbone, BatchNorm still frozen), recompiles at
    ``fine_tune_learning_rate`` and trains ``epochs`` more epochs. Early
    stopping (``patience`` epochs without a better ``val_loss``) ends a phase;
    the weights of the best epoch over both phases are restored at the end.

    Args:
        model: a model containing a kerastl backbone (``build_classifier``...).
        train: dataset of ``(images, labels)`` batches, images float32 [0, 255].
            Under a strategy each batch is the *global* batch (per-replica
            batch x replicas); it is split across replicas and workers.
        val: optional validation dataset of the same form.
        head_epochs: epochs of phase 1 (0 skips it).
        epochs: epochs of phase 2 (0 skips it).
        learning_rate: phase-1 learning rate.
        fine_tune_learning_rate: phase-2 learning rate.
        unfreeze: keyword arguments for :func:`kerastl.unfreeze`
            (``{"groups": 2}``, ``{"fraction": 0.3}``, ``{"from_layer": ...}``,
            ``train_bn``).
        callbacks: extra Keras callbacks, passed to both phases.
        cache_features: ``"auto"`` (cache when the backbone is frozen, nothing is
            augmented and ``head_epochs >= 2``), ``True`` or ``False``.
        verbose: Keras verbosity; ``"auto"`` shows progress bars on a terminal
            and one line per epoch otherwise.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"`` or ``"adagrad"``.
        loss: a Keras loss; default chosen from the head and label format.
        metrics: Keras metrics; default accuracy (or MAE for regression).
        patience: early-stopping patience per phase; ``None`` disables it.
        label_smoothing: for one-hot labels.
        class_weight: ``{class index: weight}`` passed to ``fit``.
        weight_decay: optimizer weight decay (AdamW default 1e-4).
        strategy: ``None``, a name for :func:`kerastl.distribute.get_strategy`
            (``"auto"``, ``"mirrored"``, ``"multi_worker"``...) or a
            ``tf.distribute.Strategy``. ``None`` trains a model built in a
            strategy's ``scope()`` under that strategy (with kerastl's loop
            for multi-worker strategies), and any other model without
            distribution. A model built outside the strategy's scope is
            trained as a copy built in it; the trained weights are copied
            back into ``model``.
        backup_dir: folder for phase-aware checkpoints written after every
            epoch (atomically; by the chief only). A run restarted with the
            same arguments resumes in the phase, epoch and frozen/unfrozen
            state where it stopped; a finished run returns at once.
        mixed_precision: ``"mixed_float16"`` or ``"mixed_bfloat16"``: train a
            copy in that policy (the ``predictions`` layer stays float32);
            the global dtype policy is restored afterwards and ``model``
            stays float32.
        jit_compile: compile training steps with XLA (``None``: Keras default).
        training_loop: ``"auto"`` (Keras ``fit``, or kerastl's
            ``strategy.run`` loop for multi-worker strategies, where Keras 3
            ``fit`` fails), ``"keras"`` or ``"custom"``.
        schedule: learning-rate schedule of each phase: ``"cosine"`` (default:
            ``warmup`` of the phase's steps rising to its rate, then cosine
            decay; the best of the three in ``benchmarks/schedules.py``), ``"constant"``,
            ``"onecycle"`` (peak = the phase's rate) or ``"cosine"`` (warm-up,
            then cosine decay); see :mod:`kerastl.training.schedules`.
        warmup: fraction of each phase spent warming up (one-cycle, cosine).
        layerwise_lr_decay: phase 2 only: each backbone group learns at this
            factor x the rate of the group above (the head at the full rate);
            see :func:`kerastl.training.discriminative_optimizer`.
        gradual_unfreeze_every: phase 2 only: start with the top group
            unfrozen and unfreeze one more every this many epochs (up to
            ``unfreeze["groups"]`` groups, default all); see
            :class:`kerastl.training.GradualUnfreezing`. Not with
            ``backup_dir`` or the custom training loop.
        momentum: for ``optimizer="sgd"`` (default 0.9) or ``"rmsprop"``
            (default 0.0); an error with the other optimizers.
        l2: L2 penalty ``l2 * sum(kernel ** 2)`` on the head's kernels, added
            to ``model`` (it stays in the model and its saved config). For the
            backbone's kernels too, call ``ktl.transfer.add_l2(model, l2, scope="all")``
            before ``fine_tune``.
        lora_rank: transformer (text) backbones: phase 2 trains rank-``lora_rank``
            LoRA adapters on the attention query/value projections of the
            unfrozen layers instead of their weights (``unfreeze(lora_rank=)``).
        head_init: ``"random"`` (phase 1 trains the head for ``head_epochs``)
            or ``"linear_probe"`` (LP-FT: phase 1 fits a logistic regression on
            the frozen backbone's features in seconds, C cross-validated by
            accuracy, and starts the ``"predictions"`` layer from it; ``head_epochs``
            is not used; the result's ``linear_head`` holds the fitted pipeline;
            with ``epochs`` the best epoch is chosen among phase 2's). See
            :mod:`kerastl.training.lp_ft`.
        regularization: ``None`` or ``"l2_sp"``: phase 2 adds
            ``l2_sp * sum ||w - w0||^2`` over the unfrozen backbone weights, ``w0``
            their values when phase 2 starts (kept in checkpoints; removed from
            the model at the end). Not with ``gradual_unfreeze_every``.
        l2_sp: the L2-SP factor (> 0) of ``regularization="l2_sp"``.
        micro_batch_size: phase 2 (the backward pass through the backbone):
            each batch's forward and backward pass runs this many examples at a
            time and their gradients are summed, weighted by their share of the
            batch, into one optimizer step: the same update with BatchNorm
            frozen, in a fraction of the memory (see
            :mod:`kerastl.training.micro_batch`). ``"auto"`` (default) picks a
            size from an estimate of the backbone's activations per example
            (8 for EfficientNet-Lite0 at 224 px, off at small sizes, on an
            accelerator and with ``train_bn=True``); ``None`` or ``0``: whole
            batches. An int with ``train_bn=True`` is an error (not exact).

    Returns:
        A :class:`FineTuneResult`.

    Raises:
        ValueError: the model has no kerastl backbone, or an argument is invalid
            (among them a ``strategy`` other than the one whose scope created
            the model's variables).
    """
    for label, value in (("head_epochs", head_epochs), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserInputError(f"{label} must be an int >= 0. Received: {label}={value!r}")
    if head_init not in HEAD_INITS:
        raise UserInputError(f"head_init must be one of {', '.join(HEAD_INITS)}. "
                             f"Received: head_init={head_init!r}")
    if regularization not in (None, *REGULARIZATIONS):
        raise UserInputError(f"regularization must be None or one of "
                             f"{', '.join(REGULARIZATIONS)}. Received: {regularization!r}")
    if regularization == "l2_sp" and gradual_unfreeze_every is not None:
        raise UserInputError("regularization='l2_sp' anchors the weights unfrozen when phase "
                             "2 starts; it cannot be combined with gradual_unfreeze_every.")
    if (isinstance(l2_sp, bool) or not isinstance(l2_sp, (int, float))
            or not (math.isfinite(l2_sp) and l2_sp > 0)):
        raise UserInputError(f"l2_sp must be a finite number > 0. Received: l2_sp={l2_sp!r}")
    check_micro_batch_size(micro_batch_size, unfreeze)
    if head_epochs + epochs == 0 and head_init != "linear_probe":
        raise UserInputError("Nothing to do: head_epochs and epochs are both 0.")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                 or patience < 0):
        raise UserInputError(f"patience must be an int >= 0 or None. Received: "
                             f"patience={patience!r}")
    for label, value in (("learning_rate", learning_rate),
                         ("fine_tune_learning_rate", fine_tune_learning_rate)):
        # a number (a schedule object is checked by Keras): every schedule, constant too
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and not (math.isfinite(value) and value > 0)):
            raise UserInputError(f"{label} must be a finite number > 0. Received: "
                                 f"{label}={value!r}")
    if training_loop not in ("auto", "keras", "custom"):
        raise UserInputError("training_loop must be 'auto', 'keras' or 'custom'. "
                             f"Received: {training_loop!r}")
    find_backbone(model)
    if lora_rank is not None:
        unfreeze = {**(unfreeze or {}), "lora_rank": lora_rank}
    if momentum is not None:
        momentum_option(str(optimizer).lower(), momentum)  # a bad combination fails now
    if l2 is not None:
        from kerastl.regularization import add_l2

        add_l2(model, l2, scope="head")
    policy = distribute.check_precision(mixed_precision)
    strategy = distribute.strategy_for(model, strategy)
    if training_loop == "auto":
        training_loop = "custom" if distribute.is_multi_worker(strategy) else "keras"
    if training_loop == "custom" and strategy is None:
        strategy = tf.distribute.get_strategy()
    options = dict(head_epochs=head_epochs, epochs=epochs, learning_rate=learning_rate,
                   fine_tune_learning_rate=fine_tune_learning_rate, unfreeze=unfreeze or {},
                   callbacks=list(callbacks or []), cache_features=cache_features,
                   verbose=_resolve_verbose(verbose), optimizer=optimizer, loss=loss,
                   metrics=metrics, patience=patience, label_smoothing=label_smoothing,
                   class_weight=class_weight, weight_decay=weight_decay, strategy=strategy,
                   backup_dir=backup_dir, jit_compile=jit_compile, loop=training_loop,
                   momentum=momentum, l2=l2, mixed_precision=mixed_precision,
                   head_init=head_init, regularization=regularization, l2_sp=l2_sp,
                   micro_batch_size=micro_batch_size,
                   **_schedule_options(schedule, warmup, layerwise_lr_decay,
                                       gradual_unfreeze_every, unfreeze or {}, backup_dir,
                                       training_loop))
    with distribute.precision(policy):
        work = model
        if policy or (strategy is not None and not distribute.variables_in_scope(model, strategy)):
            work = distribute.rebuild(model, strategy=strategy, policy=policy)
        runner = TwoPhases(work, train, val, **options)
        try:
            result = runner.run()
        finally:
            if runner.l2_sp is not None:  # the penalty belongs to this run, not the model
                runner.l2_sp.remove()
    result.linear_head = runner.linear_head
    if work is not model:
        model.set_weights(work.get_weights())
        for source, target in zip(flatten_layers(work, include_self=False),
                                  flatten_layers(model, include_self=False),
                                  strict=True):
            target.trainable = source.trainable
        result.model = model
    if not model.compiled:
        model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=runner.loss,
                      metrics=fresh_metrics(runner.metrics))
    return result


def _schedule_options(schedule, warmup, decay, every, unfreeze, backup_dir, loop) -> dict:
    """Check the schedule / per-group rate / gradual-unfreezing options of ``fine_tune``."""
    make_schedule(schedule, 1.0, total_steps=10, warmup=warmup)  # validates name and warmup
    if decay is not None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise UserInputError(
                "layerwise_lr_decay must be a number in (0, 1] (e.g. 0.5: each lower group "
                f"learns at half the rate of the group above). Received: {decay!r}")
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserInputError(f"gradual_unfreeze_every must be an int >= 1. "
                                 f"Received: {every!r}")
        if backup_dir is not None or loop == "custom":
            raise UserInputError("gradual_unfreeze_every cannot be combined with backup_dir= "
                                 "or the custom training loop yet; use one or the other.")
        if set(unfreeze) - {"groups", "train_bn"}:
            raise UserInputError("With gradual_unfreeze_every, unfreeze= may only give "
                                 f"groups= and train_bn=. Received: unfreeze={unfreeze!r}")
    return {"schedule": schedule, "warmup": warmup, "layerwise_lr_decay": decay,
            "gradual_unfreeze_every": every}
