"""Move filters that read one table only into that table's scan.

From WHERE and from inner-join ON conditions, a conjunct that reads one scanned table, has no
subquery and is deterministic moves into the scan, unless that table is on the NULL-supplying
side of an outer join, its source takes no filters (``Capabilities.predicates``), is the right
side of an ASOF join (a filter there changes which row is
nearest) or is in a POSITIONAL join (a filter there shifts the positions); a LEFT or ANTI JOIN's
ON conjuncts on its right table move into the right scan. A scan that has a LIMIT takes no
filter: filtering before the limit is not filtering after it.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.rules._shape import (
    RuleCatalog,
    conjoin,
    conjuncts,
    is_deterministic,
    null_supplying,
    portable,
    referenced_tables,
    scan_table,
    source_of,
)


def pushdown_predicates(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Push single-table conjuncts of every SELECT into the scans they read."""
    for select in list(expression.find_all(exp.Select)):
        scans = _scans(select)
        if scans:
            scans = {alias: (scan, catalog.capabilities(source_of(scan.args["from_"].this)))
                     for alias, scan in scans.items()}
            nullable, sensitive = null_supplying(select), _order_sensitive(select)
            _push_where(select, scans, nullable | sensitive)
            _push_join_conditions(select, scans, nullable, sensitive)
    return expression


def _scans(select: exp.Select) -> dict[str, exp.Select]:
    """Scan-shaped derived tables of one SELECT, by alias."""
    sources = [select.args.get("from_")] + list(select.args.get("joins") or [])
    scans = {}
    for item in filter(None, sources):
        if scan_table(item.this) is not None and not item.this.this.args.get("limit"):
            scans[item.this.alias] = item.this.this
    return scans


def _order_sensitive(select: exp.Select) -> set[str]:
    """Aliases whose rows decide which rows of another table they pair with: ASOF, POSITIONAL."""
    seen = [select.args["from_"].this.alias_or_name]
    sensitive: set[str] = set()
    for join in select.args.get("joins") or []:
        alias = join.this.alias_or_name
        if join.method == "POSITIONAL":
            sensitive.update(seen)
        if join.method in ("ASOF", "POSITIONAL"):
            sensitive.add(alias)
        seen.append(alias)
    return sensitive


def _pushable_to(condition: exp.Expr, scans: dict, blocked: set[str]) -> str | None:
    """The one scan a condition can move into: it reads that scan only, gives the same rows
    every time, and the scan's source can evaluate it."""
    tables = referenced_tables(condition)
    if not tables or len(tables) != 1 or not is_deterministic(condition):
        return None
    alias = next(iter(tables))
    if alias not in scans or alias in blocked or not scans[alias][1].predicates \
            or not portable(condition, scans[alias][1]):
        return None
    return alias


def _push_where(select: exp.Select, scans: dict, blocked: set[str]) -> None:
    kept = []
    for condition in conjuncts(select.args.get("where") and select.args["where"].this):
        alias = _pushable_to(condition, scans, blocked)
        if alias is None:
            kept.append(condition)
        else:
            scans[alias][0].where(condition.copy(), copy=False)
    select.set("where", exp.Where(this=conjoin(kept)) if kept else None)


def _push_join_conditions(select: exp.Select, scans: dict, nullable: set[str],
                          sensitive: set[str]) -> None:
    for join in select.args.get("joins") or []:
        if join.side in ("RIGHT", "FULL") or join.method or not join.args.get("on"):
            continue
        right = join.this.alias_or_name
        keeps_left_rows = join.side == "LEFT" or join.kind == "ANTI"
        blocked = (nullable - {right} if keeps_left_rows else nullable) | sensitive
        kept = []
        for condition in conjuncts(join.args["on"]):
            alias = _pushable_to(condition, scans, blocked)
            if alias is None or (keeps_left_rows and alias != right):
                kept.append(condition)
            else:
                scans[alias][0].where(condition.copy(), copy=False)
        join.set("on", conjoin(kept) if kept else exp.true())
