"""A clear error when an array distance compares vectors of two widths, or of two models.

DuckDB says only ``array_cosine_distance: Array arguments must be of the same size``. The
usual cause is two embedders: an embedding column made by one model and ``embed_text(...)``
computed by another (the built-in trigram text embedder has 256 dimensions, the sample's
colour-histogram image vectors 64, a small CLIP model's 512). ``mismatch`` finds the call, says
each side's width and, where it knows, the model behind it, and what to do: which registered
models embed in the column's width, and whether the other side's model is a joint text-image
one whose image vectors a column could hold. ``check_models`` refuses, before anything runs, a
distance between two embedding calls of different models, which DuckDB would compute when their
widths agree: the vectors of two models lie in two spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from fedquery.errors import PlanError
from fedquery.functions.embedding import REGISTRY, Embedder
from fedquery.rules.bind_embedders import EMBEDDER

DISTANCES = ("array_cosine_distance", "array_distance", "array_negative_inner_product",
             "array_inner_product", "array_cosine_similarity", "array_dot_product",
             "array_negative_dot_product")
EMBEDDERS = {"embed_text": "text", "embed_image": "image"}
DUCKDB_TEXT = "Array arguments must be of the same size"
_WIDTH = re.compile(r"\[(\d+)\]$")


def mismatch(tree: exp.Expr, column_type: Callable[[exp.Column], str | None]) -> str | None:
    """The message for the first distance call whose two sides have known, different widths."""
    for call in _distance_calls(tree):
        sides = [_side(arg, column_type) for arg in call.expressions]
        if all(sides) and sides[0][0] != sides[1][0]:
            (left, left_what, _), (right, right_what, _) = sides
            return (f"{call.name.lower()} compares vectors of {left} and {right} dimensions: "
                    f"{left_what} against {right_what}. Compare vectors made by the same "
                    "model: embed with the model that made the column (embed_text(text, "
                    "'<model>') / embed_image(uri, '<model>'), or register one with "
                    "fedquery.register_embedder or fedquery.register_clip), or store a column "
                    f"made by this one.{_advice(sides)} Registered embedders: {_registered()}")
    return None


def check_models(tree: exp.Expr) -> None:
    """``PlanError`` for a distance between embedding calls of two different models."""
    for call in _distance_calls(tree):
        sides = [_side(arg, lambda column: None) for arg in call.expressions]
        if not all(sides) or sides[0][2] is None or sides[1][2] is None:
            continue
        (left, left_what, one), (right, right_what, other) = sides
        if one.name != other.name:
            raise PlanError(f"{call.name.lower()} compares vectors of two models: {left_what} "
                            f"against {right_what}. Each model embeds into a space of its own, "
                            "so the distance means nothing even at equal widths: embed both sides "
                            "with one model (a joint text-image model, such as a CLIP model "
                            "registered with fedquery.register_clip, embeds images and texts "
                            "into one space)")


def _distance_calls(tree: exp.Expr) -> list[exp.Anonymous]:
    return [call for call in tree.find_all(exp.Anonymous)
            if call.name.lower() in DISTANCES and len(call.expressions) == 2]


def _advice(sides: list[tuple[int, str, Embedder | None]]) -> str:
    """For a column against an embedding call: the registered models of the column's width,
    and what a joint text-image model on the other side offers."""
    out = []
    for (width, what, embedder), (_, _, other) in (sides, sides[::-1]):
        if embedder is not None or other is None or not what.startswith("column"):
            continue
        fits = [e for e in REGISTRY.embedders() if e.dim == width]
        same = [e.name for e in fits if e.kind == other.kind]
        if same:
            out.append(f" {other.kind.capitalize()} embedders of {width} dimensions: "
                       f"{', '.join(map(repr, same))}; if one made the column (or embeds into its "
                       f"space), use it: embed_{other.kind}(..., {same[0]!r}).")
        elif fits:
            out.append(f" Registered models of {width} dimensions: "
                       f"{', '.join(f'{e.name!r} ({e.kind})' for e in fits)}; none embeds "
                       f"{other.kind}s, so no {other.kind} can be compared with such a column: a "
                       "joint text-image model (fedquery.register_clip) embeds both.")
        if {e.kind for e in REGISTRY.embedders() if e.name == other.name} == set(EMBEDDERS.values()):
            out.append(f" {other.name!r} is a joint text-image model: it embeds images and texts "
                       f"into one space, so a column made with embed_image(uri, {other.name!r}) can "
                       f"be searched with embed_text(text, {other.name!r}) and the other way round.")
    return "".join(out)


def explained(error: PlanError, tree: exp.Expr,
              column_type: Callable[[exp.Column], str | None]) -> PlanError:
    """``error`` itself, or a clearer one when it is DuckDB's width mismatch."""
    if DUCKDB_TEXT not in str(error):
        return error
    message = mismatch(tree, column_type)
    return PlanError(message) if message else error


def _side(arg: exp.Expr, column_type: Callable[[exp.Column], str | None]
          ) -> tuple[int, str, Embedder | None] | None:
    """(width, what it is, the embedder that makes it) of one argument, when the query says."""
    if isinstance(arg, exp.Column):
        width = _width(column_type(arg))
        return (width, f"column {arg.sql('duckdb')} (FLOAT[{width}])", None) if width else None
    if isinstance(arg, exp.Anonymous) and arg.name.lower() in EMBEDDERS:
        kind = EMBEDDERS[arg.name.lower()]
        model = arg.expressions[1] if len(arg.expressions) > 1 else None
        named = model.name if isinstance(model, exp.Literal) and model.is_string else None
        if model is not None and named is None:
            return None
        embedder = arg.meta.get(EMBEDDER)  # resolved once per plan (bind_embedders)
        if embedder is None:
            try:
                embedder = REGISTRY.get(kind, named)
            except PlanError:
                return None
        return (embedder.dim, f"{arg.name.lower()} with model {embedder.name!r} ({embedder.dim} dims)",
                embedder)
    if isinstance(arg, exp.Cast):
        width = _width(arg.to.sql("duckdb"))
        return (width, f"a value of {width} dimensions", None) if width else None
    return None


def _registered() -> str:
    found: dict[str, list] = {}
    for embedder in REGISTRY.embedders():
        found.setdefault(embedder.name, []).append(embedder)
    return ", ".join(f"{name} ({' and '.join(e.kind for e in es)}, {es[0].dim} dims)"
                     for name, es in found.items()) or "none"


def _width(sql_type: str | None) -> int | None:
    found = _WIDTH.search(sql_type or "")
    return int(found.group(1)) if found else None
