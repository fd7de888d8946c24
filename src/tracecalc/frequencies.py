"""A formula's frequency, checked when it is saved: that of its inputs, one for all of
them but those it converts with ``asof`` (coarser ones, read as known on each date)."""

from __future__ import annotations

from tracecalc.catalog import Catalog
from tracecalc.errors import FrequencyError
from tracecalc.facts import FormulaFacts
from tracecalc.model import Frequency


def frequency(cat: Catalog, name: str, p: FormulaFacts, freqs: dict[str, str],
               good: dict) -> str | Exception | None:
    """The frequency of a checked formula, a problem, or None (an unknown reference's
    formula: reported already)."""
    if not p.references:
        return FrequencyError("a formula must reference at least one data item or formula",
                              formula=name)
    per_ref = {ref: freqs.get(ref) or (cat.frequency(ref) if ref in cat.names else None)
               for ref in p.references}
    per_ref = {r: f for r, f in per_ref.items() if f}  # (unknown ones: reported already)
    crossing = next((r for r in sorted(p.converted) if _crosses(cat, good, r)), None)
    if crossing:
        return FrequencyError(
            f"asof({crossing}): {crossing} works across entities (or reads a formula that "
            f"does), and such formulas keep only their latest values, not the versions asof "
            f"needs; convert the formulas or items it reads instead", formula=name)
    reader = cat.formulas.get(name) is not None and _asof_reader(cat, good, name)
    if reader:
        return FrequencyError(
            f"{reader[0]} reads asof({reader[1]}), which would then work across entities (or "
            f"read a formula that does); such formulas keep only their latest values, not the "
            f"versions asof needs; change {reader[0]} in the same batch", formula=name)
    direct = {r: f for r, f in per_ref.items() if r in p.direct}
    _ORDER = list(Frequency)  # finer to coarser
    found = set(direct.values()) | {to for _, to, _ in p.downsampled}
    for ref, to, how in p.downsampled:
        if ref in per_ref and _ORDER.index(per_ref[ref]) >= _ORDER.index(to):
            return FrequencyError(
                f"{to}_{how}({ref}) aggregates a finer item into {to} periods, but {ref} is "
                f"{per_ref[ref]}; read it directly, or convert a finer one", formula=name)
    if len(found) > 1 and p.downsampled:
        detail = ", ".join([f"{r} is {f}" for r, f in direct.items()]
                           + [f"{to}_{how}({r}) is {to}" for r, to, how in p.downsampled])
        return FrequencyError(f"mixes frequencies ({detail}); one formula has one frequency: "
                              "aggregate every finer input to the same one", formula=name)
    if len(found) > 1:
        finest = min(found, key=_ORDER.index)
        detail = ", ".join(f"{r} is {f}" for r, f in per_ref.items())
        wrap = ", ".join(f"asof({r})" for r, f in direct.items() if f != finest)
        return FrequencyError(f"mixes frequencies ({detail}); to read the coarser ones as known "
                              f"on each {finest} date, wrap them: {wrap}", formula=name)
    if not per_ref and not p.downsampled:
        return None
    freq = found.pop() if found else "daily"
    for ref in sorted(r for r in p.converted if r in per_ref):
        if _ORDER.index(per_ref[ref]) <= _ORDER.index(freq):
            return FrequencyError(f"asof({ref}) reads a coarser item into a finer formula, but "
                                  f"{ref} is {per_ref[ref]} and the formula is {freq}",
                                  formula=name)
    old = cat.formulas.get(name)
    if old is not None and old.frequency != freq:
        users = [d for d in cat.downstream([name]) if d not in good]
        if users:
            return FrequencyError(
                f"would change from {old.frequency} to {freq}, which {', '.join(users)} "
                "cannot follow; change those in the same batch", formula=name)
    return freq


def _crosses(cat: Catalog, good: dict, name: str) -> bool:
    """Whether formula ``name`` or a formula upstream of it is cross-sectional."""
    stack, seen = [name], set()
    while stack:
        n = stack.pop()
        if n in seen or (n not in good and n not in cat.formulas):
            continue
        seen.add(n)
        f = good[n] if n in good else cat.facts(n)
        if f.cross_sectional:
            return True
        stack.extend(f.direct)
    return False


def _asof_reader(cat: Catalog, good: dict, name: str) -> tuple[str, str] | None:
    """An edit of ``name`` that makes it (or what reads it) cross-sectional must not reach
    an ``asof`` downstream: (the formula with that asof, what it converts), or None."""
    if not _crosses(cat, good, name):
        return None
    reach = set(cat.downstream([name])) | {name}
    for u in sorted(reach - {name} - set(good)):
        hit = sorted(r for r in cat.facts(u).converted if r in reach)
        if hit:
            return u, hit[0]
    return None
