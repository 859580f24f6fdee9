"""Data quality on frozen features: likely label errors and (near-)duplicates.

Pure numpy (and scikit-learn for the out-of-fold classifier), no TensorFlow:
:func:`kerastl.inspect` extracts the features and calls these.

- :func:`out_of_fold_probabilities`: k-fold logistic regression, each
  example's class probabilities from the model that did not see it.
- :func:`rank_label_errors`: confident learning's self-confidence ranking
  (Northcutt et al. 2021): the out-of-fold probability of the *given* label,
  lowest first, with the suggested label and confident learning's flag.
- :func:`near_duplicates`: pairs of examples whose L2-normalised features have
  a cosine similarity above a threshold; :func:`exact_duplicates`: pairs with
  the same content digest.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from kerastl.errors import DataError, UserInputError, require

log = logging.getLogger(__name__)

#: Rows of the similarity matrix computed at once (memory: BLOCK x N floats).
_BLOCK = 2048


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                              num_classes: int | None = None, C: float | None = None,
                              seed: int = 0) -> tuple[np.ndarray, float]:
    """Class probabilities of each example from a logistic regression that never saw it.

    ``C`` is chosen once by cross-validation over all examples (when
    ``None``), then each of ``folds`` stratified folds is predicted by a
    model fitted on the others (standardised features).

    Returns:
        ``(probabilities (N, num_classes), C)``.

    Raises:
        ValueError: ``folds`` < 2, or a class has fewer than ``folds`` examples.
        ImportError: scikit-learn is missing (``pip install 'kerastl[sklearn]'``).
    """
    from kerastl.transfer.linear import fit_linear_head

    labels = np.asarray(labels).astype(np.int64)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UserInputError(f"folds must be an int >= 2. Received: folds={folds!r}")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    present = counts[counts > 0]
    if len(present) < 2 or present.min() < folds:
        raise DataError(f"Out-of-fold predictions with {folds} folds need 2 or more classes "
                        f"with at least {folds} examples each; the counts are {counts.tolist()}")
    if C is None:
        C = fit_linear_head(features, labels, num_classes=num_classes, seed=seed).C
    model_selection = require("sklearn.model_selection", "sklearn", "Finding label errors")
    splitter = model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed)
    probabilities = np.zeros((len(labels), num_classes))
    for train_idx, test_idx in splitter.split(features, labels):
        head = fit_linear_head(features[train_idx], labels[train_idx], C=C,
                               num_classes=num_classes, seed=seed)
        logits = head.logits(features[test_idx])
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities[test_idx] = exp / exp.sum(axis=1, keepdims=True)
    return probabilities, float(C)


@dataclasses.dataclass
class LabelRanking:
    """Examples ordered from the most to the least likely mislabelled.

    Attributes:
        order: example indices, lowest self-confidence first.
        self_confidence: ``(N,)`` out-of-fold probability of each given label.
        suggested: ``(N,)`` the most probable class out of fold.
        flagged: ``(N,)`` confident learning's label issues: the suggested
            class differs from the given one and its probability reaches that
            class's threshold (the mean self-confidence of its examples).
    """

    order: np.ndarray
    self_confidence: np.ndarray
    suggested: np.ndarray
    flagged: np.ndarray


def rank_label_errors(probabilities: np.ndarray, labels: np.ndarray) -> LabelRanking:
    """Rank examples by self-confidence (confident learning), lowest first.

    Ties keep the order of the examples (a stable sort), so rankings repeat.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    rows = np.arange(len(labels))
    confidence = probabilities[rows, labels]
    suggested = probabilities.argmax(axis=1)
    thresholds = np.ones(probabilities.shape[1])  # a class without examples: never reached
    for cls in np.unique(labels):
        thresholds[cls] = confidence[labels == cls].mean()
    flagged = (suggested != labels) & (probabilities[rows, suggested] >= thresholds[suggested])
    order = np.argsort(confidence, kind="stable")
    return LabelRanking(order=order, self_confidence=confidence, suggested=suggested,
                        flagged=flagged)


def near_duplicates(features: np.ndarray, threshold: float = 0.98,
                    ) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine similarity)``, ``i < j``, of L2-normalised features >= ``threshold``.

    Sorted by similarity, highest first. Computed in blocks of rows, so memory
    stays ``O(block x N)``.
    """
    if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
            and -1.0 <= threshold <= 1.0):
        raise UserInputError(f"threshold must be a cosine similarity in [-1, 1]. "
                             f"Received: threshold={threshold!r}")
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    pairs = []
    for start in range(0, len(x), _BLOCK):
        block = x[start:start + _BLOCK] @ x.T
        rows, cols = np.nonzero(block >= threshold - 1e-6)
        rows = rows + start
        keep = cols > rows
        pairs.extend(zip(rows[keep].tolist(), cols[keep].tolist(),
                         block[rows[keep] - start, cols[keep]].astype(float).tolist(),
                         strict=True))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs


def exact_duplicates(digests: list[str]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of examples with the same digest (e.g. file sha256)."""
    groups: dict[str, list[int]] = {}
    for index, digest in enumerate(digests):
        groups.setdefault(digest, []).append(index)
    return sorted((a, b) for members in groups.values() if len(members) > 1
                  for k, a in enumerate(members) for b in members[k + 1:])
