"""The two phases behind :func:`kerastl.fine_tune`: caching, checkpoints, resumption.

Phase 1 trains the head on a frozen backbone (on cached backbone features
when that is exact), phase 2 unfreezes and recompiles. With a ``backup_dir``
a checkpoint is written after every epoch and at the phase boundary, and a
restarted run picks up in the recorded phase, epoch and frozen/unfrozen
state (see :mod:`kerastl.training.checkpoint`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import keras
import tensorflow as tf

from kerastl import distribute
from kerastl._compat import flatten_layers
from kerastl.config import DEFAULT_SEED, DEFAULTS, resume_fingerprint
from kerastl.data.pipeline import epoch_order, pass_counter
from kerastl.freezing import find_backbone, freeze
from kerastl.freezing import unfreeze as unfreeze_model
from kerastl.training.callbacks import BestWeights, PenaltyFreeValLoss, PhaseLogger, TrimHeap
from kerastl.training.checkpoint import (
    CheckpointManager,
    optimizer_arrays,
    pause_callbacks,
    pause_point,
    restore_optimizer,
)
from kerastl.training.discriminative import discriminative_optimizer
from kerastl.training.distributed import StrategyTrainer
from kerastl.training.gradual import GradualUnfreezing
from kerastl.training.lp_ft import attach_l2_sp, linear_probe_phase, suggest_linear_probe
from kerastl.training.micro_batch import micro_batching, resolve_micro_batch_size
from kerastl.training.optimizers import default_loss_and_metrics, make_optimizer
from kerastl.training.phase_steps import (
    _batch_size,
    _best_row,
    _head_model,
    _merge,
    _should_cache,
    _steps_per_epoch,
)
from kerastl.training.result import FineTuneResult
from kerastl.training.schedules import make_schedule

log = logging.getLogger(__name__)


def fresh_metrics(metrics):
    """New metric objects with the same config (metric variables belong to one scope)."""
    if metrics is None:
        return None
    return [m.__class__.from_config(m.get_config()) if isinstance(m, keras.metrics.Metric)
            else m for m in metrics]


def _rng_states(model) -> list:
    """The model's seed-generator states (dropout RNG): variables that are not weights."""
    ids = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in ids]


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters can be restored from a checkpoint."""

    def __init__(self, *args, initial: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial = initial or {}

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait = int(self.initial.get("wait", 0))
        self.best = self.initial.get("best")


class _SaveEachEpoch(keras.callbacks.Callback):
    def __init__(self, run, phase):
        super().__init__()
        self.run, self.phase = run, phase

    def on_epoch_end(self, epoch, logs=None):
        self.run.save(self.phase, optimizer=self.model.optimizer,
                      label=f"{self.phase}:{int(epoch) + 1}",
                      stopped=getattr(self.model, "stop_training", False))


class TwoPhases:
    """The two phases of :func:`fine_tune`, with checkpoints and resumption."""

    def __init__(self, model, train, val, **options):
        self.model, self.train, self.val = model, train, val
        # An option a direct caller leaves out is the public default (fingerprinted as such).
        self.o = {**DEFAULTS.fine_tune_kwargs(), **options}
        self.strategy = options["strategy"]
        self.monitor = "val_loss" if val is not None else "loss"
        self.best = BestWeights(model, monitor=self.monitor)
        self.rows: list[dict] = []
        self.timings: dict[str, float] = {}
        self.stopper: _ResumableEarlyStopping | None = None
        self.cached = False
        self.phase1_epochs = 0
        # Datasets whose per-epoch order is keyed by a pass counter
        # (kerastl.data.pipeline.reshuffled): "train", and "features" in a
        # cached phase 1. Saved with each checkpoint, set again on resume.
        self.datasets = {"train": train}
        self.resume_passes: dict[str, int] = {}
        with self._scope():
            loss, metrics = self.o["loss"], self.o["metrics"]
            if loss is None:
                loss, default_metrics = default_loss_and_metrics(
                    model, train, self.o["label_smoothing"])
                metrics = default_metrics if metrics is None else metrics
        self.loss, self.metrics = loss, metrics
        self.ckpt = None
        self.resumed_from = None
        self.linear_head = None  # head_init="linear_probe": the fitted LinearHead
        self.l2_sp = None  # regularization="l2_sp": phase 2's L2SPPenalty
        if options["backup_dir"] is not None:
            self.ckpt = CheckpointManager(
                options["backup_dir"], fingerprint=self._fingerprint(),
                writer=distribute.is_chief(self.strategy))

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _fingerprint(self) -> dict:
        # The model's structure and every FineTuneConfig field among the options
        # (not the resume-neutral ones): a new option is covered automatically.
        return {"model": self.model.name, "weights": [list(w.shape) for w in self.model.weights],
                **resume_fingerprint(self.o)}

    # -- checkpoints -----------------------------------------------------
    def save(self, phase, *, phase_epochs_done=None, optimizer=None, label="", status=None,
             stopped=False):
        if self.ckpt is None:
            return
        if phase_epochs_done is None:
            phase_epochs_done = len(self.rows) - (self.phase1_epochs if phase == 2 else 0)
        layers = flatten_layers(self.model, include_self=False)
        state = {"status": status or f"phase{phase}", "phase": phase,
                 "phase_epochs_done": phase_epochs_done, "phase1_epochs": self.phase1_epochs,
                 "epochs_done": len(self.rows), "history": self.rows,
                 "trainable": [bool(layer.trainable) for layer in layers],
                 "cached_features": self.cached, "stopped": bool(stopped),
                 "best": {"value": self.best.best if self.best.best_epoch is not None else None,
                          "epoch": self.best.best_epoch, "logs": self.best.best_logs},
                 "early_stopping": ({"wait": self.stopper.wait, "best": self.stopper.best}
                                    if self.stopper is not None else {}),
                 "data_passes": self._data_passes()}
        arrays = {"model": self.model.get_weights(), "optimizer": optimizer_arrays(optimizer),
                  "best": self.best._weights,
                  "l2_sp": self.l2_sp.anchor_arrays() if self.l2_sp is not None else None,
                  "rng": [keras.ops.convert_to_numpy(v) for v in _rng_states(self.model)]}
        self.ckpt.save(state, arrays, label=label or state["status"])

    def _data_passes(self) -> dict[str, int]:
        counters = {key: pass_counter(ds) for key, ds in self.datasets.items()}
        return {key: int(c.numpy()) for key, c in counters.items() if c is not None}

    def _replay_order(self, dataset) -> None:
        """First fit on ``dataset`` after a resume: continue its order where the checkpoint was."""
        for key, ds in self.datasets.items():
            if ds is dataset and key in self.resume_passes:
                counter = pass_counter(ds)
                if counter is not None:
                    counter.assign(self.resume_passes.pop(key))

    def _resume(self):
        found = self.ckpt.latest() if self.ckpt is not None else None
        if found is None:
            return None
        s = found.state
        self.resumed_from = os.fspath(found.path)
        log.info("Resuming from %s: %s, %d epochs done", found.path, s["status"],
                 s["epochs_done"])
        self.rows[:] = s["history"]
        self.phase1_epochs = s["phase1_epochs"]
        self.cached = s["cached_features"]
        self.resume_passes = dict(s.get("data_passes", {}))
        if s["best"]["epoch"] is not None:
            self.best.best = s["best"]["value"]
            self.best.best_epoch = s["best"]["epoch"]
            self.best.best_logs = s["best"]["logs"]
            self.best._weights = found.arrays.get("best")
        self.model.set_weights(found.arrays["model"])
        saved_rng = found.arrays.get("rng", [])
        states = _rng_states(self.model)
        if len(saved_rng) == len(states):  # dropout masks continue where they stopped
            for variable, value in zip(states, saved_rng, strict=True):
                variable.assign(value)
        return found

    def _set_trainable(self, flags):
        layers = flatten_layers(self.model, include_self=False)
        for layer, flag in zip(layers, flags, strict=True):
            layer.trainable = flag

    # -- phases ------------------------------------------------------------
    def callbacks(self, phase, early_stopping_state=None):
        cbs = [PhaseLogger(phase, self.rows), self.best, TrimHeap()] + self.o["callbacks"]
        self.stopper = None
        if self.o["patience"] is not None:
            self.stopper = _ResumableEarlyStopping(monitor=self.monitor,
                                                   patience=self.o["patience"],
                                                   initial=early_stopping_state)
            cbs.append(self.stopper)
        if phase == 2 and self.l2_sp is not None:
            cbs.insert(0, PenaltyFreeValLoss(self.l2_sp, in_val_loss=self.o["loop"] != "custom"))
        if phase == 2 and self.o.get("gradual_unfreeze_every"):
            unfreeze = self.o["unfreeze"]
            cbs.insert(0, GradualUnfreezing(self.o["gradual_unfreeze_every"],
                                            max_groups=unfreeze.get("groups"),
                                            train_bn=bool(unfreeze.get("train_bn", False))))
        if self.ckpt is not None:
            cbs.append(_SaveEachEpoch(self, phase))
        return cbs + pause_callbacks(phase)

    def compile(self, target, learning_rate, train=None, phase=0):
        with self._scope():
            opt = self._optimizer(target, learning_rate, train, phase)
            kwargs = {} if self.o["jit_compile"] is None else {"jit_compile": self.o["jit_compile"]}
            target.compile(optimizer=opt, loss=self.loss,
                           metrics=fresh_metrics(self.metrics),  # one compile, one set
                           **kwargs)

    def _optimizer(self, target, learning_rate, train, phase):
        """The phase's optimizer: its schedule, and per-group rates in phase 2."""
        o = self.o
        epochs = {1: o["head_epochs"], 2: o["epochs"]}.get(phase, 0)
        schedule = o.get("schedule", DEFAULTS.schedule)
        if phase and epochs and schedule != "constant":
            steps = _steps_per_epoch(train if train is not None else self.train)
            learning_rate = make_schedule(schedule, learning_rate,
                                          total_steps=max(1, epochs * steps),
                                          warmup=o.get("warmup", DEFAULTS.warmup))
        if phase == 2 and o.get("layerwise_lr_decay") is not None:
            return discriminative_optimizer(target, o["optimizer"], learning_rate,
                                            decay=o["layerwise_lr_decay"],
                                            weight_decay=o["weight_decay"],
                                            momentum=o.get("momentum"))
        return make_optimizer(o["optimizer"], learning_rate, weight_decay=o["weight_decay"],
                              momentum=o.get("momentum"))

    def restore_optimizer(self, target, found):
        if found is not None and found.arrays.get("optimizer"):
            with self._scope():
                restore_optimizer(target.optimizer, target.trainable_variables,
                                  found.arrays["optimizer"])

    def fit(self, target, train, val, initial_epoch, epochs, callbacks, micro_batch=None):
        self._replay_order(train)
        if self.o["loop"] == "custom":
            StrategyTrainer(target, self.strategy, loss=self.loss, metrics=self.metrics,
                            class_weight=self.o["class_weight"],
                            jit_compile=self.o["jit_compile"],
                            micro_batch_size=micro_batch).fit(
                train, val, initial_epoch=initial_epoch, epochs=epochs, callbacks=callbacks,
                verbose=self.o["verbose"])
            return
        with micro_batching(target, micro_batch):
            target.fit(train, validation_data=val, initial_epoch=initial_epoch, epochs=epochs,
                       verbose=self.o["verbose"], callbacks=callbacks,
                       class_weight=self.o["class_weight"], shuffle=False)

    def _micro_batch(self, model) -> int | None:
        """Phase 2's micro-batch size per replica (``micro_batch_size``), or None."""
        value = self.o.get("micro_batch_size")
        if value is None or value == 0:
            return None
        order = epoch_order(self.train)
        first = tf.nest.flatten(self.train.element_spec[0])[0]  # images, or a text dict's first
        batch = order["batch_size"] if order else first.shape[0]
        if batch is not None and self.strategy is not None:  # the global batch is split
            batch = -(-int(batch) // self.strategy.num_replicas_in_sync)
        return resolve_micro_batch_size(value, model, batch)

    def run(self) -> FineTuneResult:
        found = self._resume()
        status = found.state["status"] if found else "phase1"
        head_epochs, epochs = self.o["head_epochs"], self.o["epochs"]
        if status == "phase1" and (head_epochs or self.o["head_init"] == "linear_probe"):
            self.phase1(found)
            found = None
        if status in ("phase1", "phase2") and epochs:
            self.phase2(found)
        elif status == "done":
            self._set_trainable(found.state["trainable"])
        if status != "done":
            if self.best.restore():
                log.info("Restored the weights of epoch %d (%s=%.4f)", self.best.best_epoch + 1,
                         self.monitor, self.best.best)
            self.save(2 if epochs else 1, phase_epochs_done=0, status="done", label="done")
        if not self.model.compiled:
            self.compile(self.model, self.o["learning_rate"])
        return FineTuneResult(model=self.model, history=_merge(self.rows),
                              best_val_metrics=_best_row(self.rows[self.first_competing_row():],
                                                         self.monitor),
                              timings=self.timings, cached_features=self.cached,
                              resumed_from=self.resumed_from)

    def first_competing_row(self) -> int:
        """LP-FT's probe row (the first) competes for the best epoch only when it is the result."""
        return 1 if self.o["head_init"] == "linear_probe" and self.o["epochs"] else 0

    def phase1(self, found):
        model, o = self.model, self.o
        freeze(model)
        if o["head_init"] == "linear_probe":  # LP-FT: a fitted logistic regression instead
            return linear_probe_phase(self)
        done = found.state["phase_epochs_done"] if found else 0
        backbone, _ = find_backbone(model)
        use_cache, why = _should_cache(o["cache_features"], model, self.train, o["head_epochs"])
        if use_cache and self.strategy is not None and o["cache_features"] == "auto":
            use_cache, why = False, "training is distributed"
        head = _head_model(model, backbone) if use_cache else None
        if use_cache and head is None:
            why = "the head is not a simple chain of layers after the backbone"
        if head is None and o["cache_features"] is not False:
            log.info("Phase 1 not using cached features: %s", why)
        start = time.perf_counter()
        target, train, val = model, self.train, self.val
        if head is not None:
            self.cached = True
            target = head
            train, val = self._features(backbone)
        self.compile(target, o["learning_rate"], train, 1)
        self.restore_optimizer(target, found)
        if not (found and found.state.get("stopped")):  # early-stopped before the kill
            self.fit(target, train, val, done, o["head_epochs"],
                     self.callbacks(1, found.state["early_stopping"] if found else None))
        self.timings["phase1"] = time.perf_counter() - start
        self.phase1_epochs = len(self.rows)
        if head is not None:  # phase 2 continues the image order where phase 1 left it
            order, features = epoch_order(self.train), pass_counter(self.datasets["features"])
            if order and features is not None:
                order["counter"].assign(features.read_value())
        if o["epochs"]:
            unfreeze_model(model, **o["unfreeze"])
            self.save(2, phase_epochs_done=0, label="phase-boundary")
            pause_point("phase-boundary")

    def _features(self, backbone):
        from kerastl.data.features import extract_features, features_dataset

        verbose = self.o["verbose"] == 1
        log.info("Phase 1: extracting backbone features once (frozen backbone)")
        t0 = time.perf_counter()
        order = epoch_order(self.train)
        # With a kerastl pipeline, features are extracted in its unshuffled
        # order and reshuffled with its seed, buffer and pass count: phase 1
        # then sees exactly the batches the uncached run would see.
        source = order["unshuffled"] if order else self.train
        batch_size = order["batch_size"] if order else _batch_size(self.train)
        f_train, y_train = extract_features(backbone, source, verbose=verbose)
        suggest_linear_probe(self.model, backbone, y_train, self.o["epochs"])
        val_ds = None
        if self.val is not None:
            f_val, y_val = extract_features(backbone, self.val, verbose=verbose)
            val_ds = features_dataset(f_val, y_val, batch_size=batch_size, shuffle=False)
        self.timings["feature_extraction"] = time.perf_counter() - t0
        if order:
            train_ds = features_dataset(f_train, y_train, batch_size=batch_size, shuffle=True,
                                        seed=order["seed"], buffer_size=order["buffer_size"])
            counter = pass_counter(train_ds)
            if counter is not None:
                counter.assign(order["counter"].read_value())
        else:
            train_ds = features_dataset(f_train, y_train, batch_size=batch_size,
                                        shuffle=True, seed=DEFAULT_SEED)
        self.datasets["features"] = train_ds
        return train_ds, val_ds

    def phase2(self, found):
        model, o = self.model, self.o
        if found is not None:  # resumed inside phase 2: the recorded frozen/unfrozen state
            self._set_trainable(found.state["trainable"])
        elif not self.phase1_epochs and not o["head_epochs"]:
            unfreeze_model(model, **o["unfreeze"])
        self.l2_sp = attach_l2_sp(self, found)
        self.compile(model, o["fine_tune_learning_rate"], self.train, 2)
        self.restore_optimizer(model, found)
        start = time.perf_counter()
        if not (found and found.state.get("stopped")):
            self.fit(model, self.train, self.val, len(self.rows),
                     self.phase1_epochs + o["epochs"],
                     self.callbacks(2, found.state["early_stopping"] if found else None),
                     micro_batch=self._micro_batch(model))
        self.timings["phase2"] = time.perf_counter() - start
