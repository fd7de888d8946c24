"""A reference evaluator: docs/formula-language.md in executable form, one record at a time.

It is written independently of ``tracecalc.functions`` (no numpy, no kernels): plain Python
floats and ``math``, one (entity, period) at a time, following the documented rules literally.
The property tests in ``test_reference.py`` hold the vectorised evaluator and the engine to it.

    ref = Reference(data, periods=4, entities=2, formulas={"m": parse("a - b").tree})
    ref.value("m", entity=0, period=3)

``data(name, entity, period)`` gives an input item's value (NaN when missing); entities and
periods are 0-based indices, periods oldest first, entities in the panel's order (the order
cross-sectional sums run in). Time-series and cross-sectional functions evaluate their
arguments at other periods or entities by recursion, memoised per (node, entity, period).

G1 is applied at every arithmetic step: each ``+ - * / **`` the docs name produces a finite
number or NaN, never an infinity ("any +-inf produced anywhere becomes NaN").

The elementary functions e**x, ln x and x**y come from ``math`` (the C library) unless the
caller passes others (see ``Elementary``); everything around them is the reference's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

from tracecalc.parser import Binary, Call, Node, Num, Ref, Unary

NAN = math.nan

Data = Callable[[str, int, int], float]


# --- G1 and G2: scalar arithmetic ------------------------------------------------------------

def missing(x: float) -> bool:
    return math.isnan(x)


def finite(x: float) -> float:
    """G1: an infinity becomes NaN (NaN stays NaN)."""
    return x if math.isfinite(x) else NAN


def add(a: float, b: float) -> float:
    return finite(a + b)  # IEEE: NaN in, NaN out


def sub(a: float, b: float) -> float:
    return finite(a - b)


def mul(a: float, b: float) -> float:
    return finite(a * b)


def divide(a: float, b: float) -> float:
    """a / b; NaN when b == 0 (0 / 0 included), when either is NaN, or on overflow."""
    if missing(a) or missing(b) or b == 0:
        return NAN
    return finite(a / b)


def power(a: float, b: float, pow_: Callable[[float, float], float] = math.pow) -> float:
    """a ** b; NaN ** 0 and 1 ** NaN are NaN (G2, unlike IEEE); domain errors are NaN."""
    if missing(a) or missing(b):
        return NAN
    try:
        return finite(pow_(a, b))  # 0 ** 0 == 1
    except (ValueError, OverflowError):  # (-8) ** 0.5, 0 ** -1, 10 ** 400
        return NAN


def negate(a: float) -> float:
    return -a


# --- G3: comparisons and Kleene logic ----------------------------------------------------------

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def compare(op: str, a: float, b: float) -> float:
    if missing(a) or missing(b):
        return NAN
    return 1.0 if COMPARISONS[op](a, b) else 0.0


def truth(x: float) -> bool | None:
    """A value as a condition: True when non-zero, False when 0, None (unknown) when NaN."""
    if missing(x):
        return None
    return x != 0


def as_value(t: bool | None) -> float:
    return NAN if t is None else (1.0 if t else 0.0)


def kleene_and(a: float, b: float) -> float:
    ta, tb = truth(a), truth(b)
    if ta is False or tb is False:
        return 0.0
    if ta is True and tb is True:
        return 1.0
    return NAN


def kleene_or(a: float, b: float) -> float:
    ta, tb = truth(a), truth(b)
    if ta is True or tb is True:
        return 1.0
    if ta is False and tb is False:
        return 0.0
    return NAN


def kleene_not(a: float) -> float:
    t = truth(a)
    return as_value(None if t is None else not t)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": add, "-": sub, "*": mul, "/": divide, "**": power,
    "and": kleene_and, "or": kleene_or,
}


# --- element-wise and missing-data functions, on one record --------------------------------

def abs_(x: float) -> float:
    return abs(x)


def sign(x: float) -> float:
    if missing(x):
        return NAN
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def log(x: float, log_: Callable[[float], float] = math.log) -> float:
    if missing(x) or x <= 0:
        return NAN
    return finite(log_(x))


def exp(x: float, exp_: Callable[[float], float] = math.exp) -> float:
    if missing(x):
        return NAN
    try:
        return finite(exp_(x))  # exp(-1000) == 0
    except OverflowError:  # exp(1000)
        return NAN


def sqrt(x: float) -> float:
    if missing(x) or x < 0:
        return NAN
    return math.sqrt(x)


def round_(x: float, d: int = 0) -> float:
    """trunc(x * 10**d + copysign(0.5, x)) / 10**d; negative d divides by the exact 10**-d."""
    if missing(x):
        return NAN
    scale = 10.0 ** abs(d)
    y = x * scale if d >= 0 else x / scale
    if abs(y) >= 2.0**52:  # already whole at this scale (y may even have overflowed)
        return x
    r = float(math.trunc(y + math.copysign(0.5, x)))
    return finite(r / scale if d >= 0 else r * scale)


def min_(*xs: float) -> float:
    return NAN if any(missing(x) for x in xs) else min(xs)


def max_(*xs: float) -> float:
    return NAN if any(missing(x) for x in xs) else max(xs)


def clip(x: float, lo: float, hi: float) -> float:
    if missing(x) or missing(lo) or missing(hi):
        return NAN
    return min(max(x, lo), hi)  # hi wins when lo > hi


def if_(c: float, a: float, b: float) -> float:
    t = truth(c)
    if t is None:
        return NAN
    return a if t else b  # the branch not taken does not matter, even when NaN


def coalesce(*xs: float) -> float:
    return next((x for x in xs if not missing(x)), NAN)


def isnull(x: float) -> float:
    return 1.0 if missing(x) else 0.0


def div(a: float, b: float, fill: float) -> float:
    q = divide(a, b)
    return fill if missing(q) else q


def log1p(x: float, log1p_: Callable[[float], float] = math.log1p) -> float:
    if missing(x) or x <= -1:
        return NAN
    return finite(log1p_(x))


def tanh(x: float, tanh_: Callable[[float], float] = math.tanh) -> float:
    return NAN if missing(x) else tanh_(x)


def signed_power(x: float, a: float,
                 pow_: Callable[[float, float], float] = math.pow) -> float:
    """sign(x) * abs(x) ** a: sign(0) = 0 makes 0 of 0 ** 0; 0 ** -1 is NaN already."""
    if missing(x):
        return NAN
    return mul(sign(x), power(abs(x), a, pow_))


# Functions that see one record of each argument (their literals passed as ints).
RECORDWISE: dict[str, Callable[..., float]] = {
    "abs": abs_, "sign": sign, "log": log, "exp": exp, "sqrt": sqrt, "round": round_,
    "min": min_, "max": max_, "clip": clip, "if_": if_,
    "coalesce": coalesce, "isnull": isnull, "div": div,
    "signed_power": signed_power, "log1p": log1p, "tanh": tanh,
}


# --- the evaluator -------------------------------------------------------------------------

@dataclass(frozen=True)
class Elementary:
    """The elementary functions the reference builds on: e**x, ln x, x**y, ln(1 + x), tanh.

    Each takes and returns floats; outside its domain it may raise ``ValueError`` or
    ``OverflowError`` or return inf or NaN, and the reference turns all of that into NaN.
    The default is ``math``'s (the C library's). numpy's vectorised versions, which the
    kernels use, round differently in the last place for a few percent of arguments, and an
    expression that cancels (``a ** 3 - a * a * a``) magnifies that; a test that compares
    with the kernels passes numpy's functions in. The semantics stay the reference's own.
    """

    exp: Callable[[float], float] = math.exp
    log: Callable[[float], float] = math.log
    pow: Callable[[float, float], float] = math.pow
    log1p: Callable[[float], float] = math.log1p
    tanh: Callable[[float], float] = math.tanh


LIBM = Elementary()


class Reference:
    """Evaluates items and formulas record by record over a (periods x entities) panel."""

    def __init__(self, data: Data, periods: int, entities: int,
                 formulas: Mapping[str, Node] | None = None, elementary: Elementary = LIBM):
        self.data = data
        self.periods = periods
        self.entities = entities
        self.formulas = dict(formulas or {})
        self._memo: dict[tuple[int, int, int], float] = {}
        self._arithmetic = {**ARITHMETIC, "**": partial(power, pow_=elementary.pow)}
        self._recordwise = {**RECORDWISE, "exp": partial(exp, exp_=elementary.exp),
                            "log": partial(log, log_=elementary.log),
                            "log1p": partial(log1p, log1p_=elementary.log1p),
                            "tanh": partial(tanh, tanh_=elementary.tanh),
                            "signed_power": partial(signed_power, pow_=elementary.pow)}

    def value(self, name: str, entity: int, period: int) -> float:
        """An item's or formula's value at one record; NaN when missing."""
        if name in self.formulas:
            return self.eval(self.formulas[name], entity, period)
        return float(self.data(name, entity, period))

    def panel(self, name: str) -> list[list[float]]:
        """All records of ``name``, as rows of periods (oldest first) of entities."""
        return [[self.value(name, e, t) for e in range(self.entities)]
                for t in range(self.periods)]

    def eval(self, node: Node, entity: int, period: int) -> float:
        key = (id(node), entity, period)  # trees are kept alive by self.formulas or the caller
        if key not in self._memo:
            self._memo[key] = self._eval(node, entity, period)
        return self._memo[key]

    def _eval(self, node: Node, e: int, t: int) -> float:
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Ref):
            return self.value(node.name, e, t)
        if isinstance(node, Unary):
            x = self.eval(node.operand, e, t)
            return negate(x) if node.op == "-" else kleene_not(x)
        if isinstance(node, Binary):
            a, b = self.eval(node.left, e, t), self.eval(node.right, e, t)
            if node.op in COMPARISONS:
                return compare(node.op, a, b)
            return self._arithmetic[node.op](a, b)
        assert isinstance(node, Call)
        if node.func in self._recordwise:
            args = [self._int(a) if node.func == "round" and i == 1 else self.eval(a, e, t)
                    for i, a in enumerate(node.args)]
            return self._recordwise[node.func](*args)
        method = getattr(self, f"_fn_{node.func}")
        return method(node.args, e, t)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _int(node: Node) -> int:
        assert isinstance(node, Num)  # the parser turns literal parameters into Num nodes
        return int(node.value)

    def _at(self, node: Node, e: int, t: int) -> float:
        """node's value at period t; NaN before the first period (never ahead: t <= now)."""
        return self.eval(node, e, t) if t >= 0 else NAN

    def _window(self, node: Node, e: int, t: int, n: int) -> list[float] | None:
        """The last n values up to t, oldest first; None unless all n exist and are present."""
        if t - n + 1 < 0:
            return None
        values = [self.eval(node, e, s) for s in range(t - n + 1, t + 1)]
        return None if any(missing(v) for v in values) else values

    def _column(self, node: Node, t: int) -> list[float]:
        """node's values at period t for every entity, in entity order."""
        return [self.eval(node, e, t) for e in range(self.entities)]

    # -- missing data ------------------------------------------------------------------------

    def _fn_ffill(self, args, e, t):
        x, limit = args[0], self._int(args[1])
        for back in range(0, limit + 1):  # the value itself, then 1..limit periods earlier
            v = self._at(x, e, t - back)
            if not missing(v):
                return v
        return NAN

    # -- time series -------------------------------------------------------------------------

    def _fn_lag(self, args, e, t):
        return self._at(args[0], e, t - self._int(args[1]))

    def _fn_diff(self, args, e, t):
        k = self._int(args[1])
        return sub(self._at(args[0], e, t), self._at(args[0], e, t - k))

    def _fn_growth(self, args, e, t):
        k = self._int(args[1])
        base = self._at(args[0], e, t - k)
        if missing(base) or base <= 0:
            return NAN
        return sub(divide(self._at(args[0], e, t), base), 1.0)

    def _sum(self, values: list[float]) -> float:
        """Oldest first: s = x[t-n+1]; s = s + x[t-n+2]; ..."""
        s = values[0]
        for v in values[1:]:
            s = add(s, v)
        return s

    def _fn_ts_sum(self, args, e, t):
        w = self._window(args[0], e, t, self._int(args[1]))
        return NAN if w is None else self._sum(w)

    def _fn_ts_mean(self, args, e, t):
        n = self._int(args[1])
        return divide(self._fn_ts_sum(args, e, t), n)

    def _fn_ts_min(self, args, e, t):
        w = self._window(args[0], e, t, self._int(args[1]))
        return NAN if w is None else min(w)

    def _fn_ts_max(self, args, e, t):
        w = self._window(args[0], e, t, self._int(args[1]))
        return NAN if w is None else max(w)

    @staticmethod
    def _dev_products(xs: list[float], mx: float, ys: list[float], my: float) -> float:
        """sum((x_i - mx) * (y_i - my)), oldest first."""
        s = 0.0
        for x, y in zip(xs, ys):
            s = add(s, mul(sub(x, mx), sub(y, my)))
        return s

    def _fn_ts_std(self, args, e, t):
        n, ddof = self._int(args[1]), self._int(args[2])
        w = self._window(args[0], e, t, n)
        if w is None or n - ddof <= 0:
            return NAN
        m = divide(self._sum(w), n)
        return sqrt(divide(self._dev_products(w, m, w, m), n - ddof))

    def _fn_ts_corr(self, args, e, t):
        n = self._int(args[2])
        xs = self._window(args[0], e, t, n)
        ys = self._window(args[1], e, t, n)
        if xs is None or ys is None:
            return NAN
        if min(xs) == max(xs) or min(ys) == max(ys):  # constant over the window
            return NAN
        mx, my = divide(self._sum(xs), n), divide(self._sum(ys), n)
        cov = self._dev_products(xs, mx, ys, my)
        vx, vy = self._dev_products(xs, mx, xs, mx), self._dev_products(ys, my, ys, my)
        if vx == 0 or vy == 0:
            return NAN
        return divide(cov, sqrt(mul(vx, vy)))

    def _smooth(self, x: Node, e: int, t: int, n: int, alpha: float) -> float:
        """The TA-Lib seeded exponential average at t, replayed from the first period."""
        out, state, seed_sum, seen = NAN, NAN, 0.0, 0
        for s in range(t + 1):
            v = self.eval(x, e, s)
            if missing(v):  # missing in, missing out; the state is left untouched
                out = NAN
            elif seen < n:  # collecting the first n present values
                seed_sum, seen = add(seed_sum, v), seen + 1
                state = divide(seed_sum, n) if seen == n else NAN
                out = state
            else:
                state = add(mul(alpha, v), mul(1.0 - alpha, state))
                out = state
        return out

    def _fn_ema(self, args, e, t):
        n = self._int(args[1])
        return self._smooth(args[0], e, t, n, 2.0 / (n + 1))

    def _fn_wilder(self, args, e, t):
        n = self._int(args[1])
        return self._smooth(args[0], e, t, n, 1.0 / n)

    def _fn_ttm(self, args, e, t):
        w = self._window(args[0], e, t, 4)
        return NAN if w is None else self._sum(w)

    def _fn_avg_balance(self, args, e, t):
        k = self._int(args[1])
        return divide(add(self._at(args[0], e, t), self._at(args[0], e, t - k)), 2.0)

    # -- time series: order statistics -------------------------------------------------------

    def _fn_ts_rank(self, args, e, t):
        n = self._int(args[1])
        w = self._window(args[0], e, t, n)
        if w is None:
            return NAN
        today = w[-1]
        below = sum(1 for v in w if v < today)
        ties = sum(1 for v in w if v == today)  # today's value included
        return (below + (ties + 1) / 2) / n  # its average 1-based rank, over n

    def _position(self, args, e, t, better) -> float:
        """1-based position (1: oldest) of the first extreme of the window."""
        w = self._window(args[0], e, t, self._int(args[1]))
        if w is None:
            return NAN
        pos = 0
        for i, v in enumerate(w):
            if better(v, w[pos]):
                pos = i
        return float(pos + 1)

    def _fn_ts_argmax(self, args, e, t):
        return self._position(args, e, t, lambda v, best: v > best)

    def _fn_ts_argmin(self, args, e, t):
        return self._position(args, e, t, lambda v, best: v < best)

    def _fn_ts_quantile(self, args, e, t):
        n, q = self._int(args[1]), args[2].value
        w = self._window(args[0], e, t, n)
        if w is None:
            return NAN
        v = sorted(w)
        h = (n - 1) * q
        i = math.floor(h)
        if h == i:
            return v[i]
        return add(v[i], mul(sub(v[i + 1], v[i]), h - i))

    # -- time series: least squares on time, moments ------------------------------------------

    def _line(self, w: list[float]) -> tuple[float, float, float, float]:
        """(m, Sxy, Sxx, Stt) of the window on times 1..n."""
        n = len(w)
        m = divide(self._sum(w), n)
        sxy, sxx = 0.0, 0.0
        for i, v in enumerate(w, start=1):
            d = sub(v, m)
            sxy = add(sxy, mul(i - (n + 1) / 2, d))
            sxx = add(sxx, mul(d, d))
        return m, sxy, sxx, n * (n * n - 1) / 12

    def _fit(self, args, e, t):
        n = self._int(args[1])
        w = self._window(args[0], e, t, n)
        return (None, None) if w is None or n == 1 else (w, min(w) == max(w))

    def _fn_ts_slope(self, args, e, t):
        w, flat = self._fit(args, e, t)
        if w is None:
            return NAN
        if flat:
            return 0.0
        _, sxy, _, stt = self._line(w)
        return divide(sxy, stt)

    def _fn_ts_rsquare(self, args, e, t):
        w, flat = self._fit(args, e, t)
        if w is None or flat:
            return NAN
        _, sxy, sxx, stt = self._line(w)
        r = divide(mul(sxy, sxy), mul(stt, sxx))
        return r if missing(r) else min(1.0, r)

    def _fn_ts_resi(self, args, e, t):
        w, flat = self._fit(args, e, t)
        if w is None:
            return NAN
        if flat:
            return 0.0
        m, sxy, _, stt = self._line(w)
        n = len(w)
        return sub(sub(w[-1], m), mul(divide(sxy, stt), (n - 1) / 2))

    def _central(self, args, e, t, least: int):
        """(n, m2, m3, m4) of the window (m_k = sum(d**k) / n), or None if NaN."""
        n = self._int(args[1])
        w = self._window(args[0], e, t, n)
        if w is None or n < least or min(w) == max(w):
            return None
        m = divide(self._sum(w), n)
        s2, s3, s4 = 0.0, 0.0, 0.0
        for v in w:
            d = sub(v, m)
            dd = mul(d, d)
            s2, s3, s4 = add(s2, dd), add(s3, mul(dd, d)), add(s4, mul(dd, dd))
        m2 = divide(s2, n)
        return None if m2 == 0 else (n, m2, divide(s3, n), divide(s4, n))

    def _fn_ts_skew(self, args, e, t):
        c = self._central(args, e, t, 3)
        if c is None:
            return NAN
        n, m2, m3, _ = c
        return mul(math.sqrt(n * (n - 1)) / (n - 2), divide(m3, mul(m2, sqrt(m2))))

    def _fn_ts_kurt(self, args, e, t):
        c = self._central(args, e, t, 4)
        if c is None:
            return NAN
        n, m2, _, m4 = c
        k = sub(mul(n + 1, divide(m4, mul(m2, m2))), 3 * (n - 1))
        return mul((n - 1) / ((n - 2) * (n - 3)), k)

    # -- time series: other windows ------------------------------------------------------------

    def _fn_ts_cov(self, args, e, t):
        n = self._int(args[2])
        xs = self._window(args[0], e, t, n)
        ys = self._window(args[1], e, t, n)
        if xs is None or ys is None or n == 1:
            return NAN
        mx, my = divide(self._sum(xs), n), divide(self._sum(ys), n)
        return divide(self._dev_products(xs, mx, ys, my), n - 1)

    def _fn_ts_product(self, args, e, t):
        w = self._window(args[0], e, t, self._int(args[1]))
        if w is None:
            return NAN
        p = w[0]
        for v in w[1:]:
            p = mul(p, v)
        return p

    def _fn_decay_linear(self, args, e, t):
        n = self._int(args[1])
        w = self._window(args[0], e, t, n)
        if w is None:
            return NAN
        s = 0.0
        for i, v in enumerate(w, start=1):  # weight 1 on the oldest, n on today
            s = add(s, mul(float(i), v))
        return divide(s, n * (n + 1) / 2)

    def _fn_ts_count(self, args, e, t):
        n = self._int(args[1])
        if t - n + 1 < 0:
            return NAN
        values = [self.eval(args[0], e, s) for s in range(t - n + 1, t + 1)]
        if all(missing(v) for v in values):
            return NAN
        return float(sum(1 for v in values if truth(v) is True))

    # -- cross-sectional ---------------------------------------------------------------------

    def _present(self, node: Node, t: int) -> list[float]:
        return [v for v in self._column(node, t) if not missing(v)]

    def _mean(self, values: list[float]) -> float:
        s = 0.0
        for v in values:  # left to right in entity order
            s = add(s, v)
        return divide(s, len(values))

    def _fn_cs_rank(self, args, e, t):
        v = self.eval(args[0], e, t)
        if missing(v):
            return NAN
        present = self._present(args[0], t)
        below = sum(1 for u in present if u < v)
        ties = sum(1 for u in present if u == v)  # v itself included
        average_rank = below + (ties + 1) / 2  # mean of ranks below+1 .. below+ties
        return average_rank / len(present)

    def _fn_cs_demean(self, args, e, t):
        v = self.eval(args[0], e, t)
        if missing(v):
            return NAN
        return sub(v, self._mean(self._present(args[0], t)))

    def _fn_cs_zscore(self, args, e, t):
        v = self.eval(args[0], e, t)
        present = self._present(args[0], t)
        if missing(v) or len(present) < 2 or min(present) == max(present):
            return NAN
        m = self._mean(present)
        ss = 0.0
        for u in present:
            ss = add(ss, mul(sub(u, m), sub(u, m)))
        std = sqrt(divide(ss, len(present)))  # population std
        return divide(sub(v, m), std)

    def _fn_cs_scale(self, args, e, t):
        v = self.eval(args[0], e, t)
        if missing(v):
            return NAN
        s = 0.0
        for u in self._present(args[0], t):
            s = add(s, abs(u))
        return mul(divide(v, s), args[1].value)

    def _fn_cs_winsorize(self, args, e, t):
        v = self.eval(args[0], e, t)
        if missing(v):
            return NAN
        present = self._present(args[0], t)
        if min(present) == max(present):
            return v  # all equal: kept as they are
        m = self._mean(present)
        ss = 0.0
        for u in present:
            ss = add(ss, mul(sub(u, m), sub(u, m)))
        reach = mul(args[1].value, sqrt(divide(ss, len(present))))
        return clip(v, sub(m, reach), add(m, reach))

    def _fn_cs_quantile(self, args, e, t):
        v = self.eval(args[0], e, t)
        if missing(v):
            return NAN
        q = self._int(args[1])
        present = self._present(args[0], t)
        below = sum(1 for u in present if u < v)
        ties = sum(1 for u in present if u == v)
        rank = Fraction(2 * below + ties + 1, 2)  # the average 1-based rank, exactly
        return float(math.ceil(rank * q / len(present)))

    def _fn_cs_resid(self, args, e, t):
        y, x = self.eval(args[0], e, t), self.eval(args[1], e, t)
        if missing(y) or missing(x):
            return NAN
        pairs = [(b, a) for b, a in zip(self._column(args[0], t), self._column(args[1], t))
                 if not missing(b) and not missing(a)]
        ys, xs = [b for b, _ in pairs], [a for _, a in pairs]
        if len(pairs) < 2 or min(xs) == max(xs):
            return NAN
        mx, my = self._mean(xs), self._mean(ys)
        sxx = self._dev_products(xs, mx, xs, mx)
        if missing(sxx) or sxx == 0:
            return NAN
        b = divide(self._dev_products(xs, mx, ys, my), sxx)
        return sub(sub(y, my), mul(b, sub(x, mx)))
