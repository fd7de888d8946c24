"""Explaining one record: every sub-expression of a formula with its value at one entity and
period, and the window of inputs behind each time-series function.

Each sub-tree is evaluated through the same kernels as a recalculation
(``evaluator.interpret``, over the entity's whole series, or every entity when a
cross-sectional function needs them), so the values shown are the values the engine
computes.
"""

from __future__ import annotations

import numpy as np

from tracecalc.evaluator import interpret
from tracecalc.facts import source_of, window
from tracecalc.model import DOWNSAMPLES, SIGNATURES, FunctionKind
from tracecalc.parser import Binary, Call, Node, Num, Ref, Unary, references, to_text


def period_index(calendar: np.ndarray, period) -> int | None:
    try:
        day = np.datetime64(str(period)[:10], "D")
    except ValueError:
        return None
    i = int(np.searchsorted(calendar, day))
    return i if i < len(calendar) and calendar[i] == day else None


def one(entity_id: int) -> np.ndarray:
    return np.array([entity_id], dtype=np.int64)


def column(ids: np.ndarray, entity_id: int) -> int:
    return int(np.searchsorted(ids, entity_id))


def explain_tree(tree: Node, panels: dict[str, np.ndarray], calendar: np.ndarray, t: int,
                 col: int, items, finer: dict | None = None, groups: dict | None = None
                 ) -> dict:
    """The explanation of ``tree`` at period index ``t`` and panel column ``col``;
    ``finer``: per aggregated input of a downsampling call (``facts.converted_args``),
    (finer calendar, finer panel, period of each finer row, aggregated panel); ``groups``:
    the panels' group codes per attribute a ``by=`` names."""

    like = next(iter(panels.values()))  # a formula references at least one input

    def value(node: Node) -> np.ndarray:
        # a constant sub-tree (sqrt(252), abs(-2)) has its value in every cell
        return interpret(node, {r: panels[r] for r in references(node)}, like, groups)

    def at(x: float) -> float | None:
        return None if x != x else float(x)

    def walk(node: Node) -> dict:
        v = value(node)
        out: dict = {"text": to_text(node), "value": at(v[t, col]), "children": []}
        if isinstance(node, Ref):
            out["kind"] = "item" if node.name in items else "formula"
            if source_of(node.name) != node.name:  # asof(ttm(eps)): ttm(eps) as known then
                out["text"], out["kind"] = source_of(node.name), "expression"
            return out
        if isinstance(node, Num):
            out["kind"] = "number"
            return out
        out["kind"] = "operator" if isinstance(node, (Unary, Binary)) else "function"
        if isinstance(node, Call) and node.func in DOWNSAMPLES:  # the finer dates behind it
            fcal, fine, period, _ = finer[node.args[0].name]
            source = source_of(node.args[0].name)
            out["text"] = f"{node.func}({source})"
            out["window"] = [{"text": source, "values": [
                (str(fcal[i]), at(fine[i, col])) for i in np.flatnonzero(period == t)]}]
            return out
        kids = ([node.operand] if isinstance(node, Unary) else
                [node.left, node.right] if isinstance(node, Binary) else
                [a for a, p in zip(node.args, _params(node)) if not p.literal])
        if isinstance(node, Call) and SIGNATURES[node.func].kind in (
                FunctionKind.TIMESERIES, FunctionKind.MISSING) and node.func not in (
                "coalesce", "isnull", "div"):
            lo = max(0, t - window(node) + 1)
            out["window"] = [
                {"text": to_text(k),
                 "values": [(str(calendar[i]), at(value(k)[i, col])) for i in range(lo, t + 1)]}
                for k in kids]
        out["children"] = [walk(k) for k in kids]
        return out

    return walk(tree)


def _params(call: Call):
    spec = SIGNATURES[call.func]
    return [spec.params[min(i, len(spec.params) - 1)] for i in range(len(call.args))]
