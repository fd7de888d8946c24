"""Storage: the schema, the catalog and the bulk paths (the only layer that speaks SQL)."""

from tracecalc.storage.store import DEFAULT_URL, Store, normalise_url

__all__ = ["DEFAULT_URL", "Store", "normalise_url"]
