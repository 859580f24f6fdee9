"""What kerastl knows about a dataset it built: one :class:`DatasetInfo` per dataset.

A ``tf.data.Dataset`` cannot carry extra fields through its transformations,
so kerastl keeps its metadata *beside* the dataset, in a table keyed weakly by
the dataset object (an entry goes away with its dataset). The rules:

- The info belongs to the exact dataset object kerastl returned
  (``splits.train``...). A dataset the user derives from it
  (``splits.train.map(f)``, ``.take(n)``, ``.unbatch().batch(m)``...) has no
  info of its own: its order is a plain reshuffle (after a resumed run the
  sequence of epoch orders starts again), and ``fine_tune`` extracts cached
  features in its own order.
- Augmentation is inherited: :func:`is_augmented` is True for a dataset built
  from an augmented kerastl dataset, since a ``map`` cannot undo the random
  draws, so ``fine_tune(cache_features="auto")`` still trains on images.
- :func:`describe` states it explicitly, e.g.
  ``ktl.data.describe(ds, augmented=True)`` for a pipeline augmented by user
  code, or ``augmented=False`` for a dataset that only replays fixed images.
  A stated value is authoritative for everything the dataset is built from.

Example:
    >>> splits = ktl.data.from_arrays(x, y, image_size=32, augment="light")
    >>> ktl.data.is_augmented(splits.train.map(lambda a, b: (a / 255.0, b)))
    True
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

from kerastl import _compat


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """kerastl's metadata about one dataset.

    Attributes:
        augmented: True when each pass draws new random augmentation (or
            random crops): features of one pass must not be reused. ``None``
            (not stated): the datasets it is built from decide.
        pass_counter: ``tf.Variable`` counting the passes of a kerastl shuffle
            (see :func:`kerastl.data.pipeline.reshuffled`); a resumed run sets
            it so the next epoch sees the order the uninterrupted run would.
        shuffle: ``{"buffer_size": b, "seed": s}`` of that shuffle.
        epoch_order: for a training set without augmentation, ``{"unshuffled":
            ds, "buffer_size": b, "seed": s, "batch_size": n, "counter": v}``
            (see :func:`kerastl.data.pipeline.epoch_order`).
    """

    augmented: bool | None = None
    pass_counter: Any = None
    shuffle: dict | None = None
    epoch_order: dict | None = None


_FIELDS = frozenset(f.name for f in dataclasses.fields(DatasetInfo))
# Weak keys: the table never keeps a dataset (or its pipeline's variables) alive.
_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def describe(dataset, **fields):
    """Record ``fields`` of :class:`DatasetInfo` for ``dataset`` and return it.

    Fields not given keep their recorded value (or the default).

    Args:
        dataset: a ``tf.data.Dataset``.
        **fields: ``augmented``, ``pass_counter``, ``shuffle``, ``epoch_order``.

    Returns:
        ``dataset`` itself.

    Raises:
        TypeError: an unknown field.

    Example:
        >>> train = ktl.data.describe(my_augmented_pipeline, augmented=True)
    """
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise TypeError(f"Unknown DatasetInfo field(s) {unknown}. Known: {sorted(_FIELDS)}")
    _INFO[dataset] = dataclasses.replace(dataset_info(dataset), **fields)
    return dataset


def dataset_info(dataset) -> DatasetInfo:
    """The info recorded for exactly ``dataset`` (defaults when there is none)."""
    try:
        return _INFO.get(dataset) or DatasetInfo()
    except TypeError:  # not weak-referenceable / not hashable: not a kerastl dataset
        return DatasetInfo()


def carry_order(result, source):
    """Give ``result`` (built on ``source`` keeping its order) ``source``'s pass counter."""
    info = dataset_info(source)
    if info.pass_counter is not None:
        describe(result, pass_counter=info.pass_counter, shuffle=info.shuffle)
    return result


def is_augmented(dataset) -> bool:
    """Whether ``dataset`` draws new random augmentation each pass, as far as kerastl knows.

    The dataset's own record decides; without one, True when any dataset it
    is built from (through ``map``, ``batch``, ``zip``...) is recorded augmented.
    """
    seen: set[int] = set()
    pending = [dataset]
    while pending:
        ds = pending.pop()
        if id(ds) in seen:
            continue
        seen.add(id(ds))
        augmented = dataset_info(ds).augmented
        if augmented is not None:
            if augmented:
                return True
            continue  # a stated False covers what the dataset is built from
        pending.extend(_compat.dataset_inputs(ds))
    return False
