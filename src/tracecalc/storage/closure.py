"""The closure of a link table in one recursive query (the stored graph toolkit and the
catalog's scoped reads share it)."""

from __future__ import annotations

import functools

from sqlalchemy import bindparam, text


@functools.lru_cache(maxsize=64)
def closure_sql(table: str, upstream: bool):
    """The links reachable from ``:start`` (node ids), one direction: a recursive query,
    written once per table (building it with the expression language costs more than
    running it on small closures). Table and column names are the models', never input."""
    src, dst = ("node_id", "depends_on_id") if upstream else ("depends_on_id", "node_id")
    return text(
        f"WITH RECURSIVE reach(id) AS ("
        f" SELECT {dst} FROM {table} WHERE {src} IN :start"
        f" UNION SELECT l.{dst} FROM {table} l JOIN reach r ON l.{src} = r.id) "
        f"SELECT node_id, depends_on_id FROM {table} WHERE {src} IN :start "
        f"UNION SELECT l.node_id, l.depends_on_id FROM {table} l JOIN reach r "
        f"ON l.{src} = r.id").bindparams(bindparam("start", expanding=True))
