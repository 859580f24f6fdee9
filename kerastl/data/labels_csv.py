"""Read a labels CSV for multi-label image folders."""

from __future__ import annotations

import csv
import os
import re

from kerastl.data.splits import check_class_name
from kerastl.errors import DataError, UserInputError

_TAG_COLUMNS = ("labels", "label", "tags", "classes")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test", "testing": "test"}


def read_labels_csv(csv_path: str, root: str):
    """Parse a labels CSV.

    Two layouts are accepted, both with a header row whose first column is the
    image path relative to ``root``:

    - a tags column named ``labels``/``label``/``tags``/``classes`` holding class
      names separated by spaces, ``;``, ``|`` or ``,``:
      ``filename,labels`` / ``a.jpg,cat dog``;
    - one 0/1 column per class: ``filename,cat,dog`` / ``a.jpg,1,1``.

    An optional ``split`` column (train/val/test) assigns files to splits.

    Returns:
        ``(rows, class_names)``: rows are ``(absolute path, set of class names,
        split or None)``; class names are sorted.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: a malformed CSV (the message names the row).
    """
    if not os.path.isabs(csv_path) and not os.path.exists(csv_path):
        csv_path = os.path.join(root, csv_path)
    if not os.path.isfile(csv_path):
        raise UserInputError(f"labels_csv not found: {csv_path!r}")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"labels_csv {csv_path!r} is empty; it needs a header row.") from None
        rows = [r for r in reader if any(cell.strip() for cell in r)]
    if len(header) < 2:
        raise DataError(
            f"labels_csv {csv_path!r} needs a header with the file column and a labels column "
            "(or one 0/1 column per class). Received header: " + ",".join(header)
        )
    lowered = [h.lower() for h in header]
    split_col = lowered.index("split") if "split" in lowered else None
    tag_col = next((lowered.index(c) for c in _TAG_COLUMNS if c in lowered), None)
    class_cols = [i for i in range(1, len(header)) if i not in (split_col, tag_col)]
    out = []
    names: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"labels_csv {csv_path!r} line {line}: expected {len(header)} "
                            f"columns, found {len(row)}.")
        path = os.path.normpath(os.path.join(root, row[0].strip()))
        if tag_col is not None:
            tags = {t for t in re.split(r"[\s;|,]+", row[tag_col].strip()) if t}
        else:
            tags = set()
            for i in class_cols:
                value = row[i].strip()
                if value not in ("0", "1", ""):
                    raise DataError(f"labels_csv {csv_path!r} line {line}: column "
                                    f"{header[i]!r} must be 0 or 1, found {value!r}.")
                if value == "1":
                    tags.add(header[i])
        split = None
        if split_col is not None:
            value = row[split_col].strip().lower()
            if value and value not in _SPLIT_NAMES:
                raise DataError(f"labels_csv {csv_path!r} line {line}: split must be train, "
                                f"val or test, found {row[split_col]!r}.")
            split = _SPLIT_NAMES.get(value)
        names |= tags
        out.append((path, tags, split))
    if tag_col is None:
        names |= {header[i] for i in class_cols}
    if not out:
        raise DataError(f"labels_csv {csv_path!r} lists no files.")
    for name in names:
        check_class_name(name, f"class in labels_csv {csv_path!r}")
    return out, sorted(names)
