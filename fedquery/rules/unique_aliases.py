"""Give every source of a qualified query an alias no other scope uses.

SQL lets a subquery, a CTE or a derived table reuse an alias of an outer query
(``... ca.ca_state IN (SELECT ca.ca_state FROM customer_address AS ca ...)``): each name means
the source of its own scope. The rules after this one reason about one SELECT at a time and
find columns by alias, so an alias that means two sources makes them rename, narrow or push
the wrong columns. Resolving each column with sqlglot's ``Scope`` once, here, and renaming the
inner of two sources (``ca`` becomes ``ca_2``) lets every later rule treat an alias as naming
exactly one source. One reuse stays, the shape of a scan: ``(SELECT f.x FROM t AS f) AS f``,
where the derived table and the one table inside it go by the same name.

>>> from sqlglot import parse_one
>>> sql = "SELECT a.x FROM t AS a WHERE a.x IN (SELECT a.y FROM u AS a)"
>>> unique_aliases(parse_one(sql), catalog=None).sql()
'SELECT a.x FROM t AS a WHERE a.x IN (SELECT a_2.y FROM u AS a_2)'
"""

from __future__ import annotations

import itertools

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

from fedquery.rules._shape import RuleCatalog


def unique_aliases(expression: exp.Expr, *, catalog: RuleCatalog | None) -> exp.Expr:
    """Rename sources so that no alias is defined by two scopes of the statement."""
    root = build_scope(expression)
    if root is None:
        return expression
    scopes = list(reversed(list(root.traverse())))  # every scope before the scopes inside it
    renames: dict[tuple[int, str], str] = {}
    taken: set[str] = set()
    for scope in scopes:
        for name, node in scope.references:
            if not name or name == _own_alias(scope):
                continue  # (SELECT f.x FROM t AS f) AS f: the shape of a scan, one source
            if name.lower() in taken:
                renames[(id(scope), name)] = _fresh(name, taken)
                _rename_source(node, renames[(id(scope), name)])
            taken.add(renames.get((id(scope), name), name).lower())
    if renames:
        _rename_columns(scopes, renames)
    return expression


def _own_alias(scope: Scope) -> str | None:
    """The alias a derived table's scope goes by in the query around it."""
    parent = scope.expression.parent
    if scope.is_derived_table and isinstance(parent, exp.Subquery):
        return parent.alias or None
    return None


def _fresh(name: str, taken: set[str]) -> str:
    return next(f"{name}_{i}" for i in itertools.count(2) if f"{name}_{i}".lower() not in taken)


def _rename_source(node: exp.Expr, new: str) -> None:
    """Set the alias of a FROM/JOIN item (a table, a derived table, UNNEST, LATERAL)."""
    holder = node.parent if isinstance(node, exp.Query) and isinstance(node.parent, exp.Subquery) else node
    alias = holder.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        alias.set("this", exp.to_identifier(new))
    else:
        holder.set("alias", exp.TableAlias(this=exp.to_identifier(new)))


def _rename_columns(scopes: list[Scope], renames: dict[tuple[int, str], str]) -> None:
    """Point every column (and whole-row reference) at its source's new alias."""
    owner = {id(scope.expression): scope for scope in scopes}
    for scope in scopes:
        for node in scope.expression.find_all(exp.Column, exp.TableColumn):
            if _innermost(node, owner) is not scope:
                continue
            name = node.table if isinstance(node, exp.Column) else node.name
            defining = _defining_scope(scope, name)
            new = renames.get((id(defining), name)) if defining is not None else None
            if new is None:
                continue
            if isinstance(node, exp.Column):
                node.set("table", exp.to_identifier(new))
            else:
                node.set("this", exp.to_identifier(new))


def _innermost(node: exp.Expr, owner: dict[int, Scope]) -> Scope | None:
    """The scope whose own expression is the nearest enclosing scope expression."""
    parent = node.parent
    while parent is not None:
        scope = owner.get(id(parent))
        if scope is not None:
            return scope
        parent = parent.parent
    return None


def _defining_scope(scope: Scope | None, name: str) -> Scope | None:
    """The nearest scope, from ``scope`` outwards, that has a source named ``name``."""
    while scope is not None and name:
        if any(ref == name for ref, _ in scope.references):
            return scope
        scope = scope.parent
    return None
