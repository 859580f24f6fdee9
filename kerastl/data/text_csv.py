"""Read the text and label columns of a CSV file, with a reason for each row left out."""

from __future__ import annotations

import contextlib
import csv
import io
import os

from kerastl.data.header import open_regular
from kerastl.data.text_files import decode_text
from kerastl.errors import DataError, UserInputError, close_matches


@contextlib.contextmanager
def _field_limit(size: int):
    """Let one field hold ``size`` characters (csv's default stops at 131,072); restored after."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, size))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read(file: str) -> bytes:
    if not os.path.exists(file):
        raise UserInputError(f"CSV file not found: {file!r}")
    if os.path.isdir(file):
        raise UserInputError(f"{file!r} is a folder; text_csv reads one CSV file (for class "
                             "subfolders of .txt files use ktl.data.text_folder).")
    try:
        with open_regular(file) as f:
            return f.read()
    except UserInputError as err:  # a FIFO or device: never read
        raise UserInputError(f"{err}; text_csv reads a regular CSV file.") from None
    except OSError as err:
        raise UserInputError(f"Cannot read {file!r}: {err.strerror or err}") from None


def _missing_columns(file: str, header: list[str], wanted: list[str]) -> DataError:
    missing = [c for c in wanted if c not in header]
    hints = [f"{c!r} -> {m[0]!r}?" for c in missing if (m := close_matches(c, header, n=1))]
    return DataError(
        f"{file!r} has no column {' or '.join(repr(c) for c in missing)}. Columns found: "
        f"{', '.join(header) or '(none)'}. Pass text_column= and label_column= naming the "
        "text and label columns." + (f" Did you mean {', '.join(hints)}" if hints else ""))


def read_text_csv(file: str, text_column: str, label_column: str, *, encoding: str = "utf-8",
                  delimiter: str = ","):
    """``([(text, label), ...], skipped)`` of a CSV file with a header row.

    Rows are numbered as a spreadsheet shows them: the header is row 1 and a
    quoted field spanning lines still makes one row. Blank lines are ignored;
    rows with an empty text or label, or with another number of fields than
    the header, go to ``skipped`` as ``(file, "row N: ...")``.

    Raises:
        UserInputError: the file is missing, a folder or not a regular file.
        DataError: not text in ``encoding``, no header, a missing column, or
            a line the csv module cannot parse.
    """
    content, reason = decode_text(_read(file), encoding)
    if content is None:
        raise DataError(f"{file!r}: {reason}. text_csv reads a text CSV file; re-save it as "
                        "UTF-8 or pass encoding=.")
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    rows, skipped = [], []
    with _field_limit(len(content) + 1):
        try:
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise DataError(f"{file!r} has no header row; its first line must name the "
                                f"columns, e.g. {text_column},{label_column}")
            if text_column not in header or label_column not in header:
                raise _missing_columns(file, header, [text_column, label_column])
            t, y = header.index(text_column), header.index(label_column)
            for number, row in enumerate(reader, start=2):
                if not row:
                    continue
                why = (f"{len(row)} fields, the header has {len(header)}"
                       if len(row) != len(header)
                       else "empty text" if not row[t].strip()
                       else "empty label" if not row[y].strip() else None)
                if why is None:
                    rows.append((row[t], row[y].strip()))
                else:
                    skipped.append((file, f"row {number}: {why}"))
        except csv.Error as err:
            raise DataError(f"{file!r} line {reader.line_num}: not valid CSV ({err}).") from None
    return rows, skipped
