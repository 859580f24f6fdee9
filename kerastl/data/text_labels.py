"""Labels of text sources: names to indices, a seeded sample per class, seeded splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kerastl.data.splits import check_class_name, stratified_split
from kerastl.errors import DataError, UserInputError


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _sorted_names(names: set[str]) -> list[str]:
    """Sorted; numerically when every name is an integer (``"2"`` before ``"10"``)."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def _check_names(class_names) -> list[str]:
    if isinstance(class_names, str) or not hasattr(class_names, "__iter__"):
        raise UserInputError(f"class_names must be a list of strings. Received: {class_names!r}")
    names = list(class_names)
    for name in names:
        if not isinstance(name, str):
            raise UserInputError(f"class_names must be strings. Received: {name!r} "
                                 f"({type(name).__name__})")
        check_class_name(name)
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise UserInputError(f"class_names repeat {dupes}; each class is named once.")
    if len(names) < 2:
        raise UserInputError(f"class_names must name at least two classes. Received: {names}")
    return names


def class_indices(labels: Sequence, class_names: Sequence[str] | None = None):
    """``(int indices, class names)`` of labels that are all ints or all strings.

    Raises:
        UserInputError: labels mix kinds or are neither; an int is out of range
            or a string is not in ``class_names``.
        DataError: fewer than two classes when the names come from the labels.
    """
    names = _check_names(class_names) if class_names is not None else None
    if all(_is_int(y) for y in labels):
        values = [int(y) for y in labels]
        if names is None:
            if min(values) < 0:
                raise UserInputError(f"Integer labels must be class indices >= 0. Received: "
                                     f"{min(values)}")
            names = [str(i) for i in range(max(values) + 1)]
        bad = sorted({y for y in values if not 0 <= y < len(names)})
        if bad:
            raise UserInputError(f"Integer labels must be in [0, {len(names)}) for the classes "
                                 f"{names}. Received: {bad[:5]}")
    elif all(isinstance(y, str) for y in labels):
        if names is None:
            names = _sorted_names({str(y) for y in labels})
            for name in names:
                check_class_name(name, "label")
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({y for y in labels if y not in index})
        if unknown:
            raise UserInputError(f"Labels {unknown[:5]} are not in class_names {names}. Pass "
                                 "class_names listing every label, or leave it out.")
        values = [index[y] for y in labels]
    else:
        i, first = next(((i, y) for i, y in enumerate(labels)
                         if not (_is_int(y) or isinstance(y, str))), (None, None))
        if i is None:
            raise UserInputError("labels must be all ints (class indices) or all strings "
                                 "(class names), not a mix of both.")
        raise UserInputError("labels must be all ints (class indices) or all strings (class "
                             f"names). Received: labels[{i}]={first!r} ({type(first).__name__})")
    if len(names) < 2:
        raise DataError(f"A classifier needs at least two classes; every label is {names[0]!r}.")
    return values, names


def sample_per_class(labels: Sequence[int], max_per_class: int | None, seed: int) -> list[int]:
    """Indices of at most ``max_per_class`` examples per class (seeded), ascending."""
    if max_per_class is None:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) > max_per_class:
            members = rng.permutation(members)[:max_per_class]
        keep += members.tolist()
    return sorted(keep)


def cut_splits(labels: Sequence[int], validation_split: float, test_split: float,
               seed: int) -> dict[str, np.ndarray]:
    """``{"train", "val", "test"}`` index arrays, stratified by label and seeded.

    The test split is cut first, then validation from the rest, each a share of
    all the examples. With ``test_split=0`` the validation split is exactly
    :func:`kerastl.data.stratified_split` of ``labels``, as image sources cut it.
    """
    labels = list(labels)
    everything = np.arange(len(labels))
    rest, test = (stratified_split(labels, test_split, seed) if test_split > 0
                  else (everything, everything[:0]))
    fraction = validation_split / (1.0 - test_split)
    train, val = stratified_split([labels[i] for i in rest], fraction, seed)
    return {"train": rest[train], "val": rest[val], "test": test}
