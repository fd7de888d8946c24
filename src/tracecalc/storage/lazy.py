"""pandas on first use: the commands that never read a file or build a frame (set, check,
status, recalc) start without importing it (about 0.3-0.4 s of a CLI command's start)."""

from __future__ import annotations

import importlib


class _OnFirstUse:
    def __init__(self, module: str):
        self._module = module

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(self._module), name)


pandas = _OnFirstUse("pandas")
