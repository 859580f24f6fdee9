"""Micro-batching: one optimizer step per batch, its backward pass in smaller pieces.

Fine-tuning a whole backbone keeps every activation of the batch for the
backward pass: at 224 px a batch of 32 through EfficientNet-Lite0 holds about
1 GB. With BatchNorm frozen (inference mode, kerastl's default) each example's
loss and gradient depend on that example only, so the batch's gradient is the
sum of its micro-batches' gradients, each weighted by its share of the batch.
:func:`micro_batching` installs a training step that does exactly that: the
batch of ``n`` is cut into pieces of ``size`` (the last may be smaller), each
piece's forward and backward pass runs alone (a ``tf.while_loop`` with one
iteration in flight) and adds ``share x gradient`` into one sum, and the
optimizer then takes *one* step. The update, the optimizer's ``iterations``,
learning-rate schedules, the loss and the metrics are those of the whole
batch (equal up to float rounding; dropout draws other masks). Only the
activations of one piece are alive at a time.

The share weighting is exact for losses averaged over the batch (Keras's
default ``"sum_over_batch_size"`` reduction, sample weights included) and for
the model's own losses (L2, L2-SP), which each piece adds with its share. It
is not exact when BatchNorm trains (``train_bn=True``: each piece would get
its own batch statistics), so that combination is refused.

Keras 3 optimizers have ``gradient_accumulation_steps=``, but that spreads one
update over several *fit steps*: the dataset would need re-batching, the
accumulation would run across epoch ends and partial last batches, and
callbacks and step counts would change. Splitting inside the step keeps all
of that as it is.
"""

from __future__ import annotations

import contextlib
import logging
import math

import keras
import tensorflow as tf

from kerastl import _compat
from kerastl._compat import flatten_layers
from kerastl.config import MICRO_BATCH_BN_MESSAGE
from kerastl.errors import UserInputError

log = logging.getLogger(__name__)


#: ``micro_batch_size="auto"``: the layer outputs one piece may have, as estimated by
#: :func:`activation_bytes_per_example` (about twice what the backward pass keeps on
#: CPU). EfficientNet-Lite0 at 224 px: ~78 MiB per example, so pieces of 8, which
#: keeps ``kerastl train`` below 2 GB (benchmarks/train_memory.py).
AUTO_BUDGET_BYTES = 640 * 2**20


def activation_bytes_per_example(model: keras.Model) -> int:
    """Bytes of every layer output of ``model`` for one example (nested layers included).

    A rough measure of what a backward pass keeps per example: each layer's
    output once, in the layer's compute dtype. Layers whose output shape is not
    known (not built in a functional graph) count nothing.
    """
    total = 0
    for layer in flatten_layers(model, include_self=False):
        if isinstance(layer, keras.Model):  # a nested model: its own layers count
            continue
        try:
            outputs = layer.output
        except (AttributeError, ValueError, RuntimeError):  # never called in a graph
            continue
        half = keras.backend.standardize_dtype(layer.compute_dtype) in ("float16", "bfloat16")
        itemsize = 2 if half else 4
        for tensor in tf.nest.flatten(outputs):
            shape = getattr(tensor, "shape", None)
            if shape is None or any(d is None for d in tuple(shape)[1:]):
                continue
            total += math.prod(tuple(shape)[1:]) * itemsize
    return total


def trains_batch_norm(model: keras.Model) -> bool:
    """Whether a trainable BatchNormalization layer (batch statistics) is in ``model``."""
    return any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
               for layer in flatten_layers(model, include_self=False))


def resolve_micro_batch_size(value, model: keras.Model, batch_size: int | None) -> int | None:
    """The micro-batch size to train ``model`` with, or ``None`` (whole batches).

    Args:
        value: ``"auto"``, ``None`` / ``0`` (off) or an int >= 1 (see
            :func:`kerastl.fine_tune`). ``"auto"`` picks the largest size whose
            estimated activations (:func:`activation_bytes_per_example`) stay
            within :data:`AUTO_BUDGET_BYTES`, evened out over the batch; it is
            off on an accelerator (the budget is host memory) and while
            BatchNorm trains.
        model: the model as it will be trained (trainable flags set).
        batch_size: examples per training step (per replica); ``None``: unknown.

    Raises:
        UserInputError: a size is given while BatchNorm trains (not exact).
    """
    if value is None or value == 0:
        return None
    batch_norm = trains_batch_norm(model)
    if value != "auto":
        if batch_norm:
            raise UserInputError(MICRO_BATCH_BN_MESSAGE + f" Received: micro_batch_size={value!r}")
        return None if batch_size is not None and value >= batch_size else int(value)
    if batch_norm:
        log.info("Micro-batching off: BatchNorm layers train (batch statistics)")
        return None
    if any(d.device_type != "CPU" for d in tf.config.list_physical_devices()):
        return None
    per_example = max(1, activation_bytes_per_example(model))
    size = max(1, AUTO_BUDGET_BYTES // per_example)
    if batch_size is not None:
        if size >= batch_size:
            return None
        size = math.ceil(batch_size / math.ceil(batch_size / size))  # 32 by 10: 8 x 4
    log.info("Micro-batching: pieces of %d examples per training step (~%.0f MiB of layer "
             "outputs per example)", size, per_example / 2**20)
    return size


def accumulate(n, size: int, piece_fn, variables, collect: tuple = ()):
    """Run ``piece_fn`` on the pieces of a batch of ``n``, one at a time; sum the gradients.

    Args:
        n: examples in the batch (a scalar tensor).
        size: examples per piece (the last piece may be smaller).
        piece_fn: ``piece_fn(start, stop, share) -> (gradients, outputs)``: the
            gradients (one per variable, ``None`` for an unconnected one) of the
            piece ``[start, stop)``, ``share`` (its fraction of the batch)
            already applied, and a list of tensors to collect, one per dtype
            of ``collect``.
        variables: the variables the gradients are for.
        collect: dtypes of the outputs to collect.

    Returns:
        ``(gradients, collected)``: the summed gradients (zeros for unconnected
        variables) and each output of the pieces concatenated along axis 0.
    """
    n = tf.cast(n, tf.int32)
    pieces = (n + size - 1) // size
    zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
    arrays = [tf.TensorArray(dtype, size=pieces, infer_shape=False) for dtype in collect]
    shapes = [None] * len(collect)  # each output's shape past axis 0, seen while tracing

    def body(i, sums, arrays):
        start = i * size
        stop = tf.minimum(start + size, n)
        share = tf.cast(stop - start, tf.float32) / tf.cast(n, tf.float32)
        grads, outputs = piece_fn(start, stop, share)
        sums = [s if g is None else s + tf.cast(tf.convert_to_tensor(g), s.dtype)
                for s, g in zip(sums, grads, strict=True)]
        arrays = [a.write(i, o) for a, o in zip(arrays, outputs, strict=True)]
        shapes[:] = [o.shape[1:] for o in outputs]
        return i + 1, sums, arrays

    # parallel_iterations=1: one piece's activations alive at a time (the point of it)
    _, sums, arrays = tf.while_loop(lambda i, *_: i < pieces, body,
                                    (tf.constant(0), zeros, arrays), parallel_iterations=1)
    collected = [a.concat() for a in arrays]
    for tensor, shape in zip(collected, shapes, strict=True):
        tensor.set_shape(tf.TensorShape([None]).concatenate(shape))
    return sums, collected


def slice_batch(structure, start, stop):
    """``structure``'s tensors (nested; ``None`` kept) cut to the examples ``[start, stop)``."""
    return tf.nest.map_structure(lambda t: None if t is None else t[start:stop], structure)


def micro_batch_train_step(model: keras.Model, size: int):
    """A Keras ``train_step`` for ``model`` that runs the backward pass ``size`` examples at a time.

    The same update, loss and metrics as Keras' own TensorFlow ``train_step``
    (Keras 3.15): see the module docstring.
    """
    loss_tracker = _compat.model_loss_tracker(model)

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        first = next(t for t in tf.nest.flatten(x) if t is not None)
        n = tf.shape(first)[0]
        variables = model.trainable_weights
        optimizer = model.optimizer
        replicas = tf.distribute.get_strategy().num_replicas_in_sync

        def piece(start, stop, share):
            x_p, y_p = slice_batch(x, start, stop), slice_batch(y, start, stop)
            w_p = slice_batch(sample_weight, start, stop)
            with tf.GradientTape() as tape:
                y_pred = model(x_p, training=True)
                loss = model.compute_loss(x_p, y_p, y_pred, w_p, training=True)
                scaled = optimizer.scale_loss(loss) if optimizer is not None else loss
                scaled = scaled * tf.cast(share, scaled.dtype)
            # Keras scales the loss by 1 / replicas under a strategy; the tracker shows it whole
            loss_tracker.update_state(loss * replicas, sample_weight=stop - start)
            model.compute_metrics(x_p, y_p, y_pred, sample_weight=w_p)
            return tape.gradient(scaled, variables), []

        if variables:
            gradients, _ = accumulate(n, size, piece, variables)
            optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return model.get_metrics_result()

    return train_step


@contextlib.contextmanager
def micro_batching(model: keras.Model, size: int | None):
    """Within the block, ``model.fit`` trains with :func:`micro_batch_train_step` (``size``).

    ``size=None`` changes nothing. Keras' ``fit`` builds its training function
    from ``model.train_step``, so the step is set on this instance for the block
    and removed afterwards (the training function is rebuilt at either end).
    XLA is turned off for the block: the pieces have a dynamic size.
    """
    if not size:
        yield model
        return
    jit = model.jit_compile
    if jit:
        log.info("Micro-batching: training without XLA (pieces have a dynamic size)")
        model.jit_compile = False
    model.train_step = micro_batch_train_step(model, int(size))
    model.train_function = None
    try:
        yield model
    finally:
        del model.train_step
        model.train_function = None
        if jit:
            model.jit_compile = jit
