"""A clear error when an array distance compares vectors of two widths.

DuckDB says only ``array_cosine_distance: Array arguments must be of the same size``. The
usual cause is two embedders: an embedding column made by one model and ``embed_text(...)``
computed by another (the built-in trigram text embedder has 256 dimensions, the sample's
colour-histogram image vectors 64). ``mismatch`` finds the call, says each side's width and,
where it knows, the model behind it, and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from fedquery.errors import PlanError
from fedquery.functions.embedding import REGISTRY

DISTANCES = ("array_cosine_distance", "array_distance", "array_negative_inner_product",
             "array_inner_product", "array_cosine_similarity", "array_dot_product",
             "array_negative_dot_product")
EMBEDDERS = {"embed_text": "text", "embed_image": "image"}
DUCKDB_TEXT = "Array arguments must be of the same size"
_WIDTH = re.compile(r"\[(\d+)\]$")


def mismatch(tree: exp.Expr, column_type: Callable[[exp.Column], str | None]) -> str | None:
    """The message for the first distance call whose two sides have known, different widths."""
    for call in tree.find_all(exp.Anonymous):
        name = call.name.lower()
        if name not in DISTANCES or len(call.expressions) != 2:
            continue
        sides = [_side(arg, column_type) for arg in call.expressions]
        if all(sides) and sides[0][0] != sides[1][0]:
            (left, left_what), (right, right_what) = sides
            return (f"{name} compares vectors of {left} and {right} dimensions: "
                    f"{left_what} against {right_what}. Compare vectors made by the same "
                    "model: embed with the model that made the column (embed_text(text, "
                    "'<model>') / embed_image(uri, '<model>'), or register one with "
                    "fedquery.register_embedder), or store a column made by this one. "
                    f"Registered embedders: {_registered()}")
    return None


def explained(error: PlanError, tree: exp.Expr,
              column_type: Callable[[exp.Column], str | None]) -> PlanError:
    """``error`` itself, or a clearer one when it is DuckDB's width mismatch."""
    if DUCKDB_TEXT not in str(error):
        return error
    message = mismatch(tree, column_type)
    return PlanError(message) if message else error


def _side(arg: exp.Expr, column_type: Callable[[exp.Column], str | None]) -> tuple[int, str] | None:
    """(width, what it is) of one argument, when the query says it."""
    if isinstance(arg, exp.Column):
        width = _width(column_type(arg))
        return (width, f"column {arg.sql('duckdb')} (FLOAT[{width}])") if width else None
    if isinstance(arg, exp.Anonymous) and arg.name.lower() in EMBEDDERS:
        kind = EMBEDDERS[arg.name.lower()]
        model = arg.expressions[1] if len(arg.expressions) > 1 else None
        named = model.name if isinstance(model, exp.Literal) and model.is_string else None
        try:
            embedder = REGISTRY.get(kind, named)
        except PlanError:
            return None
        return embedder.dim, f"{arg.name.lower()} with model {embedder.name!r} ({embedder.dim} dims)"
    if isinstance(arg, exp.Cast):
        width = _width(arg.to.sql("duckdb"))
        return (width, f"a value of {width} dimensions") if width else None
    return None


def _registered() -> str:
    found = []
    for name, kind in sorted(REGISTRY.names().items()):
        try:
            found.append(f"{name} ({kind}, {REGISTRY.get(kind, name).dim} dims)")
        except PlanError:
            continue
    return ", ".join(found) or "none"


def _width(sql_type: str | None) -> int | None:
    found = _WIDTH.search(sql_type or "")
    return int(found.group(1)) if found else None
