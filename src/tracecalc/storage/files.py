"""Reading and checking input files (data, entities, formulas) and shaping output frames.

Every check runs before anything is written; the first bad row is reported with its number
(1-based, counting the header line, as a spreadsheet shows it) and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracecalc.errors import DataError, clip
from tracecalc.model import NAME_RE
from tracecalc.storage.csvio import (  # noqa: F401 (callers get these from files)
    MAX_ENTITY_CODE,
    _frame,
    _good_code,
    _read_csv,
)
from tracecalc.storage.datafile import (  # noqa: F401
    DATA_COLUMNS,
    OPTIONAL_DATA_COLUMNS,
    DataBatch,
    read_data,
)
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


def read_entities(data, label: str = "") -> list[dict]:
    """Entities and their attributes: a column code, optionally name and sector, and any
    other column an attribute (industry, country; named as a formula names things, case
    ignored). Each row: its code and the value of each column (None where empty)."""
    df, label = _frame(data, label)
    df.columns = [str(c).strip().lower() for c in df.columns]
    if "code" not in df.columns:
        raise DataError("expected a 'code' column (and optionally name, sector and other "
                        "attributes)", row=1, source=label)
    for c in df.columns:
        if not NAME_RE.match(c):
            raise DataError(f"column {clip(c)} is not an attribute name (a letter, then "
                            "letters, digits or _; at most 64 characters)", row=1,
                            source=label)
    if len(set(df.columns)) < len(df.columns):
        dup = next(c for c in df.columns if list(df.columns).count(c) > 1)
        raise DataError(f"column '{dup}' appears twice", row=1, source=label)
    out = []
    seen: set[str] = set()
    for i, r in enumerate(df.to_dict("records")):
        code = "" if r.get("code") is None else str(r["code"])
        if not _good_code(code):
            raise DataError(f"bad entity code {clip(code)}", row=i + 2, source=label)
        if code in seen:
            raise DataError(f"duplicate entity code {clip(code)}", row=i + 2, source=label)
        seen.add(code)
        row = {"code": code}
        for c in df.columns:
            if c != "code":
                v = r.get(c)
                v = None if v is None or v != v else str(v).strip() or None
                if v is not None and len(v) > (200 if c != "sector" else 100):
                    raise DataError(f"{c} {clip(v)} is longer than "
                                    f"{200 if c != 'sector' else 100} characters",
                                    row=i + 2, source=label)
                row[c] = v
        out.append(row)
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
