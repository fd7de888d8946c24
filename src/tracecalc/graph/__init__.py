"""The graph toolkit, pure Python: a generic dependency graph and a thread-safe scheduler.

It knows nothing of formulas, databases, pandas or SQLAlchemy (a test holds that).
``tracecalc.storage.trace`` keeps such graphs in database tables.
"""

from tracecalc.graph.core import Graph
from tracecalc.graph.scheduler import Plan, Scheduler, generations, plan, static_order

__all__ = ["Graph", "Plan", "Scheduler", "generations", "plan", "static_order"]
