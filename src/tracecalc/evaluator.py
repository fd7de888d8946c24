"""Vectorised evaluation: a checked tree becomes one compiled Python function over panels.

A panel is a dense float64 array, periods x entities. Code is generated as a Python ``ast``
built from our own tree (user text never reaches ``compile``): names become positional
parameters, numbers become float constants, every operator and function becomes a call to
``functions``. The user's operation order is kept, so results are bitwise reproducible.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tracecalc import functions as F
from tracecalc.model import SIGNATURES, FunctionKind
from tracecalc.parser import Binary, Call, Node, Num, Ref, Unary, attributes, references, walk

_OPERATORS = {
    "+": "add", "-": "sub", "*": "mul", "/": "truediv", "**": "power",
    "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne",
    "and": "and_", "or": "or_",
}

# The generated code sees only these names.
_NAMESPACE: dict[str, object] = {f"_op_{v}": getattr(F, v) for v in _OPERATORS.values()}
_NAMESPACE.update({"_op_neg": F.neg, "_op_not_": F.not_, "_finite": F.finite})
_NAMESPACE.update({f"_fn_{k}": v for k, v in F.KERNELS.items()})


def _constant_panel(value: object, like: np.ndarray) -> np.ndarray:
    """A constant as a panel shaped like the formula's inputs (same value in every record)."""
    return np.full(np.shape(like), value, dtype=np.float64)


_NAMESPACE["_constant_panel"] = _constant_panel

# Kernels that need a (periods, entities) panel rather than anything that broadcasts.
_PANEL_KERNELS = frozenset(
    name for name, spec in SIGNATURES.items()
    if spec.kind in (FunctionKind.TIMESERIES, FunctionKind.CROSS_SECTIONAL)
) | {"ffill"}


@dataclass(frozen=True)
class Compiled:
    """A formula ready to run: ``fn(*panels, groups=...)`` with one panel per name in
    ``inputs`` and, per entity attribute in ``attributes`` (``by=sector``), the group codes
    of the panels' entities (one integer per column, -1 for none: ``group_codes``)."""

    inputs: tuple[str, ...]
    fn: Callable[..., np.ndarray]
    attributes: tuple[str, ...] = ()

    def __call__(self, *panels: np.ndarray,
                 groups: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        shape = panels[0].shape
        if self.attributes:
            missing = [a for a in self.attributes if a not in (groups or {})]
            if missing:
                raise ValueError(f"the group codes of {missing[0]!r} were not given")
            out = self.fn(*panels, *(groups[a] for a in self.attributes))
        else:
            out = self.fn(*panels)
        if np.ndim(out) == 0 or np.shape(out) != shape:  # constant-only branches broadcast
            out = np.broadcast_to(np.asarray(out, dtype=np.float64), shape).copy()
        return out


def compile_tree(tree: Node, label: str = "formula") -> Compiled:
    """Generate and compile the function for a checked tree."""
    inputs, attrs = references(tree), attributes(tree)
    params = {name: f"_v{i}" for i, name in enumerate(inputs)}
    groups = {name: f"_g{i}" for i, name in enumerate(attrs)}
    body = _gen(tree, params, groups)
    fdef = ast.FunctionDef(
        name="_formula",
        args=ast.arguments(posonlyargs=[],
                           args=[ast.arg(p) for p in [*params.values(), *groups.values()]],
                           vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=[ast.Return(body)],
        decorator_list=[],
        returns=None,
        type_params=[],
    )
    module = ast.fix_missing_locations(ast.Module(body=[fdef], type_ignores=[]))
    code = compile(module, filename=f"<tracecalc {label}>", mode="exec")
    namespace = dict(_NAMESPACE)
    exec(code, namespace)  # noqa: S102 - our own generated tree, no user text inside
    return Compiled(inputs, namespace["_formula"], attrs)


def _call(fname: str, args: list[ast.expr], keywords: list[ast.keyword] | None = None
          ) -> ast.Call:
    return ast.Call(func=ast.Name(fname, ast.Load()), args=args, keywords=keywords or [])


def _gen(node: Node, params: dict[str, str], groups: dict[str, str]) -> ast.expr:
    if isinstance(node, Num):
        return ast.Constant(float(node.value))
    if isinstance(node, Ref):
        return ast.Name(params[node.name], ast.Load())
    if isinstance(node, Unary):
        fn = "_op_neg" if node.op == "-" else "_op_not_"
        return _call(fn, [_gen(node.operand, params, groups)])
    if isinstance(node, Binary):
        return _call(f"_op_{_OPERATORS[node.op]}",
                     [_gen(node.left, params, groups), _gen(node.right, params, groups)])
    assert isinstance(node, Call)
    spec = SIGNATURES[node.func]
    args: list[ast.expr] = []
    for i, a in enumerate(node.args):
        p = spec.params[min(i, len(spec.params) - 1)]
        if p.literal:
            assert isinstance(a, Num)
            args.append(ast.Constant(float(a.value) if p.real else int(a.value)))
        else:
            code = _gen(a, params, groups)
            if node.func in _PANEL_KERNELS and params and not references(a):
                # lag(1), cs_rank(2 * 3): a constant argument is the constant panel.
                like = ast.Name(next(iter(params.values())), ast.Load())
                code = _call("_constant_panel", [code, like])
            args.append(code)
    by = [] if node.by is None else [ast.keyword("groups", ast.Name(groups[node.by],
                                                                     ast.Load()))]
    return _call(f"_fn_{node.func}", args, by)


# ---------------------------------------------------------------------------------------------
# Panels <-> rows


def to_panel(entity_ids: np.ndarray, periods: np.ndarray, values: np.ndarray,
             calendar: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Rows -> panel: row i is the calendar's i-th period, column j entity ``columns[j]``
    (sorted ids). Rows of other entities or periods are ignored."""
    panel = np.full((len(calendar), len(columns)), np.nan)
    if len(values) and len(columns):
        rows = np.searchsorted(calendar, periods)
        cols = np.searchsorted(columns, entity_ids)
        ok = (rows < len(calendar)) & (cols < len(columns))
        ok[ok] &= (calendar[rows[ok]] == periods[ok]) & (columns[cols[ok]] == entity_ids[ok])
        panel[rows[ok], cols[ok]] = values[ok]
    return panel


def from_panel(panel: np.ndarray, calendar: np.ndarray, columns: np.ndarray,
               mask: np.ndarray | None = None):
    """Panel -> (entity ids, periods, values) of its non-missing cells (within ``mask``),
    entity-major order."""
    t = panel.T
    keep = ~np.isnan(t) if mask is None else mask.T
    cols, rows = np.nonzero(keep)
    return columns[cols].astype(np.int64), calendar[rows], t[keep]


def interpret(tree: Node, panels: dict[str, np.ndarray], like: np.ndarray,
              groups: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The value of a checked tree over ``panels`` (one per reference, shaped ``like``),
    walking the tree through the same kernels as the compiled code (``compile_tree``):
    the same result, without generating code. For small panels (analysis), not for runs.
    ``groups``: the group codes per attribute a ``by=`` names (default: one group)."""

    def value(node: Node):
        if isinstance(node, Num):
            return float(node.value)
        if isinstance(node, Ref):
            return panels[node.name]
        if isinstance(node, Unary):
            fn = _NAMESPACE["_op_neg" if node.op == "-" else "_op_not_"]
            return fn(value(node.operand))
        if isinstance(node, Binary):
            return _NAMESPACE[f"_op_{_OPERATORS[node.op]}"](value(node.left), value(node.right))
        assert isinstance(node, Call)
        spec = SIGNATURES[node.func]
        args = []
        for i, a in enumerate(node.args):
            p = spec.params[min(i, len(spec.params) - 1)]
            if p.literal:
                args.append(float(a.value) if p.real else int(a.value))
            elif node.func in _PANEL_KERNELS and not references(a):
                args.append(_constant_panel(value(a), like))
            else:
                args.append(value(a))
        if node.by is None:
            return F.KERNELS[node.func](*args)
        codes = (groups or {}).get(node.by)
        if codes is None:
            codes = np.zeros(np.shape(like)[1], dtype=np.int64)
        return F.KERNELS[node.func](*args, groups=codes)

    out = value(tree)
    if np.ndim(out) == 0 or np.shape(out) != like.shape:
        out = np.broadcast_to(np.asarray(out, dtype=np.float64), like.shape).copy()
    return out


def gives_values_from_nothing(tree: Node) -> bool:
    """Whether a formula has values where every input is missing (``coalesce(x, 0)``,
    ``isnull(x)``, ``(x > 0) or 1``, ``ts_sum(isnull(x), 5)``): such formulas reach entities
    and periods that have no data of their own. Run on missing inputs over enough periods
    for every window to fill: 3 more than the windows' summed lengths (at most 20,000)."""
    reach = 0
    for n in walk(tree):
        if isinstance(n, Call) and n.func in _PANEL_KERNELS and n.func != "asof":
            spec = SIGNATURES[n.func]
            reach += 4 if n.func == "ttm" else max(
                (int(a.value) for a, p in zip(n.args, spec.params)
                 if p.literal and not p.real), default=0)
    nothing = np.full((3 + min(reach, 20_000), 1), np.nan)
    panels = dict.fromkeys(references(tree), nothing)
    return bool((~np.isnan(interpret(tree, panels, nothing))).any())


@dataclass(frozen=True)
class Diff:
    """How a newly computed panel differs from the stored one, cell by cell.

    Equal means both missing, or both present with the same bits (so 0.0 and -0.0 differ,
    which storage never produces: it keeps 0.0).
    """

    insert: np.ndarray  # masks, periods x columns
    update: np.ndarray
    delete: np.ndarray
    unchanged: int

    @property
    def written(self) -> int:
        return int(self.insert.sum() + self.update.sum() + self.delete.sum())

    @property
    def changed_columns(self) -> np.ndarray:
        return np.flatnonzero((self.insert | self.update | self.delete).any(axis=0))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_EMPTY = np.uint64(0x6A09E667F3BCC909)  # the digest of a column with no cells


def column_digests(panel: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One 64-bit digest (int64, 0 only by a 2**-64 chance) per column of a panel whose rows
    are the dates ``days``: a column digests equal to a stored one only if every cell holds
    the same bits (-0.0 counts as 0.0, as storage keeps it; a missing cell is no cell).

    Each present cell's bits, salted with its date, go through the splitmix64 finaliser and
    the results are summed per column (mod 2**64): vectorised, blind to missing rows (a
    calendar that grows leaves the digests of unchanged columns as they were), and
    updatable from the cells that changed (``updated_digests``).
    """
    return (_mixed_cells(panel, days).sum(axis=0, dtype=np.uint64) ^ _EMPTY).view(np.int64)


def updated_digests(stored: np.ndarray, old: np.ndarray, new: np.ndarray,
                    days: np.ndarray) -> np.ndarray:
    """The digests of columns whose rows at ``days`` change from ``old`` to ``new`` (the
    other rows as they were), from their ``stored`` digests; 0 where none is stored."""
    s = np.asarray(stored, dtype=np.int64).view(np.uint64) ^ _EMPTY
    s = s - _mixed_cells(old, days).sum(axis=0, dtype=np.uint64)
    s = s + _mixed_cells(new, days).sum(axis=0, dtype=np.uint64)
    out = (s ^ _EMPTY).view(np.int64)
    return np.where(np.asarray(stored) == 0, 0, out)


def _mixed_cells(panel: np.ndarray, days: np.ndarray) -> np.ndarray:
    v = np.asarray(panel, dtype=np.float64) + 0.0
    bits = np.ascontiguousarray(v).view(np.uint64).copy()
    salt = (np.asarray(days, dtype="datetime64[D]").astype(np.int64).astype(np.uint64)
            + np.uint64(1)) * _GOLDEN
    x = bits ^ salt[:, None]
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    x[np.isnan(v)] = 0
    return x



def diff_panels(new: np.ndarray, old: np.ndarray) -> Diff:
    new = new + 0.0  # -0.0 is stored as 0.0
    have_new, have_old = ~np.isnan(new), ~np.isnan(old)
    both = have_new & have_old
    same_bits = new.view(np.int64) == old.view(np.int64)
    update = both & ~same_bits
    return Diff(have_new & ~have_old, update, have_old & ~have_new,
                int((both & same_bits).sum()))
