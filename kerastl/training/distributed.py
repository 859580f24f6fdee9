"""A training loop over ``strategy.run`` for strategies where Keras 3 ``fit`` fails.

Keras 3 ``model.fit(dataset)`` under ``MultiWorkerMirroredStrategy`` fails
with "Attempt to convert a value (PerReplica ...)" (keras-team/keras#20585).
:class:`StrategyTrainer` keeps everything else Keras: the model (called
with ``training=True``, so frozen BatchNorm stays in inference mode), its
compiled optimizer (``optimizer.apply`` all-reduces the gradients across
replicas), Keras losses and metrics, and Keras callbacks (``on_epoch_end``
gets the same ``logs`` keys ``fit`` would give, ``model.stop_training``
is honoured).

Loss scaling follows ``tf.distribute``: each replica's loss is the sum of
its per-example losses divided by the *global* number of examples in the
step, so the summed gradients equal those of one device seeing the whole
global batch. Metrics are updated on the gathered global batch, so every
worker logs the same numbers and takes the same early-stopping decisions.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from kerastl import distribute
from kerastl.errors import UserInputError
from kerastl.training.micro_batch import accumulate, slice_batch

log = logging.getLogger(__name__)


def per_example_loss(loss):
    """A Keras loss returning one value per example (reduction ``None``)."""
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config()
        config["reduction"] = None
        return loss.__class__.from_config(config)
    fn = keras.losses.get(loss)
    if fn is None:
        raise UserInputError(f"Unknown loss {loss!r}")
    if isinstance(fn, keras.losses.Loss):
        return per_example_loss(fn)
    return _PerExampleLoss(fn)


class _PerExampleLoss(keras.losses.Loss):
    """A loss function (``"sparse_categorical_crossentropy"``, a callable) as a
    ``Loss`` without reduction: one value per example."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"), reduction=None)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


_ACCURACY = ("accuracy", "acc")


def _accuracy_for(loss, model) -> type[keras.metrics.Metric]:
    """What Keras's ``compile(metrics=["accuracy"])`` means for this loss and output:
    sparse (integer labels), binary (one output unit) or categorical (one-hot)."""
    name = getattr(loss, "name", "") or ""
    units = None
    try:
        units = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    if "sparse" in name:
        return keras.metrics.SparseCategoricalAccuracy
    if "binary" in name or units == 1:
        return keras.metrics.BinaryAccuracy
    return keras.metrics.CategoricalAccuracy


def _metric_objects(metrics, prefix: str, accuracy=None) -> list:
    """Fresh metric objects (their variables live outside any strategy); the name
    ``"accuracy"`` becomes ``accuracy`` (the class :func:`_accuracy_for` chose)."""
    objects = []
    for m in metrics or []:
        if isinstance(m, str) and m in _ACCURACY and accuracy is not None:
            objects.append(accuracy(name=prefix + "accuracy"))
        elif isinstance(m, keras.metrics.Metric):
            config = dict(m.get_config(), name=prefix + m.name)
            objects.append(m.__class__.from_config(config))
        elif isinstance(m, str):
            fn = keras.metrics.get(m)
            if isinstance(fn, keras.metrics.Metric):
                objects.append(fn.__class__.from_config(dict(fn.get_config(), name=prefix + m)))
            else:
                objects.append(keras.metrics.MeanMetricWrapper(fn, name=prefix + m))
        else:
            objects.append(keras.metrics.MeanMetricWrapper(m, name=prefix + m.__name__))
    return objects


class StrategyTrainer:
    """Train a compiled Keras model with a ``strategy.run`` loop.

    Args:
        model: a model built in ``strategy.scope()`` and compiled there
            (its ``optimizer`` is used).
        strategy: the ``tf.distribute.Strategy``.
        loss: the Keras loss (object, name or function).
        metrics: Keras metrics (objects or names); copies are updated.
        class_weight: optional ``{class index: weight}`` for integer labels.
        jit_compile: compile the forward/backward pass with XLA.
        micro_batch_size: run each replica's forward/backward pass this many
            examples at a time, summing the gradients into one step
            (:mod:`kerastl.training.micro_batch`); ``None``: whole batches.
    """

    def __init__(self, model, strategy, *, loss, metrics=None, class_weight=None,
                 jit_compile=None, micro_batch_size=None):
        if model.optimizer is None:
            raise UserInputError("StrategyTrainer needs a compiled model (model.compile(...)).")
        self.model, self.strategy = model, strategy
        if not model.optimizer.built:  # slot variables must exist before the step is traced
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
        self.loss = per_example_loss(loss)
        accuracy = _accuracy_for(self.loss, model)
        self.train_metrics = _metric_objects(metrics, "", accuracy)
        self.val_metrics = _metric_objects(metrics, "val_", accuracy)
        self.class_weight = None
        if class_weight:
            n = max(class_weight) + 1
            self.class_weight = tf.constant([float(class_weight.get(i, 1.0)) for i in range(n)])
        self.jit_compile = bool(jit_compile)
        self.micro_batch_size = micro_batch_size or None
        self._train_fn = self._make_step(training=True)
        self._val_fn = self._make_step(training=False)

    # -- one step ----------------------------------------------------------
    def _weighted_sum(self, y, pred):
        per = self.loss(y, pred)
        if self.class_weight is not None:
            labels = y if y.shape.rank == 1 else tf.argmax(y, axis=-1)
            per = per * tf.gather(self.class_weight, tf.cast(labels, tf.int32))
        return tf.reduce_sum(tf.cast(per, tf.float32))

    def _make_step(self, training: bool):
        model, strategy = self.model, self.strategy
        optimizer = model.optimizer

        def forward_backward(x, y, n_global, share=1.0):
            # share: this piece's fraction of the replica's batch (micro-batching)
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = self._weighted_sum(y, pred) / n_global
                if model.losses:
                    loss += share * tf.add_n(model.losses) / strategy.num_replicas_in_sync
                scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            return loss, pred, grads

        if self.jit_compile:
            forward_backward = tf.function(forward_backward, jit_compile=True)
        if self.micro_batch_size:
            forward_backward = self._in_pieces(forward_backward)

        def replica_step(x, y):
            ctx = tf.distribute.get_replica_context()
            n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                      tf.cast(tf.shape(x)[0], tf.float32))
            n_global = tf.maximum(n_global, 1.0)
            if training:
                loss, pred, grads = forward_backward(x, y, n_global)
                optimizer.apply(grads, model.trainable_variables)
            else:
                pred = model(x, training=False)
                loss = self._weighted_sum(y, pred) / n_global
            return loss, tf.cast(tf.shape(x)[0], tf.float32), y, pred

        metrics = self.train_metrics if training else self.val_metrics

        @tf.function(reduce_retracing=True)
        def step(batch):
            x, y = batch[0], batch[1]
            loss, count, y, pred = strategy.run(replica_step, args=(x, y))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            count = strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None)
            y_all = strategy.gather(y, axis=0)
            pred_all = strategy.gather(pred, axis=0)
            for metric in metrics:
                metric.update_state(y_all, pred_all)
            return loss, count

        return step

    def _in_pieces(self, forward_backward):
        """``forward_backward`` over pieces of ``micro_batch_size``: the same loss, predictions
        and summed gradients, one piece's activations alive at a time."""
        variables = self.model.trainable_variables

        def in_pieces(x, y, n_global):
            def piece(start, stop, share):
                loss, pred, grads = forward_backward(slice_batch(x, start, stop),
                                                     slice_batch(y, start, stop), n_global, share)
                return grads, [tf.reshape(loss, [1]), tf.cast(pred, tf.float32)]

            n = tf.shape(tf.nest.flatten(x)[0])[0]
            grads, (losses, pred) = accumulate(n, self.micro_batch_size, piece,
                                               variables, collect=(tf.float32, tf.float32))
            return tf.reduce_sum(losses), pred, grads

        return in_pieces

    # -- epochs ------------------------------------------------------------
    def _distribute(self, dataset):
        return self.strategy.experimental_distribute_dataset(distribute.shard_options(dataset))

    def _run_epoch(self, fn, dataset, metrics, callbacks=None):
        for m in metrics:
            m.reset_state()
        total, seen = 0.0, 0.0
        for batch_index, batch in enumerate(self._distribute(dataset)):
            if callbacks is not None:
                callbacks.on_train_batch_begin(batch_index)
            loss, count = fn(batch)
            total += float(loss) * float(count)
            seen += float(count)
            if callbacks is not None:
                logs = {"loss": total / max(seen, 1.0)}
                logs.update({m.name: float(m.result()) for m in metrics})
                callbacks.on_train_batch_end(batch_index, logs)
        logs = {"loss": total / max(seen, 1.0)}
        logs.update({m.name: float(m.result()) for m in metrics})
        return logs

    def fit(self, train, val=None, *, initial_epoch: int = 0, epochs: int = 1,
            callbacks=None, verbose: int = 0) -> dict[str, list]:
        """Train from ``initial_epoch`` to ``epochs`` (exclusive), like ``Model.fit``.

        Returns:
            ``{metric: [per-epoch values]}`` for the epochs run.
        """
        steps = int(train.cardinality())
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=False, add_progbar=verbose != 0, model=self.model,
            verbose=verbose, epochs=epochs, steps=steps if steps > 0 else None)
        self.model.stop_training = False
        history: dict[str, list] = {}
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            logs = self._run_epoch(self._train_fn, train, self.train_metrics, callback_list)
            if val is not None:
                val_logs = self._run_epoch(self._val_fn, val, self.val_metrics)
                logs.update({("val_loss" if k == "loss" else k): v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            if self.model.stop_training:
                break
        callback_list.on_train_end()
        return history
