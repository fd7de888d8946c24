"""The exception hierarchy: one root, one small class per kind of failure.

Misuse and bad input raise; evaluation problems (x/0, log of a negative) are values (NaN).
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable, Sequence


class TracecalcError(Exception):
    """Root of every error tracecalc raises on purpose."""


class FormulaError(TracecalcError):
    """A formula's text is not acceptable."""

    def __init__(self, message: str, *, formula: str | None = None, text: str | None = None,
                 col: int | None = None):
        self.formula = formula
        self.text = text
        self.col = col
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"formula '{self.formula}': " if self.formula else ""
        msg = f"{head}{self.reason}"
        if self.text is not None and self.col is not None and len(self.text) <= 200:
            msg += f"\n    {self.text}\n    {' ' * self.col}^"
        return msg


class FormulaSyntaxError(FormulaError):
    """The text is not a valid formula (bad syntax, forbidden construct, limit exceeded)."""


class _Suggesting(FormulaError):
    """A name that is not known, with close matches ("Did you mean ...?")."""

    what = "name"

    def __init__(self, name: str, possibilities: Sequence[str], **kw):
        self.possibilities = list(possibilities)
        msg = f"unknown {self.what} '{name}'"
        if self.possibilities:
            msg += f". Did you mean {_quote_list(self.possibilities)}?"
        super().__init__(msg, **kw)


class UnknownFunctionError(_Suggesting):
    """A call names a function the language does not have."""

    what = "function"

    def __init__(self, function: str, possibilities: Sequence[str], **kw):
        self.function = function
        super().__init__(function, possibilities, **kw)


class ArityError(FormulaError):
    """A function got the wrong number (or kind) of arguments."""


class UnknownReferenceError(_Suggesting):
    """A name is neither a data item nor a formula."""

    what = "reference"

    def __init__(self, name: str, possibilities: Sequence[str], **kw):
        self.name = name
        super().__init__(name, possibilities, **kw)


class UnknownAttributeError(FormulaError):
    """``by=`` names an entity attribute no entity has (one line: the formula, the column
    of the text, the known attributes and the close matches)."""

    def __init__(self, name: str, known: Sequence[str], *, formula: str | None = None,
                 col: int | None = None):
        self.name = name
        self.known = list(known)
        self.possibilities = close_matches(name, self.known)
        where = "" if col is None else f" at column {col + 1}"
        msg = (f"unknown entity attribute '{name}' in by={name}{where}; the known "
               f"attributes (columns loaded with load-entities) are "
               f"{', '.join(self.known) or 'none'}")
        if self.possibilities:
            msg += f". Did you mean {_quote_list(self.possibilities)}?"
        super().__init__(msg, formula=formula)
        self.col = col


class FrequencyError(FormulaError):
    """A formula mixes inputs of different frequencies, or has none."""


class InvalidNameError(TracecalcError):
    """A formula, item or entity name breaks the naming rules."""


class CycleError(TracecalcError):
    """Saving would close a dependency cycle; ``cycle`` is the path, first node == last."""

    def __init__(self, cycle: Sequence[Hashable], formula: str | None = None,
                 reference: str | None = None, text: str | None = None,
                 col: int | None = None):
        self.cycle = list(cycle)
        self.formula = formula
        self.reference = reference  # the name in the new text that closes the loop
        self.text, self.col = text, col
        msg = "cycle: " + " -> ".join(str(n) for n in self.cycle)
        if formula and reference:
            msg += f"\n  the reference to '{reference}' in the new text of '{formula}' closes it"
            if text is not None and col is not None and len(text) <= 200:
                msg += f"\n    {text}\n    {' ' * col}^"
        super().__init__(msg)


class ValidationError(TracecalcError):
    """A batch had problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence, what: str = "validation",
                 outcome: str = "nothing was saved"):
        self.problems = list(problems)
        lines = [f"{what} failed with {plural(len(self.problems), 'problem')}; {outcome}:"]
        for p in self.problems:
            row = getattr(p, "row", None)
            where = f"row {row}, {p.name}" if row is not None else p.name
            lines.append(f"  - {where}: " + p.message.replace("\n", "\n    "))
        super().__init__("\n".join(lines))


class DataError(TracecalcError):
    """Input data was rejected; nothing was written. ``row`` is 1-based, counting the header."""

    def __init__(self, message: str, row: int | None = None, source: str | None = None):
        self.row = row
        self.source = source
        self.reason = message
        where = source or "data"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {message}")


class UsageError(TracecalcError):
    """An API call got arguments of a shape or type it does not accept."""


class NotFoundError(TracecalcError):
    """A named formula, item or entity does not exist."""

    def __init__(self, kind: str, name: str, possibilities: Sequence[str] = ()):
        self.kind = kind
        self.name = name
        self.possibilities = list(possibilities)
        msg = f"no {kind} named '{name}'"
        if self.possibilities:
            msg += f". Did you mean {_quote_list(self.possibilities)}?"
        super().__init__(msg)


class BusyError(TracecalcError):
    """Another recalculation holds this database's recalculation lock."""


class DatabaseError(TracecalcError):
    """The database failed a statement: the driver's message in one line. ``corrupt`` when
    the message says the database's own files are damaged."""

    def __init__(self, message: str, corrupt: bool = False):
        self.corrupt = corrupt
        super().__init__(message)


class LockLostError(TracecalcError):
    """A recalculation's lock went with its database connection: the run stopped before
    its next commit (another run may hold the lock by now)."""

    def __init__(self, message: str = (
            "the recalculation lock was lost (its database connection was closed): this run "
            "stopped after its last commit; run recalc again to finish")):
        super().__init__(message)


class DependentsError(TracecalcError):
    """A formula cannot be deleted while other formulas use it."""

    def __init__(self, name: str, dependents: Sequence[str]):
        self.name = name
        self.dependents = list(dependents)
        super().__init__(
            f"cannot delete '{name}': used by {', '.join(self.dependents)}; "
            "change or delete those first"
        )


class StaleWarning(UserWarning):
    """Records read from a formula that is not fresh: they may be out of date until the next
    recalculation. ``formula``, ``state`` (stale, partial, pending) and ``entities`` (how many
    are marked to recompute; None for pending: wherever an upstream change reaches it)."""

    def __init__(self, formula: str, state: str, entities: int | None):
        self.formula, self.state, self.entities = formula, state, entities
        self.scope = ("where an upstream change reaches it" if entities is None else
                      f"{entities:,} entit{'y' if entities == 1 else 'ies'} to recompute")
        super().__init__(f"{formula} is {state} ({self.scope}); its records may be out of "
                         "date: run Engine.recalc() (tracecalc recalc)")


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Suggestions for a misspelt name, case-insensitively."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def _quote_list(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 formula``, ``2 formulas``, ``3 new entities`` (with thousands separators)."""
    if words is None:
        words = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{n:,} {word if n == 1 else words}"


def clip(text: object, limit: int = 80) -> str:
    """``repr`` of a value echoed in an error, cut to about ``limit`` characters."""
    r = repr(text) if isinstance(text, str) else str(text)
    return r if len(r) <= limit else f"{r[:limit - 12]}... ({len(r):,} characters)"
