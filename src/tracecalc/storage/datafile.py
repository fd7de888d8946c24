"""Reading and checking a data file (item, entity, period, value [, frequency] [, known_at])
a chunk of rows at a time, with vectorised checks, into compact arrays.

Text columns repeat a few values many times (items, entities, dates), so each chunk's
distinct values are checked once and the rows carry integer codes; only the values are
checked row by row, by numpy. Memory stays bounded by the chunk, plus about 30 bytes a row
for the whole file's arrays. Within a chunk the checks run in the order below and each
reports its first bad row; a file of several chunks reports the first bad chunk's problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tracecalc.errors import DataError, clip
from tracecalc.model import FUNCTION_NAMES, NAME_RE, Frequency
from tracecalc.storage.csvio import (
    MAX_ENTITY_CODE,
    _good_code,
    _text,
    count_lines,
    frame_chunks,
)
from tracecalc.storage.dates import FIRST_DAY, frequency, read_known_at, read_periods
from tracecalc.storage.lazy import pandas as pd

DATA_COLUMNS = ("item", "entity", "period", "value")
OPTIONAL_DATA_COLUMNS = ("frequency", "known_at")
CHUNK_ROWS = 500_000  # rows read and checked at a time: ~150 MB of text at most


@dataclass(frozen=True)
class DataBatch:
    """A checked data file: one array per column, NaN values meaning 'delete this point'.
    Items and entities are codes into their distinct names (in order of first appearance)."""

    item_codes: np.ndarray  # int64, into item_names
    item_names: np.ndarray  # object (str), distinct
    entity_codes: np.ndarray  # int64, into entity_names
    entity_names: np.ndarray  # object (str), distinct
    periods: np.ndarray  # datetime64[D]
    values: np.ndarray  # float64
    frequencies: dict[str, Frequency]  # declared in a 'frequency' column
    source: str
    # when each value became known (datetime64[D]); None: every value at its period
    known_at: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def items(self) -> np.ndarray:
        return self.item_names[self.item_codes]

    @property
    def entities(self) -> np.ndarray:
        return self.entity_names[self.entity_codes]


@dataclass
class _Codes:
    """Distinct names seen so far, in order of first appearance, and their codes."""

    index: dict[str, int] = field(default_factory=dict)

    def codes(self, names: np.ndarray) -> np.ndarray:
        return np.array([self.index.setdefault(n, len(self.index)) for n in names.tolist()],
                        dtype=np.int64)

    def names(self) -> np.ndarray:
        return np.array(list(self.index), dtype=object).reshape(-1)


def read_data(data, label: str = "", *, chunk_rows: int | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> DataBatch:
    """Check a data file or frame with columns item, entity, period, value [, frequency]
    [, known_at]; ``formula`` may name the item column, as in what ``export`` writes.
    ``known_at`` (a date, on or after the period; empty: the period) says when the value
    became known: one (item, entity, period) may appear once per ``known_at``. The file is
    read ``chunk_rows`` (default ``CHUNK_ROWS``) rows at a time; ``progress(rows read,
    rows, what)`` after each when there are several."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    chunks, label = frame_chunks(data, label, chunk_rows)
    lines = count_lines(data) if progress is not None else None
    total = len(data) if isinstance(data, pd.DataFrame) else max(0, (lines or 1) - 1)
    items, ents = _Codes(), _Codes()
    parts: list[tuple] = []
    seen = 0
    has_known = False
    for chunk in chunks:
        cols = _columns(chunk, label)
        has_known = "known_at" in cols
        part = _check(chunk.set_axis(cols, axis=1), seen, label, items, ents)
        parts.append(part)
        seen += len(chunk)
        if progress is not None and total > chunk_rows:  # a file of several chunks
            progress(seen, max(total, seen), f"reading {label}")
    if seen == 0:
        raise DataError("no data rows", source=label)
    *arrays, declared = zip(*parts, strict=True)
    ic, ec, per, val, known = (np.concatenate(c) if c[0] is not None else None
                               for c in arrays)
    batch = DataBatch(ic, items.names(), ec, ents.names(), per, val, {}, label,
                      known if has_known else None)
    _no_duplicates(batch)
    batch.frequencies.update(_frequencies([d for part in declared for d in part], label))
    return batch


def _columns(df: pd.DataFrame, label: str) -> list[str]:
    cols = [str(c).strip().lower() for c in df.columns]
    if "formula" in cols and "item" not in cols:  # what export writes loads back
        cols[cols.index("formula")] = "item"
    missing = [c for c in DATA_COLUMNS if c not in cols]
    extra = [c for c in cols if c not in (*DATA_COLUMNS, *OPTIONAL_DATA_COLUMNS)]
    if missing or extra:
        raise DataError(
            f"expected columns item, entity, period, value (and optionally frequency, "
            f"known_at); "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}", row=1, source=label)
    return cols


def _distinct(col: pd.Series):
    """(codes per row, distinct values as a Series of the column's dtype, each distinct
    value's first row)."""
    codes, uniq = pd.factorize(col, use_na_sentinel=False)
    _, first = np.unique(codes, return_index=True)
    return codes.astype(np.int64), pd.Series(uniq, dtype=col.dtype), first


def _first_bad(bad_distinct: np.ndarray, first: np.ndarray) -> int:
    """The first row (in the chunk) holding one of the bad distinct values."""
    return int(first[bad_distinct].min())


def _check(df: pd.DataFrame, offset: int, label: str, items: _Codes, ents: _Codes) -> tuple:
    """One chunk's checked columns: (item codes, entity codes, periods, values, known_at,
    frequency declarations)."""
    df = df.reset_index(drop=True)
    n = len(df)
    base = offset + 2  # a row's number: 1-based, counting the header line

    icodes, iuniq, ifirst = _distinct(df["item"])
    inames = _text(iuniq).str.strip()
    bad = ~inames.map(lambda s: bool(NAME_RE.match(s))).to_numpy(bool)
    if bad.any():
        i = _first_bad(bad, ifirst)
        raise DataError(f"bad item name {clip(inames.iloc[icodes[i]])} (a letter, then "
                        "letters, digits or _)", row=base + i, source=label)
    clash = inames.isin(FUNCTION_NAMES).to_numpy(bool)
    if clash.any():
        i = _first_bad(clash, ifirst)
        raise DataError(f"item name {clip(inames.iloc[icodes[i]])} is a function name",
                        row=base + i, source=label)
    item_codes = items.codes(inames.to_numpy(object))[icodes]

    ecodes, euniq, efirst = _distinct(df["entity"])
    enames = _text(euniq)
    ok = enames.map(_good_code).to_numpy(bool)
    if not ok.all():
        i = _first_bad(~ok, efirst)
        raise DataError(f"bad entity code {clip(enames.iloc[ecodes[i]])} (1 to "
                        f"{MAX_ENTITY_CODE} printable characters, no leading or trailing "
                        "spaces)", row=base + i, source=label)
    entity_codes = ents.codes(enames.to_numpy(object))[ecodes]

    pcodes, puniq, pfirst = _distinct(df["period"])
    per = read_periods(puniq, base + pfirst, label)[pcodes]

    values = _values(df["value"], base, label)

    known = None
    if "known_at" in df.columns:
        known = read_known_at(df["known_at"].reset_index(drop=True), per, base + np.arange(n),
                              label)
    declared = _declared(df, inames.to_numpy(object)[icodes], base) \
        if "frequency" in df.columns else []
    return item_codes, entity_codes, per, values, known, declared


def _values(raw: pd.Series, base: int, label: str) -> np.ndarray:
    """The value column as float64: a finite number, or empty (NaN: delete the point)."""
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=np.float64)
        empty = np.isnan(values)
        bad_num = np.zeros(len(values), bool)
    elif pd.api.types.infer_dtype(raw, skipna=False) == "string":
        # text (a CSV): numbers parse in C; only what did not parse is looked at again
        values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, copy=True)
        empty = np.zeros(len(values), bool)
        bad_num = np.zeros(len(values), bool)
        again = np.flatnonzero(np.isnan(values))
        if len(again):
            text = raw.iloc[again].str.strip()
            blank = (text == "").to_numpy()
            got = pd.to_numeric(text.where(~blank, "nan"), errors="coerce").to_numpy(np.float64)
            values[again] = got
            empty[again] = blank
            bad_num[again] = (np.isnan(got) & ~blank) | \
                text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
    else:
        vtext = _text(raw).str.strip()
        empty = (vtext == "").to_numpy()
        values = pd.to_numeric(vtext.where(~empty, "nan"), errors="coerce").to_numpy(np.float64)
        bad_num = np.isnan(values) & ~empty
        lowered = vtext.str.lower()
        bad_num |= lowered.isin(["nan", "+nan", "-nan"]).to_numpy()
    bad_num |= np.isinf(values)
    if bad_num.any():
        i = int(np.argmax(bad_num))
        raise DataError(f"bad value {clip(str(raw.iloc[i]))} (expected a finite number, or empty "
                        "for missing)", row=base + i, source=label)
    return np.where(empty, np.nan, values)


def _declared(df: pd.DataFrame, item: np.ndarray, base: int) -> list[tuple]:
    """(row, item, frequency text) of each distinct declaration, in row order."""
    ftext = _text(df["frequency"]).str.strip().str.lower().to_numpy(object)
    pairs = pd.DataFrame({"i": item, "f": ftext}).drop_duplicates()
    pairs = pairs[pairs["f"] != ""]
    return list(zip((base + pairs.index.to_numpy()).tolist(), pairs["i"].tolist(),
                    pairs["f"].tolist()))


def _frequencies(declared: list[tuple], label: str) -> dict[str, Frequency]:
    freqs: dict[str, Frequency] = {}
    for row, it, f in declared:
        fr = frequency(f, row=row, source=label)
        if freqs.setdefault(it, fr) is not fr:
            raise DataError(f"item {clip(it)} declared both {freqs[it]} and {fr}", row=row,
                            source=label)
    return freqs


def _no_duplicates(b: DataBatch) -> None:
    """Each (item, entity, period[, known_at]) once in the whole file."""
    days = (b.periods - FIRST_DAY).astype(np.int64)  # 0001-01-01 .. 9999-12-31: 22 bits
    if b.known_at is None and len(b.item_names) < (1 << 16) and \
            len(b.entity_names) < (1 << 25):
        key = (b.item_codes << 47) | (b.entity_codes << 22) | days
        srt = np.sort(key)
        if not (srt[1:] == srt[:-1]).any():  # the usual case: one sort, no more
            return
        order = np.argsort(key)
        same = key[order][1:] == key[order][:-1]
        dup = np.zeros(len(key), bool)
        dup[order[1:][same]] = dup[order[:-1][same]] = True
        first = int(np.argmax(dup))
        again = int(np.flatnonzero(key == key[first])[1])
    else:
        cols = {"i": b.item_codes, "e": b.entity_codes, "p": days}
        if b.known_at is not None:
            cols["k"] = b.known_at.astype(np.int64)
        key = pd.DataFrame(cols)
        dup = key.duplicated(keep=False).to_numpy()
        if not dup.any():
            return
        first = int(np.argmax(dup))
        again = int(np.flatnonzero(dup & (key == key.iloc[first]).all(axis=1).to_numpy())[1])
    at = "" if b.known_at is None else f", known_at {b.known_at[first]}"
    raise DataError(f"duplicate key (item {clip(b.item_names[b.item_codes[first]])}, entity "
                    f"{clip(b.entity_names[b.entity_codes[first]])}, period "
                    f"{b.periods[first]}{at}) also on row {again + 2}", row=first + 2,
                    source=b.source)
