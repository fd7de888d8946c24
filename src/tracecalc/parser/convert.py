"""Formula text -> checked expression tree: the whitelist converter and its limits.

The text goes through Python's ``ast`` parser only; the resulting tree is walked with a
whitelist and converted into our own frozen nodes. Nothing here ever evaluates user text:
constant sub-expressions are range-checked from their operands' magnitudes *before* any
arithmetic, so ``9**9**9**9`` is refused in microseconds.
"""

from __future__ import annotations

import ast
import math
import warnings

from tracecalc.errors import (
    ArityError,
    FormulaSyntaxError,
    UnknownFunctionError,
    close_matches,
)
from tracecalc.model import DOWNSAMPLES, FUNCTION_NAMES, NAME_RE, SIGNATURES, FunctionKind
from tracecalc.parser.folding import MAX_LITERAL, _constant_value, _ConstantRange, _fold
from tracecalc.parser.nodes import (
    ARITHMETIC,
    BOOLEAN,
    COMPARISON,
    Binary,
    Call,
    Node,
    Num,
    ParsedFormula,
    Ref,
    Unary,
    walk,
)

MAX_LENGTH = 2_000
MAX_NODES = 400
MAX_DEPTH = 40
MAX_POWER = 16


def normalise(text: str) -> str:
    """One line, trimmed: newlines and tabs become spaces so carets line up."""
    return text.strip().replace("\r", " ").replace("\n", " ").replace("\t", " ")


def parse(text: str, name: str | None = None) -> ParsedFormula:
    """Parse and check formula text; raises a ``FormulaError`` subclass on any problem."""
    if not isinstance(text, str):
        raise FormulaSyntaxError("expression must be text", formula=name)
    if len(text) > MAX_LENGTH:
        raise FormulaSyntaxError(
            f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}", formula=name
        )
    src = normalise(text)
    if not src:
        raise FormulaSyntaxError("expression is empty", formula=name)
    if "\x00" in src:
        raise FormulaSyntaxError("expression contains a NUL character", formula=name)
    if not src.isascii():
        # Python folds look-alike letters (NFKC: 'ℌ' -> 'H'); refusing them keeps the
        # stored text and the names it references the same.
        col = next(i for i, ch in enumerate(src) if not ch.isascii())
        raise FormulaSyntaxError(f"only ASCII characters are allowed (found {src[col]!r})",
                                 formula=name, text=src, col=col)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings about odd literals
            module = ast.parse(src, mode="eval")
    except SyntaxError as e:
        col = e.offset - 1 if e.offset else None  # ASCII only: bytes == characters
        raise FormulaSyntaxError(f"invalid syntax ({e.msg})", formula=name, text=src,
                                 col=col) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaSyntaxError(
            f"expression is nested too deeply (limit {MAX_DEPTH})", formula=name
        ) from None
    _check_shape(module.body, src, name)
    tree = _Converter(src, name).convert(module.body)
    return ParsedFormula(src, tree)


def _check_shape(root: ast.AST, src: str, name: str | None) -> None:
    """Node count and depth, iteratively, before any recursive walk."""
    count = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise FormulaSyntaxError(
                f"expression is nested too deeply (limit {MAX_DEPTH})", formula=name, text=src,
                col=getattr(node, "col_offset", 0),
            )
        if count > MAX_NODES:
            raise FormulaSyntaxError(
                f"expression has more than {MAX_NODES} parts", formula=name
            )
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop,
                                      ast.boolop)):
                stack.append((child, depth + 1))


class _Converter:
    def __init__(self, src: str, name: str | None):
        self.src = src
        self.name = name

    def fail(self, msg: str, node: ast.AST, cls=FormulaSyntaxError, **kw):
        col = getattr(node, "col_offset", 0)
        return cls(msg, formula=self.name, text=self.src, col=col, **kw)

    def convert(self, node: ast.AST) -> Node:
        col = getattr(node, "col_offset", 0)
        if isinstance(node, ast.Constant):
            return Num(col, self._number(node))
        if isinstance(node, ast.Name):
            return self._name(node, col)
        if isinstance(node, ast.UnaryOp):
            operand = self.convert(node.operand)
            if isinstance(node.op, ast.USub):
                out = Unary(col, "-", operand)
            elif isinstance(node.op, ast.UAdd):
                return operand
            elif isinstance(node.op, ast.Not):
                out = Unary(col, "not", operand)
            else:
                raise self.fail("the operator '~' is not allowed", node)
            self._check_constant(out, node)
            return out
        if isinstance(node, ast.BinOp):
            op = ARITHMETIC.get(type(node.op))
            if op is None:
                raise self.fail(f"the operator '{_op_text(node.op)}' is not allowed", node)
            out = Binary(col, op, self.convert(node.left), self.convert(node.right))
            if op == "**":
                self._check_power(out, node)
            self._check_constant(out, node)
            return out
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.fail("chained comparisons are not allowed; write (a < b) and (b < c)",
                                node)
            op = COMPARISON.get(type(node.ops[0]))
            if op is None:
                raise self.fail(f"the operator '{_op_text(node.ops[0])}' is not allowed", node)
            out = Binary(col, op, self.convert(node.left), self.convert(node.comparators[0]))
            self._check_constant(out, node)
            return out
        if isinstance(node, ast.BoolOp):
            op = BOOLEAN[type(node.op)]
            out = self.convert(node.values[0])
            for v in node.values[1:]:  # a and b and c == (a and b) and c; Kleene is associative
                out = Binary(col, op, out, self.convert(v))
            self._check_constant(out, node)
            return out
        if isinstance(node, ast.Call):
            return self._call(node, col)
        raise self.fail(f"{_describe(node)} is not allowed in a formula", node)

    def _number(self, node: ast.Constant) -> float:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"{_describe(node)} is not allowed in a formula", node)
        if isinstance(v, int) and abs(v) > MAX_LITERAL:
            raise self.fail(f"number too large (limit {MAX_LITERAL:g})", node)
        f = float(v)
        if not math.isfinite(f) or abs(f) > MAX_LITERAL:
            raise self.fail(f"number too large (limit {MAX_LITERAL:g})", node)
        return f

    def _name(self, node: ast.Name, col: int) -> Ref:
        ident = node.id
        if not NAME_RE.match(ident):
            raise self.fail(
                f"'{ident}' is not a valid name (a letter, then letters, digits or _; "
                "at most 64 characters)", node)
        if ident in FUNCTION_NAMES:
            raise self.fail(f"'{ident}' is a function; call it as {ident}(...)", node)
        return Ref(col, ident)

    def _call(self, node: ast.Call, col: int) -> Call:
        if not isinstance(node.func, ast.Name):
            raise self.fail("only the language's functions can be called, by name", node)
        fname = node.func.id
        spec = SIGNATURES.get(fname)
        if spec is None:
            raise self.fail("", node, cls=_UnknownFunction, function=fname,
                            possibilities=close_matches(fname, FUNCTION_NAMES))
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise self.fail("* and ** arguments are not allowed", node)
        args: list[ast.AST | None] = list(node.args)
        given_by = [kw for kw in node.keywords if kw.arg == "by"]
        if len(given_by) > 1:
            raise self.fail(f"{spec.signature()} got 'by' twice", given_by[1].value,
                            cls=ArityError)
        by = self._by(given_by[0], spec) if given_by else None
        keywords = [kw for kw in node.keywords if kw.arg != "by"]
        if spec.variadic:
            if keywords:
                raise self.fail(f"{fname}() takes no keyword arguments", node)
            if len(args) < spec.min_args:
                raise self.fail(f"{spec.signature()} takes {spec.arity_text()}, got {len(args)}",
                                node, cls=ArityError)
            return Call(col, fname, tuple(self.convert(a) for a in args))
        names = [p.name for p in spec.params]
        if len(args) > len(names):
            raise self.fail(f"{spec.signature()} takes {spec.arity_text()}, got {len(args)}",
                            node, cls=ArityError)
        args += [None] * (len(names) - len(args))
        for kw in keywords:
            if kw.arg not in names:
                raise self.fail(f"{spec.signature()} has no parameter '{kw.arg}'", kw.value,
                                cls=ArityError)
            i = names.index(kw.arg)
            if args[i] is not None:
                raise self.fail(f"{spec.signature()} got '{kw.arg}' twice", kw.value,
                                cls=ArityError)
            args[i] = kw.value
        out: list[Node] = []
        for p, a in zip(spec.params, args):
            if a is None:
                if p.default is None:
                    given = sum(x is not None for x in args)
                    raise self.fail(
                        f"{spec.signature()} takes {spec.arity_text()}, got {given}", node,
                        cls=ArityError)
                out.append(Num(col, float(p.default)))
            elif p.literal and p.real:
                out.append(Num(a.col_offset, self._real_literal(a, p, spec)))
            elif p.literal:
                out.append(Num(a.col_offset, float(self._int_literal(a, p, spec))))
            else:
                out.append(self.convert(a))
        if fname == "asof" and not any(isinstance(n, Ref) for n in walk(out[0])):
            raise self.fail("asof(x, max_age) converts a data item, a formula or an "
                            "expression over them, as in asof(eps) or asof(ttm(eps)); this "
                            "one reads none", args[0], cls=ArityError)
        if fname in DOWNSAMPLES and not isinstance(out[0], Ref):
            raise self.fail(f"{fname}(x) takes the name of a data item or formula, as in "
                            f"{fname}(close); save an expression as a formula first (dollar_"
                            f"volume = close * volume) and convert that", args[0],
                            cls=ArityError)
        return Call(col, fname, tuple(out), by)

    def _by(self, kw: ast.keyword, spec) -> str:
        """The entity attribute of ``by=ATTRIBUTE`` (cross-sectional functions only)."""
        if spec.kind is not FunctionKind.CROSS_SECTIONAL:
            raise self.fail(f"{spec.signature()} has no parameter 'by' (by=ATTRIBUTE groups "
                            "the cross-sectional functions, cs_*)", kw.value, cls=ArityError)
        v = kw.value
        if not (isinstance(v, ast.Name) and NAME_RE.match(v.id)):
            raise self.fail(f"{spec.name}(..., by=ATTRIBUTE) takes the name of an entity "
                            "attribute (a column of the entities file), as in by=sector",
                            v, cls=ArityError)
        return v.id

    def _int_literal(self, a: ast.AST, p, spec) -> int:
        neg = False
        inner = a
        if isinstance(a, ast.UnaryOp) and isinstance(a.op, ast.USub):
            neg, inner = True, a.operand
        if not (isinstance(inner, ast.Constant) and type(inner.value) is int):
            raise self.fail(
                f"{spec.signature()}: '{p.name}' must be a whole number written out, "
                f"from {p.lo} to {p.hi}", a, cls=ArityError)
        v = -inner.value if neg else inner.value
        if not p.lo <= v <= p.hi:
            raise self.fail(
                f"{spec.signature()}: '{p.name}' must be from {p.lo} to {p.hi}, got {v}", a,
                cls=ArityError)
        return v

    def _real_literal(self, a: ast.AST, p, spec) -> float:
        neg = False
        inner = a
        if isinstance(a, ast.UnaryOp) and isinstance(a.op, (ast.USub, ast.UAdd)):
            neg, inner = isinstance(a.op, ast.USub), a.operand
        if not (isinstance(inner, ast.Constant) and type(inner.value) in (int, float)):
            raise self.fail(
                f"{spec.signature()}: '{p.name}' must be a number written out, "
                f"{p.bounds_text()}", a, cls=ArityError)
        try:
            v = float(-inner.value if neg else inner.value)
        except OverflowError:  # an integer beyond any float
            v = math.inf
        if not (math.isfinite(v) and p.lo <= v <= p.hi):
            raise self.fail(
                f"{spec.signature()}: '{p.name}' must be {p.bounds_text()}, got {v:g}", a,
                cls=ArityError)
        return v + 0.0  # -0.0 is 0

    def _check_power(self, out: Binary, node: ast.AST) -> None:
        if _constant_value(out.left) is not None:
            return  # constant base: range-checked as a constant, or NaN-safe at run time
        k = _constant_value(out.right)
        if k is None:
            raise self.fail("a power of a non-constant needs a constant exponent", node)
        if abs(k) > MAX_POWER:
            raise self.fail(f"exponent {k:g} is too large (limit {MAX_POWER})", node)

    def _check_constant(self, out: Node, node: ast.AST) -> None:
        try:
            _fold(out)
        except _ConstantRange as e:
            raise self.fail(str(e), node) from None


class _UnknownFunction(UnknownFunctionError):
    def __init__(self, _msg, *, function, possibilities, **kw):
        super().__init__(function, possibilities, **kw)


def _op_text(op: ast.AST) -> str:
    return {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
            ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Is: "is", ast.IsNot: "is not",
            ast.In: "in", ast.NotIn: "not in", ast.Invert: "~"}.get(type(op), type(op).__name__)


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        kind = type(node.value).__name__
        return {"str": "text", "bytes": "bytes", "bool": "True/False", "NoneType": "None",
                "complex": "a complex number", "ellipsis": "..."}.get(kind, kind)
    return {
        ast.Attribute: "attribute access (.)", ast.Subscript: "indexing ([])",
        ast.Lambda: "lambda", ast.IfExp: "'x if c else y' (use if_(c, x, y))",
        ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
        ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set",
        ast.NamedExpr: "':='", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
        ast.JoinedStr: "an f-string", ast.Starred: "'*'", ast.Slice: "a slice",
    }.get(type(node), type(node).__name__)
