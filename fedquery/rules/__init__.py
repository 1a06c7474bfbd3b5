"""Rewrite rules: small pure functions over bound, qualified sqlglot trees, applied in order.

Each rule lives in its own module named after its one public function and takes
``(expression, *, catalog)``; the order is the ``RULES`` tuple, as in sqlglot's optimizer.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from fedquery.rules._shape import RuleCatalog
from fedquery.rules.bind_blob_sources import bind_blob_sources
from fedquery.rules.bind_embedders import bind_embedders
from fedquery.rules.dynamic_filters import dynamic_filters
from fedquery.rules.isolate_tables import isolate_tables
from fedquery.rules.pushdown_joins import pushdown_joins
from fedquery.rules.pushdown_limit import pushdown_limit
from fedquery.rules.pushdown_predicates import pushdown_predicates
from fedquery.rules.pushdown_projections import pushdown_projections
from fedquery.rules.pushdown_vector_topk import pushdown_vector_topk
from fedquery.rules.unique_aliases import unique_aliases

Rule = Callable[..., exp.Expr]
RULES: tuple[Rule, ...] = (
    unique_aliases,
    bind_blob_sources,
    bind_embedders,
    isolate_tables,
    pushdown_predicates,
    pushdown_projections,
    pushdown_joins,
    pushdown_vector_topk,
    pushdown_limit,
    dynamic_filters,
)

__all__ = ["RULES", "RuleCatalog", "apply_rules", "bind_blob_sources", "bind_embedders", "dynamic_filters",
           "isolate_tables",
           "pushdown_joins", "pushdown_limit", "pushdown_predicates", "pushdown_projections",
           "pushdown_vector_topk", "unique_aliases"]


def apply_rules(expression: exp.Expr, *, catalog: RuleCatalog, rules=RULES) -> exp.Expr:
    """Run each rule in order over the tree."""
    for rule in rules:
        expression = rule(expression, catalog=catalog)
    return expression
