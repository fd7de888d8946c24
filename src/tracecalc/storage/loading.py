"""Loading a checked data file: new items and entities, then only the points whose
value changed, then the calendars."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection

from tracecalc.errors import DataError, clip, plural
from tracecalc.model import Frequency
from tracecalc.storage import bulk
from tracecalc.storage.files import DataBatch, infer_frequency


@dataclass
class LoadChanges:
    items: list[str] = field(default_factory=list)
    new_items: list[str] = field(default_factory=list)
    new_entities: int = 0
    new_entity_codes: list[str] = field(default_factory=list)  # sorted
    new_entity_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    grown_calendars: set[str] = field(default_factory=set)  # frequencies with new periods
    added_periods: dict[str, np.ndarray] = field(default_factory=dict)  # frequency -> new
    calendars_before: dict[str, np.ndarray] = field(default_factory=dict)  # of grown ones
    removed_periods: dict[str, np.ndarray] = field(default_factory=dict)  # no data left
    changed_items: list[str] = field(default_factory=list)
    changed_entities: dict[str, np.ndarray] = field(default_factory=dict)


class LoadingMixin:
    """``load_batch``: the upsert of a data file (``Store``)."""

    def load_batch(self, conn: Connection, batch: DataBatch, declared: dict[str, Frequency],
                   *, allow_new_entities: bool = True, progress=None) -> LoadChanges:
        """Upsert a checked batch: new items and entities, then per item only the points
        whose value changed (inserted, updated, or deleted where the new value is empty);
        then the calendars gain the new periods and lose those no data is at any more.
        ``progress(rows done, rows, what)`` is told before each item is written."""
        out = LoadChanges()
        known = self.items(conn)
        codes = self.entity_ids(conn)
        uniq_codes, inv = np.unique(batch.entities.astype(str), return_inverse=True)
        new_codes = [c for c in uniq_codes.tolist() if c not in codes]
        if new_codes and not allow_new_entities:
            first = int(np.argmax(np.isin(uniq_codes, new_codes)[inv]))  # in file order
            code = str(uniq_codes[inv[first]])
            listed = ", ".join(new_codes[:3]) + (", ..." if len(new_codes) > 3 else "")
            raise DataError(
                f"unknown entity {clip(code)} ({plural(len(new_codes), 'new entity')} in the file: "
                f"{listed}); load them first (load-entities), or allow new entities (without "
                "--no-new-entities)", row=first + 2, source=batch.source)
        if new_codes:
            codes = self.add_entities(conn, new_codes)
        out.new_entity_codes = new_codes
        out.new_entities = len(new_codes)
        out.new_entity_ids = np.sort(np.array([codes[c] for c in new_codes], dtype=np.int64))
        all_eids = np.array([codes[c] for c in uniq_codes.tolist()], dtype=np.int64)[inv]
        order = np.argsort(batch.items, kind="stable")
        names, starts = np.unique(batch.items[order], return_index=True)
        bounds = list(starts[1:]) + [len(order)]
        present: dict[str, list[np.ndarray]] = {}  # frequency -> periods with data now
        emptied: dict[str, list[np.ndarray]] = {}  # frequency -> periods that lost points
        for name, lo, hi in zip(names.tolist(), starts.tolist(), bounds):
            if progress is not None:
                progress(lo, len(order), f"writing {name}")
            idx = order[lo:hi]
            eids, pers, vals = all_eids[idx], batch.periods[idx], batch.values[idx]
            out.items.append(name)
            if name in known:
                item_id, freq = known[name]
                if name in declared and declared[name] != freq:
                    raise DataError(f"item '{name}' is {freq}; the file declares "
                                    f"{declared[name]}", source=batch.source)
            else:
                freq = declared.get(name) or infer_frequency(pers[~np.isnan(vals)])
                if freq is None:
                    raise DataError(
                        f"cannot infer the frequency of new item '{name}' from its periods; "
                        "declare it (a 'frequency' column, or --frequency "
                        f"{name}=quarterly)", source=batch.source)
                item_id = self.add_item(conn, name, str(freq))
                known[name] = (item_id, str(freq))
                out.new_items.append(name)
            changed, deleted = self._upsert_item(conn, item_id, eids, pers, vals)
            if len(changed):
                out.changed_items.append(name)
                out.changed_entities[name] = changed
                present.setdefault(str(freq), []).append(pers[~np.isnan(vals)])
            if len(deleted):
                emptied.setdefault(str(freq), []).append(deleted)
        if progress is not None:
            progress(len(order), len(order), "updating the calendars")
        for freq, parts in present.items():
            before = self.calendar(conn, freq)
            added = self.add_periods(conn, freq, np.unique(np.concatenate(parts)))
            if len(added):
                out.grown_calendars.add(freq)
                out.added_periods[freq] = added
                out.calendars_before[freq] = before
        for freq, parts in emptied.items():
            removed = self.prune_periods(conn, freq, np.unique(np.concatenate(parts)))
            if len(removed):
                out.removed_periods[freq] = removed
        return out

    def _upsert_item(self, conn, item_id: int, eids, pers, vals
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Write what differs from the stored points; returns the entity ids that changed
        and the periods of the points deleted."""
        vals = bulk.canonical_zero(vals)
        old_e, old_p, old_v = self.read_item(conn, item_id)
        new_k = _point_key(eids, pers)
        present = ~np.isnan(vals)
        if len(old_v) == 0:
            self.insert_data(conn, item_id, eids[present], pers[present], vals[present])
            return np.unique(eids[present]), pers[:0]
        old_k = _point_key(old_e, old_p)
        sorter = np.argsort(old_k)
        pos = np.searchsorted(old_k, new_k, sorter=sorter)
        pos = np.minimum(pos, len(old_k) - 1)
        hit = old_k[sorter[pos]] == new_k
        old_val = np.where(hit, old_v[sorter[pos]], np.nan)
        same_bits = old_val.view(np.int64) == vals.view(np.int64)
        ins = present & ~hit
        upd = present & hit & ~same_bits
        dele = ~present & hit
        self.insert_data(conn, item_id, eids[ins], pers[ins], vals[ins])
        if upd.any():
            self.update_data(conn, item_id, eids[upd], pers[upd], vals[upd])
        if dele.any():
            self.delete_data(conn, item_id, eids[dele], pers[dele])
        return np.unique(eids[ins | upd | dele]), np.unique(pers[dele])


def _point_key(entity_ids: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One int64 per (entity, period): entity in the high bits, day number (offset) below."""
    days = periods.astype("datetime64[D]").astype(np.int64) + (1 << 23)
    return (entity_ids.astype(np.int64) << 24) | days
