"""Values computed for catalog columns."""

from __future__ import annotations

import datetime as dt
import hashlib


def now() -> dt.datetime:
    """The time as stored: UTC without a zone, to the second."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def canonical_key(canonical: str) -> str:
    """An indexable digest of a canonical form (the form itself is unbounded text)."""
    return hashlib.sha1(canonical.encode()).hexdigest()
