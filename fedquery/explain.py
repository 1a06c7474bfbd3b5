"""``explain``: a plan in words, showing exactly what each source receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from connectors.base import TableRef
from fedquery.parse import DIALECT, parse

if TYPE_CHECKING:
    from fedquery.execute import Session
    from fedquery.plan import Fragment, Plan


def render(plan: Plan, session: Session) -> str:
    """The fragments, one block each, then the residual SQL run in DuckDB."""
    lines = [f"Plan: {len(plan.fragments)} fragment(s), residual in DuckDB"]
    for fragment in plan.fragments:
        lines.extend(_fragment_lines(fragment, session))
    lines.append("residual (DuckDB):")
    lines.append(f"  {plan.residual}")
    lines.extend(f"note: {note}" for note in plan.notes)
    return session.secrets.redact("\n".join(lines))


def _fragment_lines(fragment: Fragment, session: Session) -> list[str]:
    connector = session.connectors[fragment.source]
    caps = connector.capabilities
    how = "scanned by DuckDB" if fragment.native else "streamed as Arrow"
    lines = [f"[{fragment.name}] {fragment.source} ({_kind(connector)}, {how}): {fragment.kind}"]
    if fragment.request is not None:
        request = fragment.request
        lines.append(f"  table:   {_local_name(request.table, caps.default_schema)}")
        lines.append(f"  columns: {', '.join(request.columns) or '(none: row count only)'}")
        lines.append(f"  filter:  {request.filter or '(none)'}")
        if request.limit is not None:
            lines.append(f"  limit:   {request.limit}")
    for key in fragment.tables:
        source, schema, name = key.split(".", 2)
        detail = connector.describe(TableRef(schema, name))
        shown = {k: v for k, v in detail.items() if k not in ("kind", "relation") and v}
        if shown:
            lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    lines.append(f"  sql:     {source_sql(fragment.sql, caps.dialect or DIALECT)}")
    return lines


def source_sql(sql: str, dialect: str) -> str:
    """Fragment SQL with tables named as the source knows them (no source prefix)."""
    tree = parse(sql)
    for table in tree.find_all(exp.Table):
        if table.catalog:
            table.set("catalog", None)
            if table.db == "main" and dialect == DIALECT:
                table.set("db", None)
    return tree.sql(dialect)


def _kind(connector) -> str:
    return getattr(connector, "kind", "custom")


def _local_name(key: str, default_schema: str) -> str:
    """``source.schema.table`` as the source names it: ``table`` in its default schema."""
    _, schema, name = key.split(".", 2)
    return name if schema == default_schema else f"{schema}.{name}"
