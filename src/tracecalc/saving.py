"""Checking and saving formulas: the editing job.

A batch is parsed once (``facts.facts_of``: each formula's facts), then checked against the
catalog part it reaches (``catalog.read``: the names it defines and references, upstream for
cycles, downstream for what it makes pending): names, references, one cycle search over
that graph with the whole batch applied (every cycle reported, each as a path), frequencies.
Every problem of the batch is collected; one problem refuses the whole batch. A valid batch
is written in dependency order and traced (``tracer.formulas_saved``, ``tracer.propagate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tracecalc import catalog, tracer
from tracecalc.catalog import Catalog
from tracecalc.errors import (
    CycleError,
    DependentsError,
    FormulaError,
    InvalidNameError,
    UnknownReferenceError,
    UsageError,
    ValidationError,
    clip,
    close_matches,
)
from tracecalc.facts import FormulaFacts, facts_of
from tracecalc.frequencies import frequency as _frequency
from tracecalc.model import (
    FUNCTION_NAMES,
    NAME_RE,
    CheckReport,
    FormulaState,
    Frequency,
    Problem,
    SaveResult,
)
from tracecalc.parser import Ref, normalise, walk
from tracecalc.storage.columns import PENDING_CANONICAL

SCOPED_BATCH = 500  # larger batches read the whole catalog (one scan is cheaper)

Problems = list[tuple[str, Exception]]


@dataclass
class Checked:
    name: str
    facts: FormulaFacts  # with its frequency
    description: str | None
    refs: list[tuple[str, str]]  # (name, "item" | "formula")


def parse_batch(batch: Sequence[dict]) -> tuple[dict[str, FormulaFacts], dict[int, tuple]]:
    """Each formula's facts (parsed once); bad names and bad text as problems, by the
    entry's place in the batch."""
    problems: dict[int, tuple[str, Exception]] = {}
    parsed: dict[str, FormulaFacts] = {}
    for i, f in enumerate(batch):
        name = f["name"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems[i] = (clip(str(name), 40), InvalidNameError(
                f"{clip(str(name))} is not a valid formula name (a letter, then letters, "
                "digits or _; at most 64 characters)"))
            continue
        if name in FUNCTION_NAMES:
            problems[i] = (name, InvalidNameError(f"'{name}' is a function name"))
            continue
        try:
            parsed[name] = facts_of(f["expression"], name)
        except FormulaError as e:
            problems[i] = (name, e)
    return parsed, problems


def read_for(store, conn, cache, batch: Sequence[dict], parsed: dict[str, FormulaFacts]
             ) -> Catalog:
    """The catalog part a batch reaches (all of it for a large batch)."""
    names = {f["name"] for f in batch if isinstance(f["name"], str)}
    for p in parsed.values():
        names.update(p.references)
    return catalog.read(store, conn, cache, names, whole=len(batch) > SCOPED_BATCH)


def check(cat: Catalog, batch: Sequence[dict], parsed: dict[str, FormulaFacts],
          early: dict[int, tuple]):
    """Validate a parsed batch against the catalog; every problem is collected, none
    raised. Returns (checked formulas in dependency order, problems, the graph with the
    batch applied)."""
    problems: Problems = []
    parsed = dict(parsed)
    for i, f in enumerate(batch):  # in batch order, as each entry was read
        name = f["name"]
        if (i not in early or isinstance(early[i][1], FormulaError)) and name in cat.items:
            problems.append((name, InvalidNameError(f"'{name}' is a data item")))
            parsed.pop(name, None)
        elif i in early:
            problems.append(early[i])
    batch_names = {f["name"] for f in batch}
    known = cat.names | batch_names
    for name, p in parsed.items():
        unknown: set[str] = set()  # each unknown name once, at its first place
        for node in walk(p.tree):
            if isinstance(node, Ref) and node.name not in known and node.name not in unknown:
                unknown.add(node.name)
                every = cat.all_names() | batch_names
                problems.append((name, UnknownReferenceError(
                    node.name, close_matches(node.name, every), formula=name, text=p.text,
                    col=node.col)))
        problems += [(name, e) for e in cat.unknown_attributes(p, name)]
    bad = {n for n, _ in problems}
    good = {n: p for n, p in parsed.items() if n not in bad}
    graph = _with(cat, good)
    cycles = graph.find_cycles()  # the one cycle search of a save
    for cyc in cycles:
        member = next((n for n in cyc if n in good), cyc[0])
        path = _rotate(cyc, member)
        ref = next((r for r in walk(good[member].tree)
                    if isinstance(r, Ref) and r.name == path[1]), None)
        problems.append((member, CycleError(
            path, formula=member, reference=path[1], text=good[member].text,
            col=None if ref is None else ref.col)))
        bad.update(n for n in cyc if n in good)
    if cycles:
        # Nothing is saved, but every other problem of the batch is still reported: the
        # formulas outside the cycles are checked on a graph without its members.
        good = {n: p for n, p in good.items() if n not in bad}
        graph = _with(cat, good)
    freqs: dict[str, str] = {}
    checked: list[Checked] = []
    descriptions = {f["name"]: f.get("description") for f in batch}
    for name in graph.topological_order(set(good)):
        p = good[name]
        problem = _frequency(cat, name, p, freqs, good)
        if isinstance(problem, Exception):
            problems.append((name, problem))
            continue
        if problem is None:
            continue
        freqs[name] = problem
        refs = [(r, "item" if r in cat.items else "formula") for r in p.references]
        checked.append(Checked(name, p.with_frequency(problem), descriptions.get(name), refs))
    return ([] if cycles else checked), problems, graph


def _with(cat: Catalog, good: dict[str, FormulaFacts]):
    graph = cat.graph.copy()
    for name, p in good.items():
        graph.add_node(name, p.references)
    return graph


def refuse(problems: Problems, what: str, batch: Sequence[dict]) -> None:
    rows = {f["name"]: f.get("row") for f in batch if isinstance(f["name"], str)}
    if len(problems) == 1 and not any(rows.values()):
        raise problems[0][1]
    raise ValidationError([Problem(n, str(e), rows.get(n)) for n, e in problems], what=what)


def save_batch(store, conn, cache, batch: Sequence[dict], user: str) -> list[SaveResult]:
    """Check and write a batch inside the caller's transaction (catalog locked)."""
    parsed, problems = parse_batch(batch)
    cat = read_for(store, conn, cache, batch, parsed)
    checked, problems, graph = check(cat, batch, parsed, problems)
    if problems:
        refuse(problems, "saving formulas", batch)
    ids = {n: r.id for n, r in cat.formulas.items()}
    results = _write(store, conn, cat, checked, ids, user)
    changed = [r.name for r in results if r.marked_stale]
    marks = tracer.formulas_saved(changed)
    if any(f.downsampled for f in parsed.values()):
        # a database from before the downsampling functions may lack the coarser periods
        # its finer calendars complete (loads keep them since): a grown calendar moves the
        # windows of its frequency's formulas
        grown = store.cover_finer(conn)
        beyond, their_ids = tracer.Marks(), {}
        for r in store.formula_rows(conn) if grown else ():
            if r.frequency in grown:
                (marks if r.name in ids else beyond).everything(r.name)
                their_ids[r.name] = r.id
        catalog.apply(store, conn, beyond, their_ids)  # (their users follow in the run)
    states = {n: FormulaState(r.state) for n, r in cat.formulas.items()}
    states.update(dict.fromkeys(changed, FormulaState.STALE))
    handled = catalog.trace(store, conn, graph, marks, states, ids)
    affected = _affected(graph, handled, [r.name for r in results])
    return [SaveResult(r.name, r.version, r.created, r.equivalent_to_previous,
                       affected[r.name] if r.marked_stale else (), r.described)
            for r in results]


def _affected(graph, handled: list[str], names: list[str]) -> dict[str, tuple[str, ...]]:
    """Per saved formula, it and what it reaches among ``handled``, in that order. Linear
    in the graph for the bits (each formula's reach as an int bitset over ``handled``,
    built in reverse order); a reach that is the rest of ``handled`` (a chain) is a slice."""
    if len(names) == 1:
        return {names[0]: tuple(handled)}
    pos = {n: i for i, n in enumerate(handled)}
    reach: dict[str, int] = {}
    for n in reversed(handled):
        bits = 1 << pos[n]
        for s in graph.successors(n):
            if s in pos:
                bits |= reach[s]
        reach[n] = bits
    out = {}
    everything = (1 << len(handled)) - 1
    for n in names:
        if n not in pos:
            out[n] = ()
            continue
        bits, i = reach[n], pos[n]
        if bits == everything ^ ((1 << i) - 1):
            out[n] = tuple(handled[i:])
            continue
        marks, found = format(bits, "b")[::-1], []  # marks[j] == "1": handled[j] reached
        j = marks.find("1", i)
        while j != -1:
            found.append(handled[j])
            j = marks.find("1", j + 1)
        out[n] = tuple(found)
    return out


def _write(store, conn, cat: Catalog, checked: list[Checked], ids: dict[str, int],
           user: str) -> list[SaveResult]:
    """Write the checked formulas (in dependency order: ids follow it) with a few bulk
    statements: new rows, updates, edges, history. A changed text is a new version."""
    new, updates, history, results = [], [], [], []
    refs: dict[str, list[tuple[str, str]]] = {}
    alone = len(checked) == 1  # a new formula saved alone leaves its form pending
    forms = False  # whether this save computed canonical forms (sympy is loaded)
    for c in checked:
        old, f = cat.formulas.get(c.name), c.facts
        if old is None:
            new.append(dict(name=c.name, expression=f.text,
                            canonical=PENDING_CANONICAL if alone else f.canonical,
                            description=c.description or "", frequency=f.frequency,
                            version=1, state=str(FormulaState.STALE), updated_by=user,
                            changed=False))
            history.append(dict(formula_name=c.name, version=1, action="create",
                                old_expression=None, new_expression=f.text, changed_by=user))
            refs[c.name] = c.refs
            results.append(SaveResult(c.name, 1, True, False, (c.name,)))
            continue
        if normalise(old.expression) == f.text:
            described = c.description is not None and c.description != old.description
            if described:
                updates.append((old.id, {"description": c.description}))
            results.append(SaveResult(c.name, old.version, False, True, (), described))
            continue
        version = old.version + 1
        forms = True
        values = dict(expression=f.text, canonical=f.canonical, frequency=f.frequency,
                      version=version, state=str(FormulaState.STALE), updated_by=user)
        if c.description is not None:
            values["description"] = c.description
        updates.append((old.id, values))
        cat.cache.put(old.id, version, f)
        if old.frequency != f.frequency:  # its records sit on the other calendar's dates
            store.clear_records(conn, old.id)
        history.append(dict(formula_name=c.name, version=version, action="update",
                            old_expression=old.expression, new_expression=f.text,
                            changed_by=user))
        refs[c.name] = c.refs
        results.append(SaveResult(c.name, version, False,
                                  f.canonical == catalog.canonical_of(old, cat.cache),
                                  (c.name,)))
    forms = forms or not alone and bool(new)
    ids.update(store.insert_formulas(conn, new))
    facts = {c.name: c.facts for c in checked}
    for row in new:
        cat.cache.put(ids[row["name"]], 1, facts[row["name"]])
    store.update_formulas(conn, updates)
    store.replace_references(conn, {
        ids[n]: ([ids[r] for r, kind in rs if kind == "formula"],
                 [cat.items[r][0] for r, kind in rs if kind == "item"])
        for n, rs in refs.items()})
    store.add_history_rows(conn, history)
    if forms:
        catalog.fill_canonical(store, conn, cat.cache)
    return results


def _rotate(cycle: list[str], start: str) -> list[str]:
    """The same cycle, starting (and ending) at ``start``."""
    body = cycle[:-1]
    i = body.index(start)
    body = body[i:] + body[:i]
    return body + [start]


def check_one(store, conn, cache, name: str, expression: str, impact: bool) -> CheckReport:
    """What saving ``expression`` as ``name`` would do (see ``Engine.check_formula``)."""
    batch = [{"name": name, "expression": expression}]
    parsed, early = parse_batch(batch)
    cat = read_for(store, conn, cache, batch, parsed)
    checked, problems, _ = check(cat, batch, parsed, early)
    old = cat.formulas.get(name)
    if problems:
        return CheckReport(name, expression, False,
                           tuple(Problem(n, str(e)) for n, e in problems), is_new=old is None)
    f = checked[0].facts
    same_now = old is not None and catalog.canonical_of(old, cache) == f.canonical
    if not impact:
        return CheckReport(name, expression, True, (), is_new=old is None,
                           equivalent_to_current=same_now, canonical=f.canonical,
                           frequency=Frequency(f.frequency), references=f.references)
    same = tuple(n for n in catalog.equivalents(store, conn, cache, f.canonical) if n != name)
    down = cat.downstream([name]) if old is not None else []
    freq = {n: cat.formulas[n].frequency for n in down}
    freq[name] = f.frequency
    width = store.entity_count(conn)
    cal = {fr: len(store.calendar(conn, fr)) for fr in set(freq.values())}
    affected = [name, *down]
    return CheckReport(
        name, expression, True, (), is_new=old is None, equivalent_to_current=same_now,
        equivalent_formulas=same, canonical=f.canonical, frequency=Frequency(f.frequency),
        references=f.references, affected=tuple(affected),
        records_in_scope=sum(width * cal[freq[a]] for a in affected))


def delete(store, conn, cache, name: str, user: str) -> None:
    """Delete a formula nothing uses (see ``Engine.delete_formula``)."""
    cat = catalog.read(store, conn, cache, [name], up=False)
    row = cat.row(name)
    users = sorted(cat.graph.successors(name))
    if users:
        raise DependentsError(name, users)
    store.delete_formula(conn, row.id)
    store.add_history(conn, formula_name=name, version=row.version, action="delete",
                      old_expression=row.expression, new_expression=None, changed_by=user)


_SHAPES = ("a mapping {name: expression}, a list of mappings with 'name' and 'expression' "
           "(and optionally 'description'), or a list of (name, expression[, description]) "
           "pairs")


def entries(batch) -> list[dict]:
    """The formulas of a batch in any accepted shape, as mappings."""
    if isinstance(batch, Mapping) and not {"name", "expression"} <= set(batch):
        out = []
        for name, v in batch.items():
            if isinstance(v, Mapping):
                out.append({"name": name, **v})
            else:
                out.append({"name": name, "expression": v})
        batch = out
    if isinstance(batch, (str, bytes, Mapping)) or not isinstance(batch, Iterable):
        raise UsageError(f"cannot read formulas from a {type(batch).__name__}; pass {_SHAPES}")
    entries = []
    for i, e in enumerate(batch):
        if isinstance(e, Mapping) and "name" in e and "expression" in e:
            entry = dict(e)
        elif (isinstance(e, (tuple, list)) and len(e) in (2, 3)
              and all(isinstance(x, str) or x is None for x in e)):
            entry = dict(zip(("name", "expression", "description"), e))
        else:
            raise UsageError(f"formula entry {i + 1} ({clip(e, 60)}) is not understood; pass "
                             f"{_SHAPES}")
        if not isinstance(entry["expression"], str):
            raise UsageError(f"the expression of formula entry {i + 1} "
                             f"({clip(entry['name'], 60)}) is a "
                             f"{type(entry['expression']).__name__}, not text")
        entries.append(entry)
    return entries
