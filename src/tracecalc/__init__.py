"""tracecalc: a finance formula recalculation engine.

The public facade is ``Engine``; errors derive from ``TracecalcError``.
"""

from tracecalc.errors import (
    ArityError,
    BusyError,
    CycleError,
    DatabaseError,
    DataError,
    DependentsError,
    FormulaError,
    FormulaSyntaxError,
    FrequencyError,
    InvalidNameError,
    LockLostError,
    NotFoundError,
    StaleWarning,
    TracecalcError,
    UnknownFunctionError,
    UnknownReferenceError,
    UsageError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ArityError", "BusyError", "CycleError", "DataError", "DatabaseError", "DependentsError",
    "Engine", "FormulaError", "FormulaSyntaxError", "FrequencyError", "InvalidNameError",
    "LockLostError", "NotFoundError", "StaleWarning", "TracecalcError", "UnknownFunctionError",
    "UnknownReferenceError", "UsageError", "ValidationError",
]


def __getattr__(name: str):
    # Engine pulls in pandas and SQLAlchemy; load it on first use so that
    # ``import tracecalc.graph`` stays light.
    if name == "Engine":
        from tracecalc.engine import Engine

        return Engine
    raise AttributeError(name)
