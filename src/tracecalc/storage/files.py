"""Reading and checking input files (data, entities, formulas) and shaping output frames.

Every check runs before anything is written; the first bad row is reported with its number
(1-based, counting the header line, as a spreadsheet shows it) and the reason.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracecalc.errors import DataError, clip
from tracecalc.model import FUNCTION_NAMES, NAME_RE, Frequency
from tracecalc.storage.dates import (  # noqa: F401 (callers get the dates from files too)
    FIRST_DAY,
    LAST_DAY,
    frequency,
    infer_frequency,
    read_known_at,
    read_periods,
    to_day,
)
from tracecalc.storage.lazy import pandas as pd

DATA_COLUMNS = ("item", "entity", "period", "value")
OPTIONAL_DATA_COLUMNS = ("frequency", "known_at")
MAX_ENTITY_CODE = 64


@dataclass(frozen=True)
class DataBatch:
    """A checked data file: one array per column, NaN values meaning 'delete this point'."""

    items: np.ndarray  # object (str)
    entities: np.ndarray  # object (str)
    periods: np.ndarray  # datetime64[D]
    values: np.ndarray  # float64
    frequencies: dict[str, Frequency]  # declared in a 'frequency' column
    source: str
    # when each value became known (datetime64[D]); None: every value at its period
    known_at: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)


def _read_csv(source, label: str) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # index_col=False: never take a first column as the index when rows are longer
            # than the header; pandas only warns about that, so the warning becomes an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                               index_col=False)
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


_QUOTE = ' (a field with a comma in it needs double quotes: "ts_mean(x, 5)")'


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


def _text(col: pd.Series) -> pd.Series:
    return col.map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x))
                   else str(x))


def read_data(data, label: str = "") -> DataBatch:
    """Check a data file or frame with columns item, entity, period, value [, frequency]
    [, known_at]; ``formula`` may name the item column, as in what ``export`` writes.
    ``known_at`` (a date, on or after the period; empty: the period) says when the value
    became known: one (item, entity, period) may appear once per ``known_at``."""
    df, label = _frame(data, label)
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
    df.columns = cols
    if len(df) == 0:
        raise DataError("no data rows", source=label)
    row_no = np.arange(len(df)) + 2

    item = _text(df["item"]).str.strip()
    bad = ~item.map(lambda s: bool(NAME_RE.match(s)))
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(f"bad item name {clip(item.iloc[i])} (a letter, then letters, digits or _)",
                        row=int(row_no[i]), source=label)
    clash = item.isin(FUNCTION_NAMES)
    if clash.any():
        i = int(np.argmax(clash.to_numpy()))
        raise DataError(f"item name {clip(item.iloc[i])} is a function name", row=int(row_no[i]),
                        source=label)

    ent = _text(df["entity"])
    ok = ent.map(_good_code)
    if not ok.all():
        i = int(np.argmax(~ok.to_numpy()))
        raise DataError(f"bad entity code {clip(ent.iloc[i])} (1 to {MAX_ENTITY_CODE} printable "
                        "characters, no leading or trailing spaces)", row=int(row_no[i]),
                        source=label)

    per = read_periods(df["period"], row_no, label)

    raw = df["value"]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=np.float64)
        empty = np.isnan(values)
        bad_num = np.zeros(len(values), bool)
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
                        "for missing)", row=int(row_no[i]), source=label)
    values = np.where(empty, np.nan, values)

    known = read_known_at(df["known_at"], per, row_no, label) if "known_at" in df.columns \
        else None
    key = pd.DataFrame({"i": item, "e": ent, "p": per})
    if known is not None:
        key["k"] = known
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = row_no[dup][:2]
        at = "" if known is None else f", known_at {known[rows[0] - 2]}"
        raise DataError(f"duplicate key (item {clip(item.iloc[rows[0] - 2])}, entity "
                        f"{clip(ent.iloc[rows[0] - 2])}, period {per[rows[0] - 2]}{at}) "
                        f"also on row {rows[1]}", row=int(rows[0]), source=label)

    freqs: dict[str, Frequency] = {}
    if "frequency" in df.columns:
        ftext = _text(df["frequency"]).str.strip().str.lower()
        for i, (it, f) in enumerate(zip(item, ftext)):
            if not f:
                continue
            fr = frequency(f, row=i + 2, source=label)
            if freqs.setdefault(it, fr) is not fr:
                raise DataError(f"item {clip(it)} declared both {freqs[it]} and {fr}", row=i + 2,
                                source=label)
    return DataBatch(item.to_numpy(dtype=object), ent.to_numpy(dtype=object),
                     per, values, freqs, label, known)


def _good_code(s: str) -> bool:
    return (0 < len(s) <= MAX_ENTITY_CODE and s == s.strip() and s.isprintable())


def read_entities(data, label: str = "") -> list[dict]:
    """Entity attributes: columns code [, name, sector]."""
    df, label = _frame(data, label)
    df.columns = [str(c).strip().lower() for c in df.columns]
    if "code" not in df.columns:
        raise DataError("expected a 'code' column (and optionally name, sector)", row=1,
                        source=label)
    out = []
    seen: set[str] = set()
    for i, r in enumerate(df.to_dict("records")):
        code = "" if r.get("code") is None else str(r["code"])
        if not _good_code(code):
            raise DataError(f"bad entity code {clip(code)}", row=i + 2, source=label)
        if code in seen:
            raise DataError(f"duplicate entity code {clip(code)}", row=i + 2, source=label)
        seen.add(code)
        out.append({"code": code, "name": (r.get("name") or None),
                    "sector": (r.get("sector") or None)})
    return out


def read_formulas(path, label: str = "") -> list[dict]:
    """Formula definitions from CSV (name, expression[, description]) or YAML."""
    p = Path(path)
    label = label or str(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            text = p.read_text(encoding="utf-8")
            doc, node = yaml.safe_load(text), yaml.compose(text)
        except OSError as e:
            raise DataError(f"cannot read the file: {e.strerror}", source=label) from None
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})",
                            source=label) from None
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            raise DataError(f"not valid YAML: {getattr(e, 'problem', None) or e}",
                            row=None if where is None else where.line + 1,
                            source=label) from None
        rows = _yaml_rows(doc, _yaml_lines(node), label)
    else:
        df = _read_csv(path, label)
        df.columns = [str(c).strip().lower() for c in df.columns]
        if not {"name", "expression"} <= set(df.columns):
            raise DataError("expected columns name, expression (and optionally description)",
                            row=1, source=label)
        rows = [{"name": str(r["name"]).strip(), "expression": str(r["expression"]),
                 "description": _description(r), "row": i + 2}
                for i, r in enumerate(df.to_dict("records"))]
    names: dict[str, int] = {}
    for r in rows:
        if r["name"] in names:
            raise DataError(f"formula {clip(r['name'])} is defined twice (first on row "
                            f"{names[r['name']]})", row=r["row"], source=label)
        names[r["name"]] = r["row"]
    if not rows:
        raise DataError("no formulas", source=label)
    return rows


def _yaml_lines(node) -> list[tuple[str | None, int]]:
    """(key, line) of each entry of a formulas document, in document order, repeated keys
    included (a mapping's key; None for a list's entries). Lines are 1-based."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        if "formulas" in keys and not isinstance(keys["formulas"], yaml.ScalarNode):
            return _yaml_lines(keys["formulas"])
        return [(str(k.value), k.start_mark.line + 1) for k, _ in node.value]
    if isinstance(node, yaml.SequenceNode):
        return [(None, v.start_mark.line + 1) for v in node.value]
    return []


def _yaml_rows(doc, lines: list[tuple[str | None, int]], label: str) -> list[dict]:
    # Either a mapping name -> expression | {expression, description}, or a list of mappings,
    # optionally under a top-level key 'formulas'. A row is the entry's line in the file.
    rows = []
    if isinstance(doc, dict) and not isinstance(doc.get("formulas", ""), str):
        doc = doc["formulas"]
    if isinstance(doc, dict):
        # by the document's keys, not the loaded mapping's: a repeated key is an error (a
        # loaded mapping keeps only its last value), and the rows stay right after it
        by_text = {str(k): v for k, v in doc.items()}
        for name, line in lines:
            if name not in by_text:  # a key YAML reads as something else (true, 1.0, ~)
                raise DataError(f"formula name {clip(name)} must be text", row=line,
                                source=label)
            v = by_text[name]
            if isinstance(v, dict):
                if "expression" not in v:
                    raise DataError(f"formula '{name}' has no 'expression'", row=line,
                                    source=label)
                rows.append({"name": str(name), "expression": str(v["expression"]),
                             "description": _description(v), "row": line})
            else:
                rows.append({"name": str(name), "expression": str(v), "description": None,
                             "row": line})
    elif isinstance(doc, list):
        for v, (_, line) in zip(doc, lines):
            if not isinstance(v, dict) or "name" not in v or "expression" not in v:
                raise DataError("each entry needs 'name' and 'expression'", row=line,
                                source=label)
            rows.append({"name": str(v["name"]), "expression": str(v["expression"]),
                         "description": _description(v), "row": line})
    else:
        raise DataError("expected a mapping of name: expression, or a list of entries",
                        source=label)
    return rows


def _description(entry: dict) -> str | None:
    """An entry's description; None where it has none, so a save keeps the stored one."""
    if "description" not in entry:
        return None
    return "" if entry["description"] is None else str(entry["description"])


def records_frame(codes: np.ndarray, entity_ids: np.ndarray, periods: np.ndarray,
                  values: np.ndarray) -> pd.DataFrame:
    """Rows -> DataFrame(entity, period, value), sorted by entity code then period.

    Periods are datetime64[s]: still a datetime column (``.dt``, comparisons), and unlike
    pandas' old nanosecond default it holds every day from 0001 to 9999 exactly."""
    df = pd.DataFrame({
        "entity": codes[entity_ids] if len(entity_ids) else np.empty(0, dtype=object),
        "period": periods.astype("datetime64[D]").astype("datetime64[s]"),
        "value": values,
    })
    return df.sort_values(["entity", "period"], kind="stable").reset_index(drop=True)


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def filter_frame(df: pd.DataFrame, entities=None, start=None, end=None,
                 source: str = "records") -> pd.DataFrame:
    """Rows of ``entities`` (one code, or an iterable of codes) between ``start`` and ``end``
    (inclusive; anything ``read_data`` takes as a date)."""
    keep = np.ones(len(df), bool)
    if entities is not None:
        codes = [entities] if isinstance(entities, str) else list(entities)
        keep &= df["entity"].isin(codes).to_numpy()
    days = df["period"].to_numpy().astype("datetime64[D]")
    if start is not None:
        keep &= days >= to_day(start, "start", source)
    if end is not None:
        keep &= days <= to_day(end, "end", source)
    return df[keep].reset_index(drop=True)


def write_csv(df: pd.DataFrame, target, spreadsheet_safe: bool = False) -> None:
    """Records as CSV that loads back unchanged: ISO dates, each value as the shortest text
    that reads back as the same float64 (``repr``, never "%.17g" digits). With
    ``spreadsheet_safe``, text cells a spreadsheet would run as a formula (first character
    =, +, -, @, tab or CR) get a leading single quote (OWASP's advice against CSV injection);
    such a file is for people, no longer an exact copy."""
    df = df.copy()
    df["period"] = df["period"].dt.strftime("%Y-%m-%d")
    df["value"] = [float.__repr__(v) for v in df["value"].to_numpy(np.float64).tolist()]
    if spreadsheet_safe:
        for c in df.columns.drop(["period", "value"]):
            text = df[c].astype(str)
            df[c] = text.where(~text.str.match(r"[=+\-@\t\r]"), "'" + text)
    df.to_csv(target, index=False)


def concat_records(frames: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    parts = [f.assign(formula=name)[["formula", "entity", "period", "value"]]
             for name, f in frames]
    if not parts:
        return records_frame(np.empty(1, object), np.empty(0, np.int64),
                             np.empty(0, "datetime64[D]"), np.empty(0)).assign(
            formula=np.empty(0, object))[["formula", "entity", "period", "value"]]
    return pd.concat(parts, ignore_index=True)
