"""Loading a checked data file: new items and entities, each point checked against its
item's calendar (or snapped onto it), then only the points whose value or versions
changed, then the calendars."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection

from tracecalc.errors import DataError, clip, plural
from tracecalc.model import Frequency
from tracecalc.storage import bulk, calendars
from tracecalc.storage.dates import FIRST_DAY, LAST_DAY
from tracecalc.storage.files import DataBatch, infer_frequency
from tracecalc.storage.lazy import pandas as pd
from tracecalc.storage.versions import Versions, merge

WRITE_STEP = 500_000  # rows inserted between two progress reports inside one item


@dataclass
class LoadChanges:
    items: list[str] = field(default_factory=list)
    new_items: list[str] = field(default_factory=list)
    new_entities: int = 0
    new_entity_codes: list[str] = field(default_factory=list)  # sorted
    new_entity_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    grown_calendars: set[str] = field(default_factory=set)  # frequencies with new periods
    added_periods: dict[str, np.ndarray] = field(default_factory=dict)  # frequency -> new
    removed_periods: dict[str, np.ndarray] = field(default_factory=dict)  # no data left
    # coarser calendars that lost periods because finer ones did (they gain them silently)
    shrunk_coarser: set[str] = field(default_factory=set)
    snapped: int = 0  # points moved onto their item's calendar
    versions_changed: int = 0  # version rows written or deleted
    changed_items: list[str] = field(default_factory=list)
    changed_entities: dict[str, np.ndarray] = field(default_factory=dict)
    first_changed: dict[str, np.datetime64] = field(default_factory=dict)  # item -> period
    # item -> the earliest date a changed value is known at (its period, or known_at)
    first_known: dict[str, np.datetime64] = field(default_factory=dict)


class LoadingMixin:
    """``load_batch``: the upsert of a data file (``Store``)."""

    def load_batch(self, conn: Connection, batch: DataBatch, declared: dict[str, Frequency],
                   *, allow_new_entities: bool = True, snap: bool = False,
                   progress=None) -> LoadChanges:
        """Upsert a checked batch: new items and entities, then per item only the points
        whose value changed (inserted, updated, or deleted where the new value is empty);
        then the calendars gain the new periods and lose those no data is at any more.
        A point off its item's calendar is refused, or with ``snap`` moved onto it (its
        date kept in tc_snapped). With ``known_at`` (or for an item that has versions),
        the points are merged into the item's versions (``versions.merge``).
        ``progress(rows done, rows, what)`` is told before each item is written."""
        out = LoadChanges()
        daily = self.daily_calendar(conn)
        known = self.items(conn)
        codes = self.entity_ids(conn)
        uniq_codes, inv = _sorted_codes(batch.entity_names, batch.entity_codes)
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
        names, by_item = _sorted_codes(batch.item_names, batch.item_codes)
        small = by_item.astype(np.uint16) if len(names) < (1 << 16) else by_item
        order = np.argsort(small, kind="stable")  # each item's rows in file order (radix)
        starts = np.searchsorted(by_item[order], np.arange(len(names)))
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
            pers = self._on_calendar(conn, batch, idx, name, item_id, str(freq), daily, snap,
                                     eids, pers, out)
            # every point known at its period, and no history stored: a plain upsert
            plain = batch.known_at is None or not (batch.known_at[idx] > pers).any()
            if plain and not self.has_versions(conn, "data", item_id):
                tell = None if progress is None or hi - lo <= WRITE_STEP else \
                    (lambda k, lo=lo, name=name: progress(lo + k, len(order), f"writing {name}"))
                changed, deleted, first = self._upsert_item(conn, item_id, eids, pers, vals,
                                                            tell=tell)
                known_day = first
                now_present = pers[~np.isnan(vals)]
            else:
                known_at = pers if batch.known_at is None else batch.known_at[idx]
                changed, deleted, now_present, first, known_day = self._merge_versions(
                    conn, item_id, Versions(eids, pers, known_at, vals), out)
            if len(changed):
                out.changed_items.append(name)
                out.changed_entities[name] = changed
                out.first_changed[name] = first
                out.first_known[name] = known_day
                present.setdefault(str(freq), []).append(now_present)
            if len(deleted):
                emptied.setdefault(str(freq), []).append(deleted)
        if progress is not None:
            progress(len(order), len(order), "updating the calendars")
        now = {}
        for freq, parts in present.items():
            before = self.calendar(conn, freq)
            added = self.add_periods(conn, freq, np.unique(np.concatenate(parts)), have=before)
            now[freq] = np.union1d(before, added) if len(added) else before
            if len(added):
                out.grown_calendars.add(freq)
                out.added_periods[freq] = added
        for freq, parts in emptied.items():
            removed = self.prune_periods(conn, freq, np.unique(np.concatenate(parts)))
            if len(removed):
                out.removed_periods[freq] = removed
        changed = set(out.grown_calendars) | set(out.removed_periods)
        if changed:
            self._follow_finer(conn, out, changed,
                               {f: c for f, c in now.items() if f not in out.removed_periods})
        return out

    def _follow_finer(self, conn, out: LoadChanges, changed: set[str], known: dict) -> None:
        """Coarser calendars follow the periods the finer ones complete (``cover_finer``);
        the load reports its own frequencies' new and removed periods, the tracer all."""
        out.grown_calendars |= set(self.cover_finer(conn, changed, known))
        for freq in sorted(out.removed_periods, key=calendars.FREQUENCIES.index):
            out.shrunk_coarser |= set(self.prune_coarser(conn, freq))

    def _on_calendar(self, conn, batch: DataBatch, idx, name: str, item_id: int, freq: str,
                     daily: str, snap: bool, eids, pers, out: LoadChanges) -> np.ndarray:
        """The item's periods, each on its calendar: an off-calendar one is refused with
        its row and the nearest calendar dates, or with ``snap`` moved onto it."""
        off = ~calendars.on_calendar(freq, pers, daily)
        if not off.any():
            return pers
        cal = calendars.describe(freq, daily)
        if not snap:
            i = int(np.argmax(off))
            to = calendars.snap(freq, pers[i:i + 1], daily)[0]
            near = " and ".join(calendars.nearest(freq, pers[i], daily))
            raise DataError(
                f"period {pers[i]} of item '{name}' is not on the {cal} calendar (nearest: "
                f"{near}); fix the date, or load with snapping (--snap, snap=True) to move it "
                f"to {to}, {calendars.SNAP_RULES[freq]}", row=int(idx[i]) + 2,
                source=batch.source)
        moved = pers.copy()
        moved[off] = calendars.snap(freq, pers[off], daily)
        out_of_range = (moved < FIRST_DAY) | (moved > LAST_DAY)
        if out_of_range.any():
            i = int(np.argmax(out_of_range))
            raise DataError(f"period {pers[i]} of item '{name}' would snap to {moved[i]}, "
                            "outside 0001-01-01 to 9999-12-31; fix the date",
                            row=int(idx[i]) + 2, source=batch.source)
        key = pd.DataFrame({"p": _point_key(eids, moved)})
        if batch.known_at is not None:
            key["k"] = batch.known_at[idx]
        dup = key.duplicated().to_numpy()
        if dup.any():
            b = int(np.argmax(dup))
            a = int(np.argmax((key == key.iloc[b]).all(axis=1).to_numpy()))
            raise DataError(
                f"snapping moves item '{name}' period {pers[b]} onto {moved[b]}, where row "
                f"{int(idx[a]) + 2} (period {pers[a]}) already is for the same entity; load "
                "one of them", row=int(idx[b]) + 2, source=batch.source)
        self.write_snapped(conn, item_id, eids[off], moved[off], pers[off])
        out.snapped += int(off.sum())
        return moved

    def _merge_versions(self, conn, item_id: int, new: Versions, out: LoadChanges):
        """Merge loaded versions into the item's (``versions.merge``): tc_data gets the new
        latest values, the versions table the rows that changed. Returns the entities
        whose latest value or versions changed, the periods whose point went, the
        periods with a value now, the first period that changed and the earliest date a
        changed value is known at."""
        ents = np.unique(new.entity_ids)
        stored = self.read_item(conn, item_id, ents)
        m = merge(self.read_versions(conn, "data", item_id, ents), stored, new)
        touched: list = []
        changed, deleted, first = self._upsert_item(conn, item_id, m.entity_ids, m.periods,
                                                    m.latest, stored, touched=touched)
        self.write_versions(conn, "data", item_id, m.drop, m.add)
        out.versions_changed += len(m.drop) + len(m.add)
        changed = np.union1d(changed, np.union1d(m.drop.entity_ids, m.add.entity_ids))
        days = [] if first is None else [first]
        # a changed value is known at its version's known_at, or at its period where no
        # version of it changed (a plain point)
        versioned = np.concatenate([_point_key(v.entity_ids, v.periods) for v in (m.drop, m.add)])
        known = [] if not touched else [touched[1][~np.isin(
            _point_key(*touched), versioned)].min(initial=np.datetime64("9999-12-31"))]
        for v in (m.drop, m.add):
            if len(v.periods):
                days.append(v.periods.min())
                known.append(v.known_at.min())
        return (changed.astype(np.int64), deleted, m.periods[~np.isnan(m.latest)],
                min(days) if days else None, min(known) if known else None)

    def _upsert_item(self, conn, item_id: int, eids, pers, vals, stored=None, tell=None,
                     touched: list | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.datetime64 | None]:
        """Write what differs from the stored points (``stored``: those of the entities in
        ``eids``, when read already), in the table's key order (rows inserted in key order
        append to the b-tree; in file order they split pages all over it); returns the
        entity ids that changed, the periods of the points deleted and the first period
        that changed (None: nothing did); ``touched`` gets the (entity ids, periods) of the
        points written. An unchanged point is not written."""
        new_k = _point_key(eids, pers)
        o = np.argsort(new_k)  # the keys are distinct (read_data and snap refuse repeats)
        eids, pers, new_k = eids[o], pers[o], new_k[o]
        vals = bulk.canonical_zero(vals)[o]
        if stored is None:  # only stored points inside the file's (entity, period) box
            stored = self.read_item(conn, item_id, np.unique(eids), (pers.min(), pers.max()))
        old_e, old_p, old_v = stored
        present = ~np.isnan(vals)
        if len(old_v) == 0:
            self._insert_steps(conn, item_id, eids[present], pers[present], vals[present],
                               tell)
            if touched is not None:
                touched += [eids[present], pers[present]]
            return (np.unique(eids[present]), pers[:0],
                    pers[present].min() if present.any() else None)
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
        self._insert_steps(conn, item_id, eids[ins], pers[ins], vals[ins], tell)
        if upd.any():
            self.update_data(conn, item_id, eids[upd], pers[upd], vals[upd])
        if dele.any():
            self.delete_data(conn, item_id, eids[dele], pers[dele])
        written = ins | upd | dele
        if touched is not None:
            touched += [eids[written], pers[written]]
        return (np.unique(eids[written]), np.unique(pers[dele]),
                pers[written].min() if written.any() else None)

    def _insert_steps(self, conn, item_id: int, eids, pers, vals, tell) -> None:
        """Insert, telling ``tell(rows inserted)`` every ``WRITE_STEP`` rows when given (a
        progress bar that moves inside a large item)."""
        step = WRITE_STEP if tell is not None else max(len(vals), 1)
        for lo in range(0, len(vals), step):
            hi = min(lo + step, len(vals))
            self.insert_data(conn, item_id, eids[lo:hi], pers[lo:hi], vals[lo:hi])
            if tell is not None:
                tell(hi)


def _sorted_codes(names: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct names sorted, and each row's index into them (``np.unique`` of the rows'
    names with ``return_inverse``, without sorting a string per row)."""
    text = names.astype(str)
    srt = np.argsort(text, kind="stable")
    rank = np.empty(len(srt), np.int64)
    rank[srt] = np.arange(len(srt))
    return text[srt], rank[codes]


def _point_key(entity_ids: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One int64 per (entity, period): entity in the high bits, day number (offset) below."""
    days = periods.astype("datetime64[D]").astype(np.int64) + (1 << 23)
    return (entity_ids.astype(np.int64) << 24) | days
