"""Point each ``embed_image``/``embed_text`` call at the executor function of its model.

``embed_image(f.image_uri, 'numpy-colorhist-64')`` becomes
``__fq_embed_image__numpy_colorhist_64_1(f.image_uri, 'camera')``: one function per registered
embedder (DuckDB functions have one return type, and each model has its own ``FLOAT[dim]``),
with the URIs' files source last as for the other blob functions. ``embed_text(t)`` becomes
``__fq_embed_text__<model>(t)``. The model must be a string literal naming a registered
embedder; without one, the default of its kind is used. Each call's embedder is resolved once
per plan (``embed_calls``) and kept on the call.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.errors import PlanError
from fedquery.functions.embedding import FUNCTION_KIND, REGISTRY, Embedder
from fedquery.parse import DIALECT
from fedquery.rules._shape import RuleCatalog
from fedquery.rules.bind_blob_sources import blob_source, run_argument

EMBEDDER = "embedder"  # meta key: the embedder a call was resolved to, once per plan


def bind_embedders(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Rename embedding calls to their model's executor function."""
    for call, embedder in embed_calls(expression):
        args = [call.expressions[0]]
        if embedder.kind == "image":
            source = blob_source(args[0], catalog)
            args.append(exp.Literal.string(source) if source else exp.null())
        call.replace(exp.Anonymous(this=embedder.function_name, expressions=[*args, run_argument()]))
    return expression


def embed_calls(expression: exp.Expr) -> list[tuple[exp.Anonymous, Embedder]]:
    """Every embedding call in a query with the embedder it names, resolved once: the
    embedder is kept in the call's meta, so a registration in between cannot change it."""
    found, resolved = [], {}
    for call in list(expression.find_all(exp.Anonymous)):
        kind = FUNCTION_KIND.get(call.name.lower())
        if kind is None:
            continue
        if EMBEDDER not in call.meta:
            call.meta[EMBEDDER] = _embedder(call, kind, resolved)
        found.append((call, call.meta[EMBEDDER]))
    return found


def describe_sql(sql: str, tree: exp.Expr) -> tuple[str, list[str], list[Embedder]]:
    """What DuckDB describes for a query with embedding calls: the SQL, temporary macros under
    the names users write, and the embedders they call.

    One argument calls the default model and two the model the query names, so the user's own
    text is described. When one function names two models, the calls of the others are renamed
    to macros of their own in a copy of ``tree``, and the unaliased outputs holding them keep
    the names DuckDB gives the original expressions."""
    calls = embed_calls(tree)
    macros, used, renamed = [], [], {}
    for function, kind in FUNCTION_KIND.items():
        mine = [(c, e) for c, e in calls if e.kind == kind]
        if not mine:
            continue
        default = next((e for c, e in mine if len(c.expressions) == 1), None) or REGISTRY.get(kind)
        named = list({e.serial: e for c, e in mine if len(c.expressions) == 2}.values())
        first = named[0] if named else default
        used += [default, *named]
        macros.append(_macro(function, kind, default, first))
        for number, other in enumerate(named[1:], 2):
            macros.append(_macro(f"{function}__{number}", kind, None, other))
            renamed[other.serial] = f"{function}__{number}"
    if not renamed:
        return sql, macros, used
    return _renamed(tree, renamed), macros, used


def _macro(name: str, kind: str, one: Embedder | None, two: Embedder) -> str:
    extra = ", NULL, NULL" if kind == "image" else ", NULL"  # (source,) run
    overloads = [f"(x) AS {one.function_name}(x{extra})"] if one else []
    overloads.append(f"(x, model) AS {two.function_name}(x{extra})")
    return f"CREATE OR REPLACE TEMP MACRO {name}" + ", ".join(overloads)


def _renamed(tree: exp.Expr, renamed: dict[int, str]) -> str:
    copy = tree.copy()
    select = copy
    while isinstance(select, exp.SetOperation):
        select = select.this
    if isinstance(select, exp.Select):
        for projection in select.expressions:
            if not isinstance(projection, exp.Alias) and _has_renamed(projection, renamed):
                name = projection.sql(DIALECT, normalize_functions="lower")
                projection.replace(exp.alias_(projection.copy(), exp.to_identifier(name, quoted=True)))
    for call, embedder in embed_calls(copy):
        if embedder.serial in renamed and len(call.expressions) == 2:
            call.set("this", renamed[embedder.serial])
    return copy.sql(DIALECT)


def _has_renamed(node: exp.Expr, renamed: dict[int, str]) -> bool:
    return any(e.serial in renamed and len(c.expressions) == 2 for c, e in embed_calls(node))


def _embedder(call: exp.Anonymous, kind, resolved: dict) -> Embedder:
    name = call.name.lower()
    args = call.expressions
    if not 1 <= len(args) <= 2:
        raise PlanError(f"{name} takes 1 or 2 arguments ({'uri' if kind == 'image' else 'text'} "
                        f"[, model]), not {len(args)}")
    model = args[1] if len(args) == 2 else None
    if model is not None and not (isinstance(model, exp.Literal) and model.is_string):
        raise PlanError(f"{name}: the model must be a string literal naming a registered "
                        f"embedder, not {model.sql(DIALECT)}")
    key = (kind, model.name if model is not None else None)
    if key not in resolved:
        resolved[key] = REGISTRY.get(*key)
    return resolved[key]
