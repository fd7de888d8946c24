"""Canonical form and formula text of a tree (sympy, for analysis only: never for values)."""

from __future__ import annotations

import ast

from tracecalc.parser.folding import _constant_value
from tracecalc.parser.nodes import ARITHMETIC, COMPARISON, Binary, Call, Node, Num, Ref, Unary


def canonical_form(tree: Node) -> str:
    """A text that equal formulas share: sympy's automatic normal form of the tree.

    Built from the tree (never from text). Only sympy's cheap automatic rewriting is used
    (ordering, collecting like terms, ``x/x -> 1``); no ``expand``/``simplify``, whose cost
    can explode. Functions, comparisons and logic become opaque sympy functions.
    """
    import sympy

    def number(v: float):
        return sympy.Integer(int(v)) if v == int(v) else sympy.Rational(repr(v))

    def build(n: Node):
        folded = _constant_value(n)
        if folded is not None and folded == folded:
            # Constant sub-trees become the float the engine computes (2 ** 10 -> 1024):
            # handing sympy an exact 0.5 ** 3000000 takes minutes.
            return number(folded)
        if isinstance(n, Num):
            return number(n.value)
        if isinstance(n, Ref):
            return sympy.Symbol(n.name)
        if isinstance(n, Unary):
            x = build(n.operand)
            return -x if n.op == "-" else sympy.Function("not_")(x)
        if isinstance(n, Binary):
            a, b = build(n.left), build(n.right)
            if n.op == "+":
                return a + b
            if n.op == "-":
                return a - b
            if n.op == "*":
                return a * b
            if n.op == "/":
                return a / b
            if n.op == "**":
                return a**b
            name = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne",
                    "and": "and_", "or": "or_"}[n.op]
            if name in ("gt", "ge"):  # a > b is b < a
                name, a, b = ("lt" if name == "gt" else "le"), b, a
            return sympy.Function(name)(a, b)
        assert isinstance(n, Call)
        # within groups, another function: cs_rank(x, by=sector) is not cs_rank(x)
        fname = n.func if n.by is None else f"{n.func}_by_{n.by}"
        return sympy.Function(fname)(*(build(a) for a in n.args))

    try:
        return sympy.sstr(build(tree), order="lex")
    except (ArithmeticError, TypeError, ValueError, RecursionError):
        # Analysis only: a form sympy cannot build falls back to "equal to nothing else".
        return f"<not normalised> {tree!r}"


def to_text(node: Node) -> str:
    """The formula text of a (sub)tree, with only the parentheses it needs."""

    def py(n: Node) -> ast.expr:
        if isinstance(n, Num):
            v = n.value
            return ast.Constant(int(v) if v == int(v) and abs(v) < 1e15 else v)
        if isinstance(n, Ref):
            return ast.Name(n.name, ast.Load())
        if isinstance(n, Unary):
            op = ast.USub() if n.op == "-" else ast.Not()
            return ast.UnaryOp(op, py(n.operand))
        if isinstance(n, Binary):
            if n.op in ("and", "or"):
                return ast.BoolOp(ast.And() if n.op == "and" else ast.Or(),
                                  [py(n.left), py(n.right)])
            cmp = {v: k for k, v in COMPARISON.items()}.get(n.op)
            if cmp is not None:
                return ast.Compare(py(n.left), [cmp()], [py(n.right)])
            arith = {v: k for k, v in ARITHMETIC.items()}[n.op]
            return ast.BinOp(py(n.left), arith(), py(n.right))
        assert isinstance(n, Call)
        by = [] if n.by is None else [ast.keyword("by", ast.Name(n.by, ast.Load()))]
        return ast.Call(ast.Name(n.func, ast.Load()), [py(a) for a in n.args], by)

    return ast.unparse(py(node))
