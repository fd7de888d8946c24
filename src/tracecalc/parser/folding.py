"""Constant sub-expressions: their values, range-checked from their operands' magnitudes
before any arithmetic (so ``9**9**9**9`` is refused in microseconds)."""

from __future__ import annotations

import math

from tracecalc.parser.nodes import Binary, Call, Node, Num, Ref, Unary

MAX_LITERAL = 1e15


class _ConstantRange(Exception):
    pass


def _fold(node: Node) -> float | None:
    """Value of a constant sub-tree, or None if it is not constant.

    Each step checks magnitudes from logarithms first, so no step can overflow or hang.
    Results are kept within [-1e15, 1e15] like literals.
    """
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Ref) or isinstance(node, Call):
        return None
    if isinstance(node, Unary):
        v = _fold(node.operand)
        if v is None:
            return None
        return -v if node.op == "-" else (math.nan if math.isnan(v) else float(v == 0))
    assert isinstance(node, Binary)
    a, b = _fold(node.left), _fold(node.right)
    if a is None or b is None:
        return None
    if math.isnan(a) or math.isnan(b):
        return math.nan
    op = node.op
    if op in ("*", "/", "**"):
        if op == "/" and b == 0:
            raise _ConstantRange("division by zero in a constant expression")
        if op == "**":
            if a == 0 and b < 0:
                raise _ConstantRange("zero to a negative power in a constant expression")
            if a < 0 and b != int(b):
                raise _ConstantRange("negative number to a fractional power")
            mag = b * math.log10(abs(a)) if a != 0 else -math.inf
        else:
            la = math.log10(abs(a)) if a else -math.inf
            lb = math.log10(abs(b)) if b else -math.inf
            mag = la + lb if op == "*" else (la - lb if a else -math.inf)
        if mag > 15:
            raise _ConstantRange(f"constant expression too large (limit {MAX_LITERAL:g})")
    if op == "+":
        v = a + b
    elif op == "-":
        v = a - b
    elif op == "*":
        v = a * b
    elif op == "/":
        v = a / b
    elif op == "**":
        v = a**b
    else:
        v = _fold_logic(op, a, b)
    if abs(v) > MAX_LITERAL:
        raise _ConstantRange(f"constant expression too large (limit {MAX_LITERAL:g})")
    return float(v)


def _fold_logic(op: str, a: float, b: float) -> float:
    cmp = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}
    if op in cmp:
        return float(cmp[op])
    if op == "and":
        return float(a != 0 and b != 0)
    return float(a != 0 or b != 0)


def _constant_value(node: Node) -> float | None:
    try:
        return _fold(node)
    except _ConstantRange:
        return None
