"""Formula text -> checked expression tree, its references, and a canonical form.

The text goes through Python's ``ast`` parser only; the resulting tree is walked with a
whitelist and converted into our own frozen nodes (``nodes``, ``convert``); ``canonical``
gives the sympy normal form used for analysis only.

The parser knows the function signatures (``model.SIGNATURES``) but nothing of the graph,
the database or the kernels.
"""

from tracecalc.parser.canonical import canonical_form, to_text
from tracecalc.parser.convert import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_LITERAL,
    MAX_NODES,
    MAX_POWER,
    normalise,
    parse,
)
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
    attributes,
    references,
    walk,
)

__all__ = [
    "ARITHMETIC", "BOOLEAN", "COMPARISON", "MAX_DEPTH", "MAX_LENGTH", "MAX_LITERAL",
    "MAX_NODES", "MAX_POWER", "Binary", "Call", "Node", "Num", "ParsedFormula", "Ref",
    "Unary", "attributes", "canonical_form", "normalise", "parse", "references", "to_text", "walk",
]
