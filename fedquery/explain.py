"""``explain``: a plan in words, showing exactly what each source receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from fedquery.connectors._native import scan_sql, table_ref
from fedquery.connectors.base import SQLSource, TableRef
from fedquery.fetch import native_probe
from fedquery.parse import DIALECT, parse

if TYPE_CHECKING:
    from fedquery.execute import Execution, Session
    from fedquery.fetch import FragmentStats
    from fedquery.plan import DynamicFilter, Fragment, Plan


def render(plan: Plan, session: Session, execution: Execution | None = None) -> str:
    """The fragments, one block each, then the residual SQL run in DuckDB; with an
    ``execution`` (``explain(analyze=True)``), what each fragment and the residual moved."""
    stats = {s.name: s for s in execution.stats} if execution else {}
    lines = render_plan_lines(plan, session, stats)
    if execution is not None:
        lines.append(f"  analyze: {execution.residual_rows:,} rows, "
                     f"{execution.seconds * 1000:.1f} ms (every fragment fetched and counted)")
    lines.extend(f"note: {note}" for note in plan.notes)
    return session.secrets.redact("\n".join(lines))


def render_plan_lines(plan: Plan, session: Session, stats: dict | None = None) -> list[str]:
    """The fragments, one block each, then the residual SQL (with what each moved, if known)."""
    lines = [f"Plan: {len(plan.fragments)} fragment(s), residual in DuckDB"]
    for fragment in plan.fragments:
        lines.extend(_fragment_lines(fragment, session))
        if stats and fragment.name in stats:
            lines.append(f"  analyze: {_measured(stats[fragment.name])}")
    lines.append("residual (DuckDB):")
    lines.append(f"  {plan.residual}")
    return lines


def _measured(stat: FragmentStats) -> str:
    text = f"{stat.rows:,} rows, {stat.seconds * 1000:.1f} ms"
    if stat.bytes_read is not None:
        text += f", {stat.bytes_read:,} bytes read"
    if stat.key_filter:
        text += f"; keys sent: {stat.key_filter}"
    if stat.search:
        text += f"; search: {stat.search}"
    if stat.read:
        text += f"; read: {stat.read}"
    return text


def _fragment_lines(fragment: Fragment, session: Session) -> list[str]:
    connector = session.connectors[fragment.source]
    caps = connector.capabilities
    how = "streamed as Arrow"
    if fragment.inline:
        how = "scanned by DuckDB"
    elif native_probe(fragment):
        how = "scanned by DuckDB once its keys are known"
    elif fragment.materialize:
        how = "fetched first, whole"
    lines = [f"[{fragment.name}] {fragment.source} ({connector.kind}, {how}): {fragment.kind}"]
    if fragment.request is not None:
        request = fragment.request
        lines.append(f"  table:   {_local_name(request.table, caps.default_schema)}")
        lines.append(f"  columns: {', '.join(request.columns) or '(none: row count only)'}")
        lines.append(f"  filter:  {request.filter or '(none)'}")
        if request.order_by:
            lines.append(f"  order:   {', '.join(request.order_by)}")
        if request.limit is not None:
            ties = " (and rows tied with the last)" if request.with_ties else ""
            lines.append(f"  limit:   {request.limit}{ties}")
    if fragment.request is not None and fragment.request.vector is not None:
        planned_search = connector.describe_search(fragment.request)
        if planned_search:
            lines.append(f"  search:  {planned_search}")
    if fragment.vector_keys is not None:
        keys = fragment.vector_keys
        lines.append(f"  top-k:   nearest {fragment.request.limit} among rows whose "
                     f"{keys.column} is IN the keys of the rest of the join, run first:")
        for fragment_line in render_plan_lines(keys.plan, session):
            lines.append(f"    {fragment_line}")
    if fragment.key_filter is not None:
        lines.append(f"  keys:    {_key_filter(fragment.key_filter)}")
    for key in fragment.tables:
        source, schema, name = key.split(".", 2)
        detail = connector.describe(TableRef(schema, name))
        shown = {k: v for k, v in detail.items() if k not in ("kind", "relation") and v}
        if shown:
            lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    # the source renders exactly what it will receive, when it knows
    shown = connector.source_sql(fragment.request if fragment.kind == "scan" else fragment.sql) \
        if isinstance(connector, SQLSource) else None
    if shown is not None:
        text = shown
    elif fragment.request is not None and fragment.request.with_ties:
        request = fragment.request
        text = source_sql(scan_sql(fragment.source, request, table_ref(request.table)), DIALECT)
    else:
        text = source_sql(fragment.sql, caps.dialect or DIALECT)
    lines.append(f"  sql:     {text}")
    return lines


def _key_filter(planned: DynamicFilter) -> str:
    probe = "unknown" if planned.probe_rows is None else f"{planned.probe_rows:,}"
    return (f"{planned.column} takes the keys of {planned.build}.{planned.build_column} once it "
            f"has run (IN list up to {planned.in_list_max:,} keys, else a min/max range); "
            f"estimated {planned.build_rows:,} build rows, {probe} probe rows")


def source_sql(sql: str, dialect: str) -> str:
    """Fragment SQL with tables named as the source knows them (no source prefix)."""
    tree = parse(sql)
    for table in tree.find_all(exp.Table):
        if table.catalog:
            table.set("catalog", None)
            if table.db == "main" and dialect == DIALECT:
                table.set("db", None)
    return tree.sql(dialect)


def _local_name(key: str, default_schema: str) -> str:
    """``source.schema.table`` as the source names it: ``table`` in its default schema."""
    _, schema, name = key.split(".", 2)
    return name if schema == default_schema else f"{schema}.{name}"
