"""The CLI's tables as plain text: the layout rich gives a ``SIMPLE_HEAD`` table, written
directly.

At 50,000 formulas rich spends tens of seconds laying out ``list`` and ``status``; this
lays out the same table in well under a second. It keeps rich's width rules (every column
at its widest, then the widest wrappable columns shrink first, then all evenly), its word
wrapping and cropping, so the output stays what it was, byte for byte, on plain text.

Cells are literal text: stored names, texts and users are never markup.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from rich.cells import cell_len as _rich_cell_len
from rich.cells import chop_cells as _rich_chop_cells
from rich.cells import set_cell_size as _rich_set_cell_size

# The control codes rich's Text drops (bell, backspace, vertical tab, form feed, CR).
_STRIP = {7: None, 8: None, 11: None, 12: None, 13: None}
_WORD = re.compile(r"\s*\S+\s*")
_RULE = "\u2500"


def _plain(s: str) -> bool:
    """One cell per character: printable ASCII (rich gives tabs and controls no width)."""
    return s.isascii() and s.isprintable()


def _len(s: str) -> int:
    return len(s) if _plain(s) else _rich_cell_len(s)


def _chop(s: str, width: int) -> list[str]:
    if _plain(s):
        return [s[i : i + width] for i in range(0, len(s), width)]
    return _rich_chop_cells(s, width)


def _fit(s: str, width: int) -> str:
    """Cropped or padded with spaces to exactly ``width`` cells."""
    if _plain(s):
        return s[:width] if len(s) >= width else s + " " * (width - len(s))
    return _rich_set_cell_size(s, max(width, 0))


class Table:
    """A table that stays readable at 80 columns: text columns wrap (``whole`` ones never),
    number columns are right aligned in one format and never wrap."""

    def __init__(self, columns: tuple[str, ...], title: str | None, numeric: set[str],
                 whole: set[str]):
        self.columns = columns
        self.title = title
        self.right = [c in numeric for c in columns]
        self.wrap = [c not in numeric and c not in whole for c in columns]
        # rich's overflow: text columns fold, number columns end in an ellipsis when cropped
        self.ellipsis = [c in numeric for c in columns]
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def render(self, width: int) -> str:
        """The table as lines of text at most ``width`` cells wide, each ending in a newline."""
        n = len(self.columns)
        extra = 2 + n - 1  # the edges and one divider between columns
        avail = width - extra
        pads = [1] * (n - 1) + [0]  # one space right of each cell but the last
        header = tuple(self.columns)
        columns = list(zip(*self.rows)) if self.rows else [()] * n
        # one C-level test per column: printable ASCII throughout means len() is the width
        plain = [_plain("".join(col)) for col in columns]
        widths, longest = [], []
        for i, col in enumerate(columns):
            longest.append(max(map(len if plain[i] else _widest_line, col), default=0))
            widest = max(longest[i], _widest_line(header[i]))
            widths.append(max(min(widest + pads[i], avail), 1) if avail >= 1 else 1)
        natural = widths[:]
        if sum(widths) > avail:
            widths = _collapse(widths, self.wrap, avail)
            if sum(widths) > avail:  # last resort: every column gives up the same
                widths = _reduce(sum(widths) - avail, [1] * n, widths, widths)
            widths = [0 if w < 1 else w if w - p < 1 else min(nat, w)
                      for w, p, nat in zip(widths, pads, natural)]
        table_width = sum(widths) + extra

        # Each column's cells: a string where the cell is one line, else a list of lines.
        cells = [self._column(i, col, plain[i] and longest[i] + pads[i] <= widths[i], widths[i],
                              pads[i]) for i, col in enumerate(columns)]
        tall = {r for col in cells for r, c in enumerate(col) if type(c) is list}
        lines: list[str] = []
        if self.title is not None:
            lines += [_fit(t.rstrip(), table_width) for t in _wrap(self.title, table_width)]
        lines.append(" " * table_width)
        _join(lines, [self._lines(i, h, widths[i], pads[i]) for i, h in enumerate(header)],
              widths, bottom=True)
        lines.append(" " + _RULE * (table_width - 2) + " ")
        for r, row in enumerate(zip(*cells)):
            if r in tall:
                _join(lines, [c if type(c) is list else [c] for c in row], widths)
            else:
                lines.append(" " + " ".join(row) + " ")
        lines.append(" " * table_width)
        if table_width > width:  # columns that cannot shrink any further: cropped, as rich does
            lines = [_fit(line, width) for line in lines]
        lines.append("")
        return "\n".join(lines)

    def _column(self, i: int, col: tuple[str, ...], fits: bool, w: int,
                pad: int) -> list:
        """A column's cells laid out at width ``w``; ``fits``: every cell is one plain line
        no wider than the column, so each is only justified."""
        inner, space = max(w - pad, 0), " " * pad
        if fits and w >= pad:
            if self.right[i]:
                return [s.rstrip().rjust(inner) + space for s in col]
            return [s.rstrip().ljust(inner) + space for s in col]
        out: list = []
        for s in col:
            if w >= pad and len(s) <= inner and _plain(s):
                s = s.rstrip()
                out.append((s.rjust(inner) if self.right[i] else s.ljust(inner)) + space)
            else:
                out.append(self._lines(i, s, w, pad))
        return out

    def _lines(self, i: int, text: str, w: int, pad: int) -> list[str]:
        """One cell of column ``i`` as lines exactly ``w`` cells wide."""
        inner = max(w - pad, 0)
        if inner < 1:
            parts = [""]  # no room at all: rich draws the cell empty
        elif "\n" not in text and "\t" not in text and _len(text) <= inner:
            parts = [text.rstrip()]
        else:
            parts = []
            for line in text.split("\n"):
                line = _expand_tabs(line)
                parts += [line] if not self.wrap[i] else _wrap(line, inner)
            parts = [_crop(p.rstrip(), inner, self.ellipsis[i]) for p in parts]
        space = " " * pad
        if self.right[i]:
            return [_fit(" " * (inner - _len(p)) + p + space, w) for p in parts]
        return [_fit(p + " " * (inner - _len(p)) + space, w) for p in parts]


def _join(lines: list[str], cells: list[list[str]], widths: list[int],
          bottom: bool = False) -> None:
    """A row whose cells may take several lines; ``bottom`` aligns them on the last line, as
    rich sets a wrapped header on the rule below it."""
    height = max(len(c) for c in cells)
    if bottom:
        cells = [[" " * widths[i]] * (height - len(c)) + c for i, c in enumerate(cells)]
    for k in range(height):
        lines.append(" " + " ".join(c[k] if k < len(c) else " " * widths[i]
                                    for i, c in enumerate(cells)) + " ")



def _expand_tabs(line: str, size: int = 8) -> str:
    """Tabs to spaces, to the next stop counted in cells (a wide character takes two)."""
    if "\t" not in line or _plain(line.replace("\t", "")):
        return line.expandtabs(size)
    out, position = [], 0
    for part in line.split("\t")[:-1]:
        position += _len(part) + 1
        spaces = (size - position % size) % size
        out.append(part + " " * (1 + spaces))
        position += spaces
    return "".join(out) + line.split("\t")[-1]


def _widest_line(text: str) -> int:
    if "\n" not in text and "\r" not in text:
        return _len(text)
    return max((_len(line) for line in text.splitlines()), default=0)


def _crop(text: str, width: int, ellipsis: bool) -> str:
    if _len(text) <= width:
        return text
    if ellipsis:
        return _fit(text, width - 1) + "\u2026"
    return _fit(text, width)


def _wrap(text: str, width: int) -> list[str]:
    """Word wrap as rich does: break between words, fold a word longer than a line."""
    breaks: list[int] = []
    offset = 0
    for m in _WORD.finditer(text):
        start, word = m.start(), m.group()
        length = _len(word.rstrip())
        if width - offset >= length:
            offset += _len(word)
        elif length > width:
            chunks = _chop(word, width)
            for j, chunk in enumerate(chunks):
                if start:
                    breaks.append(start)
                if j == len(chunks) - 1:
                    offset = _len(chunk)
                else:
                    start += len(chunk)
        elif offset and start:
            breaks.append(start)
            offset = _len(word)
    bounds = [0, *breaks, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _collapse(widths: list[int], wrapable: list[bool], max_width: int) -> list[int]:
    """Shrink the widest wrappable columns, level by level, until the table fits."""
    total = sum(widths)
    excess = total - max_width
    if not any(wrapable):
        return widths
    while total and excess > 0:
        widest = max(w for w, ok in zip(widths, wrapable) if ok)
        second = max(w if ok and w != widest else 0 for w, ok in zip(widths, wrapable))
        step = widest - second
        ratios = [1 if (w == widest and ok) else 0 for w, ok in zip(widths, wrapable)]
        if not any(ratios) or not step:
            break
        widths = _reduce(excess, ratios, [min(excess, step)] * len(widths), widths)
        total = sum(widths)
        excess = total - max_width
    return widths


def _reduce(total: int, ratios: list[int], maximums: list[int], values: list[int]) -> list[int]:
    """``values`` less ``total`` shared by ``ratios``, no slot giving more than its maximum."""
    ratios = [r if m else 0 for r, m in zip(ratios, maximums)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining = total
    out = []
    for ratio, maximum, value in zip(ratios, maximums, values):
        if ratio and total_ratio > 0:
            given = min(maximum, round(ratio * remaining / total_ratio))
            out.append(value - given)
            remaining -= given
            total_ratio -= ratio
        else:
            out.append(value)
    return out


def table(*columns: str, title: str | None = None, numeric: Iterable[str] = (),
          whole: Iterable[str] = ()) -> Table:
    """A table that stays readable at 80 columns: text columns wrap (``whole`` ones never),
    number columns are right aligned in one format and never wrap."""
    return Table(columns, title, set(numeric), set(whole))


def row(t: Table, *cells) -> None:
    """Add a row of literal text: stored names, texts and users are never markup."""
    texts = [cell(c) for c in cells]
    t.add_row(*(s if s.isprintable() else s.translate(_STRIP) for s in texts))


def cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, dt.datetime):
        return when(v)
    return str(v)


def when(v: dt.datetime | None) -> str:
    """A stored timestamp (UTC) with its zone: 2026-12-02 00:54:27Z."""
    if v is None:
        return ""
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC)
    return v.strftime("%Y-%m-%d %H:%M:%SZ")
