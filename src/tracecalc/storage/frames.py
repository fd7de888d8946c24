"""The frame of an in-memory evaluation (``Engine.evaluate``): one row per (period,
entity) where some expression has a value, one column per expression."""

from __future__ import annotations

import numpy as np

from tracecalc.storage.lazy import pandas as pd


def tidy_frame(codes: np.ndarray, ids: np.ndarray,
               columns: dict[str, tuple[np.ndarray, np.ndarray]],
               frequencies: dict[str, str]):
    """``columns``: label -> (calendar, panel over it x ``ids``). Returns a DataFrame with
    columns period (``datetime64[s]``), entity, then the labels in order, sorted by period
    then entity code; ``attrs["frequencies"]`` maps each label to its frequency. Expressions
    of one frequency share their rows; those of several are joined on (period, entity)."""
    groups: dict[str, list[str]] = {}
    for label in columns:
        groups.setdefault(frequencies[label], []).append(label)
    parts = []
    for labels in groups.values():
        cal = columns[labels[0]][0]
        present = np.zeros((len(cal), len(ids)), bool)
        for label in labels:
            present |= ~np.isnan(columns[label][1])
        r, c = np.nonzero(present)  # row-major: by period, then entity id
        everywhere = len(r) == present.size  # the usual case after a warm-up
        parts.append((cal[r].astype("datetime64[D]").astype(np.int64), ids[c],
                      {label: columns[label][1].ravel().copy() if everywhere  # not a gather
                       else columns[label][1][present] for label in labels}))
    if len(parts) == 1:
        days, ents, values = parts[0]
    else:  # an outer join on (period, entity)
        width = np.int64(max(int(ids.max(initial=0)) + 1, 1))
        keys = [p[0] * width + p[1] for p in parts]
        union = np.unique(np.concatenate(keys))
        days, ents = union // width, union % width
        values = {}
        for key, (_, _, vals) in zip(keys, parts):
            at = np.searchsorted(union, key)
            for label, v in vals.items():
                values[label] = np.full(len(union), np.nan)
                values[label][at] = v
    rank = np.zeros(len(codes), np.int64)  # entity id -> place of its code in code order
    rank[ids[np.argsort(codes[ids].astype(str), kind="stable")]] = np.arange(len(ids))
    by_code = rank[ents]
    if len(parts) > 1 or ((np.diff(by_code) < 0) & (np.diff(days) == 0)).any():
        # (else ids follow the codes' order within each period: the rows are in order)
        order = np.lexsort((by_code, days))
        days, ents = days[order], ents[order]
        values = {label: v[order] for label, v in values.items()}
    df = pd.DataFrame({
        "period": days.astype("datetime64[D]").astype("datetime64[s]"),
        "entity": codes[ents] if len(ents) else np.empty(0, dtype=object),
        **{label: values[label] for label in columns}}, copy=False)  # each column its own
    df.attrs["frequencies"] = dict(frequencies)
    return df
