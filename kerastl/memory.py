"""Release what a finished model leaves behind, so many models fit in one process.

Training model after model in one Python process (a hyperparameter search,
k-fold cross-validation, repeated benchmarks) grows its memory by every
model's whole traced training graph, even after ``keras.backend.clear_session()``
and ``gc.collect()``. Measured here (TF 2.21, Keras 3.15): a small MobileNetV3
``fit`` of one epoch left ~160 MiB and ~216,000 Python objects behind per
model.

The cause is in TensorFlow, not Keras: ``tf.custom_gradient`` in graph mode
registers each gradient function in TensorFlow's *global* gradient registry
under a fresh name (``CustomGradient-<n>``) and never removes it
(tensorflow/tensorflow#27492, #97697). Keras' training step uses one through
``ReplicaContext.all_reduce`` (even without a distribution strategy), and
the registered closure holds gradient tensors of the traced step, which
hold the whole ``FuncGraph``. Removing the entries a finished model created
frees all of it (measured: the same loop then stays flat at ~960 MiB).

:class:`GraphRelease` does that for a block of work: it remembers which
custom gradients existed when it started and, on :meth:`GraphRelease.release`,
forgets only the ones registered since. That is safe once the models built
in the block are no longer used: the entries are looked up only while a
graph containing them is being differentiated, i.e. while tracing that
block's own training steps.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import warnings

import keras

from kerastl import _compat

log = logging.getLogger(__name__)

_PREFIX = "CustomGradient-"
_warned = False  # the registry moved: warned once per process


def _registry() -> dict | None:
    """TensorFlow's global gradient registry (private API), or None if it moved.

    When it moved, warns once (a ``RuntimeWarning`` and a log warning) that
    nothing will be released, instead of silently removing nothing.
    """
    global _warned
    try:
        return _compat.gradient_registry()
    except _compat.PrivateAPIMissing as err:
        if not _warned:
            _warned = True
            message = (f"kerastl.memory cannot release traced models' graphs: {err} "
                       "Each model trained in this process stays in memory.")
            log.warning("%s", message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        return None


def custom_gradient_names() -> set[str]:
    """Names of the ``tf.custom_gradient`` functions registered so far."""
    registry = _registry()
    return {k for k in registry if k.startswith(_PREFIX)} if registry is not None else set()


def forget_custom_gradients(keep: set[str]) -> int:
    """Remove registered custom gradients whose names are not in ``keep``.

    Returns:
        How many entries were removed (0, with a warning the first time, when
        TensorFlow's registry is not where this TensorFlow version is known to
        keep it: see :func:`kerastl._compat.gradient_registry`).
    """
    registry = _registry()
    if registry is None:
        return 0
    stale = [k for k in registry if k.startswith(_PREFIX) and k not in keep]
    for name in stale:
        registry.pop(name, None)
    return len(stale)


def trim_heap() -> None:
    """Give freed C heap back to the OS where glibc allows (``malloc_trim``)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class GraphRelease:
    """Free the traced graphs of the models built after this object was made.

    Example:
        >>> for fold in folds:
        ...     scope = GraphRelease()
        ...     model = build(); model.fit(...); score(model)
        ...     del model
        ...     scope.release()   # clear_session + those models' graphs + gc
    """

    def __init__(self):
        self._keep = custom_gradient_names()

    def release(self, *, clear_session: bool = True) -> int:
        """``clear_session`` (optional), forget this block's custom gradients, collect.

        Call it only when the models built since this object was made are no
        longer used. Returns the number of registry entries removed.
        """
        if clear_session:
            keras.backend.clear_session()
        removed = forget_custom_gradients(self._keep)
        gc.collect()
        trim_heap()
        log.debug("Released %d traced custom gradients", removed)
        self._keep = custom_gradient_names()
        return removed
