"""Point each ``embed_image``/``embed_text`` call at the executor function of its model.

``embed_image(f.image_uri, 'numpy-colorhist-64')`` becomes
``__fq_embed_image__numpy_colorhist_64_1(f.image_uri, 'camera')``: one function per registered
embedder (DuckDB functions have one return type, and each model has its own ``FLOAT[dim]``),
with the URIs' files source last as for the other blob functions. ``embed_text(t)`` becomes
``__fq_embed_text__<model>(t)``. The model must be a string literal naming a registered
embedder; without one, the default of its kind is used.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.errors import PlanError
from fedquery.functions.embedding import FUNCTION_KIND, REGISTRY, Embedder
from fedquery.rules._shape import RuleCatalog
from fedquery.rules.bind_blob_sources import blob_source


def bind_embedders(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Rename embedding calls to their model's executor function."""
    for call, embedder in embed_calls(expression):
        args = [call.expressions[0]]
        if embedder.kind == "image":
            source = blob_source(args[0], catalog)
            args.append(exp.Literal.string(source) if source else exp.null())
        call.replace(exp.Anonymous(this=embedder.function_name, expressions=args))
    return expression


def embed_calls(expression: exp.Expr) -> list[tuple[exp.Anonymous, Embedder]]:
    """Every embedding call in a query with the embedder it names."""
    found = []
    for call in list(expression.find_all(exp.Anonymous)):
        kind = FUNCTION_KIND.get(call.name.lower())
        if kind is not None:
            found.append((call, _embedder(call, kind)))
    return found


def describe_macros(calls: list[tuple[exp.Anonymous, Embedder]]) -> tuple[list[str], list[Embedder]]:
    """Temporary macros under the names users write, so DuckDB describes the user's own SQL
    (one argument calls the default model, two call the one model the query names), and the
    embedders they call."""
    macros, used = [], []
    for function, kind in FUNCTION_KIND.items():
        default = REGISTRY.get(kind) if any(e.kind == kind for _, e in calls) else None
        if default is None:
            continue
        named = {e.name: e for c, e in calls if e.kind == kind and len(c.expressions) == 2}
        if len(named) > 1:
            raise PlanError(f"{function} names models {', '.join(map(repr, sorted(named)))} in one "
                            "query; one query can use one named model per function")
        second = next(iter(named.values()), default)
        used += [default, second]
        extra = ", NULL" if kind == "image" else ""
        macros.append(f"CREATE OR REPLACE TEMP MACRO {function}(x) AS "
                      f"{default.function_name}(x{extra}), "
                      f"(x, model) AS {second.function_name}(x{extra})")
    return macros, used


def _embedder(call: exp.Anonymous, kind) -> Embedder:
    name = call.name.lower()
    args = call.expressions
    if not 1 <= len(args) <= 2:
        raise PlanError(f"{name} takes 1 or 2 arguments ({'uri' if kind == 'image' else 'text'} "
                        f"[, model]), not {len(args)}")
    if len(args) == 1:
        return REGISTRY.get(kind)
    model = args[1]
    if not (isinstance(model, exp.Literal) and model.is_string):
        raise PlanError(f"{name}: the model must be a string literal naming a registered "
                        f"embedder, not {model.sql('duckdb')}")
    return REGISTRY.get(kind, model.name)
