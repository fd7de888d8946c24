"""The parser's frozen expression tree, and walking it.

A formula is checked once (``tracecalc.parser.convert``) and then only these nodes travel:
the evaluator, the explainer and the engine read them, never the text.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cached_property

from tracecalc.model import SIGNATURES, FunctionKind


@dataclass(frozen=True)
class Node:
    col: int  # 0-based column in the normalised text, for carets in error messages


@dataclass(frozen=True)
class Num(Node):
    value: float


@dataclass(frozen=True)
class Ref(Node):
    name: str


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-", "not"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / ** < <= > >= == != and or
    left: Node
    right: Node


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]  # literal parameters are Num nodes holding integers
    by: str | None = None  # a cross-sectional call's groups: an entity attribute (by=sector)


ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
COMPARISON = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
BOOLEAN = {ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class ParsedFormula:
    """A checked formula: normalised text, tree and what it references."""

    text: str
    tree: Node

    @cached_property
    def references(self) -> tuple[str, ...]:
        return references(self.tree)

    @cached_property
    def functions(self) -> frozenset[str]:
        return frozenset(n.func for n in walk(self.tree) if isinstance(n, Call))

    @cached_property
    def attributes(self) -> tuple[str, ...]:
        return attributes(self.tree)

    @property
    def has_cross_sectional(self) -> bool:
        return any(SIGNATURES[f].kind is FunctionKind.CROSS_SECTIONAL for f in self.functions)

    @property
    def has_time_series(self) -> bool:
        return any(SIGNATURES[f].kind is FunctionKind.TIMESERIES for f in self.functions)

    @cached_property
    def canonical(self) -> str:
        from tracecalc.parser.canonical import canonical_form  # sympy: only when asked

        return canonical_form(self.tree)


def walk(node: Node):
    """Every node of a tree, parents before children."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, Binary):
            stack += [n.right, n.left]
        elif isinstance(n, Call):
            stack += reversed(n.args)


def references(tree: Node) -> tuple[str, ...]:
    """Names a tree refers to, unique, in order of first appearance."""
    seen: dict[str, None] = {}
    for n in walk(tree):
        if isinstance(n, Ref):
            seen.setdefault(n.name, None)
    return tuple(seen)


def attributes(tree: Node) -> tuple[str, ...]:
    """The entity attributes a tree groups by (``by=``), unique, in order of appearance."""
    seen: dict[str, None] = {}
    for n in walk(tree):
        if isinstance(n, Call) and n.by is not None:
            seen.setdefault(n.by, None)
    return tuple(seen)
