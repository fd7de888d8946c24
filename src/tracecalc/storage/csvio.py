"""Reading CSV files and frames as text, whole or a chunk of rows at a time, every reading
problem turned into a ``DataError`` with its row."""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Iterator

import numpy as np

from tracecalc.errors import DataError
from tracecalc.storage.lazy import pandas as pd

MAX_ENTITY_CODE = 64
_QUOTE = ' (a field with a comma in it needs double quotes: "ts_mean(x, 5)")'


def _read_csv(source, label: str) -> pd.DataFrame:
    """A whole CSV file as text columns."""
    return next(_csv_chunks(source, label, None))


def _csv_chunks(source, label: str, rows: int | None) -> Iterator[pd.DataFrame]:
    """A CSV file as text columns, ``rows`` rows at a time (None: all at once). A header
    without rows gives one empty frame, so the columns can always be checked."""
    reader = _reading(source, label, lambda: pd.read_csv(
        source, dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False,
        chunksize=rows))
    if rows is None:
        yield reader
        return
    with reader:
        while True:
            chunk = _reading(source, label, lambda: next(reader, None))
            if chunk is None:
                return
            yield chunk


def _reading(source, label: str, read):
    try:
        with warnings.catch_warnings():
            # index_col=False: never take a first column as the index when rows are longer
            # than the header; pandas only warns about that, so the warning becomes an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return read()
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", source=label) from None
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", source=label) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:  # pandas names the line for rows after the first
            raise DataError(f"not a valid CSV file: {m[3]} fields where the header has {m[1]}"
                            f"{_QUOTE}", row=int(m[2]), source=label) from None
        bad = _ragged_row(source)
        if bad is not None:
            raise DataError(f"not a valid CSV file: {bad[1]} fields where the header has "
                            f"{bad[2]}{_QUOTE}", row=bad[0], source=label) from None
        raise DataError(f"not a valid CSV file: {e}", source=label) from None
    except FileNotFoundError:
        raise DataError("no such file", source=label) from None
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", source=label) from None


def _ragged_row(source) -> tuple[int, int, int] | None:
    """(row, fields, header fields) of the first row whose length differs from the
    header's, for the errors pandas gives without a line."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        with open(source, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            width = len(next(rows, []))
            for i, row in enumerate(rows, start=2):
                if row and len(row) != width:
                    return i, len(row), width
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _frame(data, label: str) -> tuple[pd.DataFrame, str]:
    if isinstance(data, pd.DataFrame):
        return data.copy(), label or "data frame"
    if isinstance(data, (str, os.PathLike)):
        return _read_csv(data, str(data)), str(data)
    if isinstance(data, io.IOBase):
        return _read_csv(data, label or "stream"), label or "stream"
    raise DataError(f"cannot read data from {type(data).__name__}", source=label)


def frame_chunks(data, label: str, rows: int) -> tuple[Iterator[pd.DataFrame], str]:
    """A data file or frame ``rows`` rows at a time, and its label for messages."""
    if isinstance(data, pd.DataFrame):
        n = len(data)
        return (data.iloc[lo:lo + rows] for lo in range(0, max(n, 1), rows)), \
            label or "data frame"
    if isinstance(data, (str, os.PathLike)):
        return _csv_chunks(data, str(data), rows), str(data)
    if isinstance(data, io.IOBase):
        return _csv_chunks(data, label or "stream", rows), label or "stream"
    raise DataError(f"cannot read data from {type(data).__name__}", source=label)


def count_lines(data) -> int | None:
    """The lines of a file (a fast count of newlines, for a progress bar); None if not a
    file."""
    if not isinstance(data, (str, os.PathLike)):
        return None
    try:
        with open(data, "rb") as f:
            return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return None


def _text(col: pd.Series) -> pd.Series:
    return col.map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x))
                   else str(x))


def _good_code(s: str) -> bool:
    return (0 < len(s) <= MAX_ENTITY_CODE and s == s.strip() and s.isprintable())
