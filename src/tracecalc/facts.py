"""What we know about a formula, derived once from its text.

Parsing a formula yields one immutable ``FormulaFacts``: its tree, references, the functions
it calls, whether it works across entities or along time, whether it has values where every
input is missing, how far back it reads each reference, its canonical form (sympy, computed
on first use) and its compiled evaluator (generated on first use). Saves, checks, plans,
explain and the tracer all read these facts; nobody re-parses stored text to learn one.

``FactsCache`` keeps the facts of stored formulas by (formula id, version): a version changes
with every edit of the text, so a cached entry never goes stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property

from tracecalc.evaluator import Compiled, compile_tree, gives_values_from_nothing
from tracecalc.model import DOWNSAMPLES, SIGNATURES, FunctionKind
from tracecalc.parser import (
    Binary,
    Call,
    Node,
    Num,
    Ref,
    Unary,
    attributes,
    canonical_form,
    parse,
    references,
    to_text,
    walk,
)

# How many periods before t a function reads of its argument (None: all of them, a
# recursive state). Window functions read n - 1 earlier periods, lags k.
_LAG_FUNCTIONS = frozenset({"lag", "diff", "growth", "avg_balance"})
_RECURSIVE = frozenset({"ema", "wilder"})


@dataclass(frozen=True, eq=False)
class FormulaFacts:
    """A parsed formula and everything derived from it (immutable; compiled lazily)."""

    name: str | None
    text: str  # normalised
    tree: Node
    references: tuple[str, ...]  # unique, in order of first appearance
    functions: frozenset[str]
    cross_sectional: bool  # a function across entities: a change anywhere moves every one
    along_time: bool  # looks at other periods (lag, windows, ffill): the calendar matters
    spontaneous: bool  # has values where every input is missing (coalesce(x, 0))
    lookback: Mapping[str, int | None]  # reference -> periods before t read (None: all)
    frequency: str | None = None  # known once checked against the catalog (or stored)
    # (what, max_age) of each asof(x, max_age): x's name, or the text of an expression
    asof: tuple[tuple[str, int], ...] = ()
    inline: tuple[tuple[str, Node], ...] = ()  # (text, tree) of each asof of an expression
    # (reference, frequency, how) of each downsampling call (quarterly_last(close))
    downsampled: tuple[tuple[str, str, str], ...] = ()
    attributes: tuple[str, ...] = ()  # the entity attributes it groups by (by=sector)

    @cached_property
    def canonical(self) -> str:
        return canonical_form(self.tree)

    @cached_property
    def compiled(self) -> Compiled:
        tree = (_converted_inputs(self.tree, self.frequency)
                if self.asof or self.downsampled else self.tree)
        return compile_tree(tree, self.name or "formula")

    @cached_property
    def window(self) -> int | None:
        """How many periods before t a run reads its compiled inputs to give its values
        from t on (an ``asof`` input is aligned on its own calendar first); None when a
        recursive function or a downsampling makes that all of history."""
        if self.downsampled:
            return None
        tree = _converted_inputs(self.tree, self.frequency) if self.asof else self.tree
        back = lookback(tree).values()
        return None if any(b is None for b in back) else max(back, default=0)

    @cached_property
    def resume(self) -> tuple[str, int, Compiled, int] | None:
        """A formula that is one recursive call over an expression with a window
        (``ema(close / lag(close) - 1, 10)``): (function, n, the compiled argument, its
        window), so a run from period t continues from its own last value before t; None
        otherwise (a recursive call inside an expression is recomputed whole)."""
        t = self.tree
        # (a cross-sectional argument works across every entity: it cannot continue for a
        # part of them)
        if (not isinstance(t, Call) or t.func not in _RECURSIVE or self.downsampled
                or self.cross_sectional):
            return None
        inner = _converted_inputs(t.args[0], self.frequency) if self.asof else t.args[0]
        back = lookback(inner).values()
        if any(b is None for b in back):
            return None
        arg = compile_tree(inner, f"{self.name or 'formula'}: argument")
        if arg.inputs != self.compiled.inputs:
            return None
        return t.func, int(t.args[1].value), arg, max(back, default=0)

    @cached_property
    def direct(self) -> frozenset[str]:
        """The references read somewhere outside ``asof`` and the downsampling functions
        (on the formula's frequency)."""
        out, stack = set(), [self.tree]
        while stack:
            node = stack.pop()
            if isinstance(node, Ref):
                out.add(node.name)
            elif isinstance(node, Call) and node.func != "asof" and node.func not in DOWNSAMPLES:
                stack.extend(node.args)
            elif isinstance(node, Unary):
                stack.append(node.operand)
            elif isinstance(node, Binary):
                stack += [node.left, node.right]
        return frozenset(out)

    @cached_property
    def converted(self) -> frozenset[str]:
        """The references read through ``asof`` (another, coarser frequency), also those
        inside an expression it converts."""
        return frozenset(r for n in walk(self.tree) if isinstance(n, Call) and n.func == "asof"
                         for r in references(n.args[0]))

    def inline_facts(self, text: str, frequency: str) -> FormulaFacts:
        """The facts of the expression ``asof`` converts in ``asof(text)``, of the
        (coarser) ``frequency`` of what it reads: evaluated with its versions."""
        tree = dict(self.inline)[text]
        return _facts(tree, text, references(tree), f"{self.name}: asof({text})", frequency)

    def with_frequency(self, frequency: str) -> FormulaFacts:
        return self if frequency == self.frequency else replace(self, frequency=frequency)

    def __getstate__(self) -> dict:
        # Generated code does not pickle (a Dask worker compiles its own copy).
        state = dict(self.__dict__)
        state.pop("compiled", None)
        state.pop("resume", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def facts_of(text: str, name: str | None = None, frequency: str | None = None
             ) -> FormulaFacts:
    """Parse ``text`` once and derive its facts; raises a ``FormulaError`` subclass."""
    parsed = parse(text, name)
    return _facts(parsed.tree, parsed.text, parsed.references, name, frequency)


def _facts(tree: Node, text: str, refs: tuple[str, ...], name: str | None,
           frequency: str | None) -> FormulaFacts:
    functions = frozenset(n.func for n in walk(tree) if isinstance(n, Call))
    kinds = {SIGNATURES[f].kind for f in functions}
    asof = [n for n in walk(tree) if isinstance(n, Call) and n.func == "asof"]
    return FormulaFacts(
        name=name, text=text, tree=tree, references=refs,
        functions=functions, cross_sectional=FunctionKind.CROSS_SECTIONAL in kinds,
        along_time=FunctionKind.TIMESERIES in kinds or "ffill" in functions,
        # a count over a period with no value is 0 (its kernel only sees the counts)
        spontaneous=gives_values_from_nothing(tree) or any(
            n.func.endswith("_count") and n.func in DOWNSAMPLES for n in walk(tree)
            if isinstance(n, Call)), lookback=lookback(tree),
        frequency=frequency, asof=tuple(dict.fromkeys(
            (_converts(n), int(n.args[1].value)) for n in asof)),
        inline=tuple(dict.fromkeys((_converts(n), n.args[0]) for n in asof
                                   if not isinstance(n.args[0], Ref))),
        downsampled=tuple(dict.fromkeys(
            (n.args[0].name, *DOWNSAMPLES[n.func]) for n in walk(tree)
            if isinstance(n, Call) and n.func in DOWNSAMPLES)), attributes=attributes(tree))


def _converts(call: Call) -> str:
    """What ``asof`` converts: a name, or an expression's text (``ttm(eps)``)."""
    x = call.args[0]
    return x.name if isinstance(x, Ref) else to_text(x)


def asof_input(ref: str, max_age: int, frequency: str | None) -> str:
    """The compiled input that stands for ``asof(ref, max_age)`` in a formula of
    ``frequency``: the run reads it aligned onto that calendar (``work.RunIO.read``)."""
    return f"asof:{ref}:{max_age}:{frequency}"


def parse_asof_input(name: str) -> tuple[str, int, str] | None:
    """(reference, max_age, frequency) of an ``asof_input`` name; None for a plain one."""
    if not name.startswith("asof:"):
        return None
    _, ref, age, freq = name.split(":")
    return ref, int(age), freq


def downsample_input(ref: str, frequency: str, how: str) -> str:
    """The compiled input that stands for ``FREQUENCY_HOW(ref)``: the run reads ``ref`` on
    its own calendar and aggregates it onto the formula's (``work.RunIO.read``)."""
    return f"to:{frequency}:{how}:{ref}"


def parse_downsample_input(name: str) -> tuple[str, str, str] | None:
    """(reference, frequency, how) of a ``downsample_input`` name; None for another one."""
    if not name.startswith("to:"):
        return None
    _, freq, how, ref = name.split(":")
    return ref, freq, how


def source_of(name: str) -> str:
    """The item or formula a compiled input reads (``asof:x:..`` and ``to:..:x`` read x)."""
    if (a := parse_asof_input(name)) or (a := parse_downsample_input(name)):
        return a[0]
    return name


def _rewrite(node: Node, swap) -> Node:
    """The tree with each node for which ``swap`` gives a node (not None) replaced by it."""
    if (new := swap(node)) is not None:
        return new
    if isinstance(node, Call):
        return replace(node, args=tuple(_rewrite(a, swap) for a in node.args))
    if isinstance(node, Unary):
        return replace(node, operand=_rewrite(node.operand, swap))
    if isinstance(node, Binary):
        return replace(node, left=_rewrite(node.left, swap), right=_rewrite(node.right, swap))
    return node


def _input_of(call: Call, frequency: str | None) -> str | None:
    """The compiled input that stands for a conversion call (None: not one)."""
    if call.func == "asof":
        return asof_input(_converts(call), int(call.args[1].value), frequency)
    if call.func in DOWNSAMPLES:
        return downsample_input(call.args[0].name, *DOWNSAMPLES[call.func])
    return None


def converted_args(tree: Node, frequency: str) -> Node:
    """The tree with the argument of each downsampling call, and each expression asof
    converts, renamed to its converted input (``quarterly_last(to:quarterly:last:close)``,
    ``asof(asof:ttm(eps):0:daily)``): what ``explain`` walks."""
    def swap(n: Node) -> Node | None:
        if not isinstance(n, Call) or (n.func == "asof" and isinstance(n.args[0], Ref)):
            return None
        name = _input_of(n, frequency)
        return None if name is None else replace(
            n, args=(Ref(n.args[0].col, name), *n.args[1:]))
    return _rewrite(tree, swap)


def _converted_inputs(tree: Node, frequency: str | None) -> Node:
    """The tree with each asof(x, max_age) call replaced by its aligned input, and each
    downsampling call by its aggregated one."""
    def swap(n: Node) -> Node | None:
        name = _input_of(n, frequency) if isinstance(n, Call) else None
        return None if name is None else Ref(n.col, name)
    return _rewrite(tree, swap)


def lookback(tree: Node) -> dict[str, int | None]:
    """Per reference, how many periods before t the formula reads to give its value at t:
    the sum of the look-backs of the functions around it (the largest over its places);
    None when a recursive function (ema, wilder) makes it all of history."""
    out: dict[str, int | None] = {}
    stack: list[tuple[Node, int | None]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Ref):
            if depth is None or (node.name in out and out[node.name] is None):
                out[node.name] = None
            else:
                out[node.name] = max(out.get(node.name, 0), depth)
        elif isinstance(node, Unary):
            stack.append((node.operand, depth))
        elif isinstance(node, Call):
            step = _step(node)
            inner = None if depth is None or step is None else depth + step
            spec = SIGNATURES[node.func]
            for i, a in enumerate(node.args):
                if not spec.params[min(i, len(spec.params) - 1)].literal:
                    stack.append((a, inner))
        elif isinstance(node, Binary):
            stack += [(node.left, depth), (node.right, depth)]
    return out


def _step(call: Call) -> int | None:
    """Periods before t that one call reads of its arguments."""
    spec = SIGNATURES[call.func]
    literal = {p.name: (a.value if isinstance(a, Num) else p.default)
               for p, a in zip(spec.params, call.args) if p.literal}
    for p in spec.params:
        if p.literal:
            literal.setdefault(p.name, p.default)
    # asof: all of the input's history; a downsampling: a whole period of a finer calendar
    if call.func in _RECURSIVE or call.func == "asof" or call.func in DOWNSAMPLES:
        return None
    if call.func in _LAG_FUNCTIONS:
        return int(literal["k"])
    if call.func == "ttm":
        return 3
    if call.func == "ffill":
        return int(literal["limit"])
    if spec.kind is FunctionKind.TIMESERIES:  # every window function: n values, today's too
        return int(literal["n"]) - 1
    return 0


def window(call: Call) -> int:
    """How many periods of its arguments a time-series call looks at, today's included
    (a recursive one: its n; what ``explain`` shows)."""
    step = _step(call)
    if call.func in DOWNSAMPLES or call.func == "asof":  # one (converted) value per period
        return 1
    if step is None:
        spec = SIGNATURES[call.func]
        return next(int(a.value) for a, p in zip(call.args, spec.params) if p.literal)
    return step + 1


class FactsCache:
    """Facts of stored formulas by (id, version); bounded, thread-safe."""

    def __init__(self, size: int = 200_000):
        self._size = size
        self._items: OrderedDict[tuple[int, int], FormulaFacts] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, formula_id: int, version: int, text: str, name: str,
            frequency: str) -> FormulaFacts:
        key = (formula_id, version)
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit.name == name:
            return hit.with_frequency(frequency)
        facts = facts_of(text, name, frequency)
        with self._lock:
            self._items[key] = facts
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return facts

    def put(self, formula_id: int, version: int, facts: FormulaFacts) -> None:
        with self._lock:
            self._items[(formula_id, version)] = facts
