"""Which files ``con.profile`` measures: a source resolved to one query over URIs and groups.

``source`` is a ``files`` source (its listing), a table, or a SELECT (any query fedquery runs,
so ``by`` may be a column reached through joins: ``weather`` of ``drives`` for frames). The
URI column is ``column``, else the one output column bound to a files source (``blobs:`` in the
catalog, followed through the query by the planner). A ``sample`` (a count or a fraction) is
chosen in SQL: each distinct URI gets the rank of ``md5(seed || uri)`` and the first ones are
kept, so the same files come back every run and the URI column is never fetched whole first:

    SELECT uri, by_0 FROM (
      SELECT uri, by_0, dense_rank() OVER (ORDER BY md5('0:' || coalesce(uri, ''))) AS rank_
      FROM (SELECT "image_uri" AS uri, "weather" AS by_0 FROM (<the SELECT>) AS profiled))
    WHERE rank_ <= 100 ORDER BY rank_
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from fedquery.errors import PlanError
from fedquery.parse import DIALECT

if TYPE_CHECKING:
    from fedquery.connection import Connection

SAMPLE_SEED = "0"
_VECTOR_TYPE = re.compile(r"(FLOAT|DOUBLE)\[\d+\]", re.I)
_LISTING = "listing"  # the name a files source's listing has in the private DuckDB


@dataclass(frozen=True)
class Selection:
    """A resolved profile source: the user's query (or the listing's), its URI column, its
    ``by`` columns as the query names them, the files source of the URIs, and the one
    fixed-size float array column of its output (for the embedding map), if there is one."""

    source: str
    query: exp.Query
    column: str
    by: tuple[str, ...]
    files_source: str | None
    embedding: str | None = None
    listing: pa.Table | None = None  # a files source's listing, queried in a private DuckDB

    @property
    def shown_column(self) -> str | None:
        """The URI column as ``Profile.column`` shows it (None for a files source)."""
        return None if self.listing is not None else self.column


def resolve(con: Connection, source: str, column: str | None,
            by: str | list[str] | tuple[str, ...] | None) -> Selection:
    """The query, URI column, groups and files source ``con.profile`` measures (``PlanError``
    naming the candidates for a column or group that is not there)."""
    names = _by_names(by)
    spec = con.catalog.sources.get(source)
    if spec is not None and spec.kind == "files":
        return _listed(con, source, column, names)
    tree = _query(source)
    if tree is None:
        con.schema(source)  # an unknown table: PlanError with a suggestion
        table = (exp.table_(exp.to_identifier(source, quoted=True)) if source in con.catalog.tables
                 else exp.to_table(source, dialect=DIALECT))  # a declared "a.b" is one name
        tree = exp.select("*").from_(table)
        what = f"table {source!r}"
    else:
        what = "the query's output"
    plan = con._sql(tree.sql(DIALECT), None)._plan
    columns = list(plan.columns)
    blob_columns = dict(plan.blob_columns)
    column = _uri_column(column, columns, blob_columns, what)
    found = tuple(_named(name, columns, what) for name in names)
    vectors = [n for n, t in zip(columns, plan.types, strict=True) if _VECTOR_TYPE.fullmatch(t)]
    return Selection(source, tree, column, found, blob_columns.get(column),
                     vectors[0] if len(vectors) == 1 else None)


def rows(con: Connection, selection: Selection, sample: int | float | None) -> pa.Table:
    """``uri`` and each ``by`` column (named ``by_0``, ``by_1``, ...): a row for each row of
    the source, or of the sampled files (in their seeded order)."""
    projections = [exp.alias_(_column(selection.column), "uri")]
    projections += [exp.alias_(_column(name), f"by_{i}") for i, name in enumerate(selection.by)]
    query = exp.select(*projections).from_(selection.query.subquery("profiled", copy=True))
    if sample is not None:
        query = _sampled(query, sample)
    return _run(con, selection, query)


def rows_of(con: Connection, selection: Selection, uris: list[str], value: str) -> pa.Table:
    """``uri`` and the ``value`` column of the source's rows whose URI is one of ``uris``."""
    if not uris:
        return pa.table({"uri": pa.array([], pa.string()), "value": pa.array([])})
    wanted = exp.In(this=_column(selection.column),
                    expressions=[exp.Literal.string(u) for u in uris])
    query = (exp.select(exp.alias_(_column(selection.column), "uri"),
                        exp.alias_(_column(value), "value"))
             .from_(selection.query.subquery("profiled", copy=True)).where(wanted))
    return _run(con, selection, query)


def check_sample(sample: Any) -> None:
    """``PlanError`` unless ``sample`` is None, a positive count or a fraction in (0, 1]."""
    if sample is None:
        return
    if isinstance(sample, bool) or not isinstance(sample, int | float):
        raise PlanError(f"profile: sample must be a count or a fraction, not {sample!r}")
    if isinstance(sample, int) and sample > 0:
        return
    if isinstance(sample, float) and math.isfinite(sample) and 0 < sample <= 1:
        return
    raise PlanError(f"profile: sample must be a positive count or a fraction in (0, 1], "
                    f"not {sample!r}")


# ---------------------------------------------------------------- resolving


def _by_names(by: Any) -> list[str]:
    names = [] if by is None else [by] if isinstance(by, str) else list(by)
    if not all(isinstance(n, str) for n in names):
        raise PlanError(f"profile: by must be a column name or a list of them, got {by!r}")
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise PlanError(f"profile: by names column {doubled[0]!r} twice")
    return names


def _query(source: str) -> exp.Query | None:
    """The SELECT ``source`` is, or None when it is a name."""
    try:
        tree = sqlglot.parse_one(source, read=DIALECT)
    except sqlglot.errors.SqlglotError:
        return None
    return tree if isinstance(tree, exp.Query) else None


def _listed(con: Connection, source: str, column: str | None, names: list[str]) -> Selection:
    """A files source: its listing (``uri``, ``size``, ``modified``, ``extension``)."""
    listing = con._session.connectors[source].listing()
    what = f"the listing of {source!r}"
    if column not in (None, "uri"):
        raise PlanError(f"profile: files source {source!r} lists its files in column 'uri', "
                        f"not {column!r}")
    found = tuple(_named(name, listing.column_names, what) for name in names)
    return Selection(source, exp.select("*").from_(_LISTING), "uri", found, source,
                     listing=listing)


def _uri_column(column: str | None, columns: list[str], blob_columns: dict[str, str],
                what: str) -> str:
    """The column of URIs: ``column``, else the only blob column of the output."""
    if column is not None:
        return _named(column, columns, what)
    if len(blob_columns) == 1:
        return next(iter(blob_columns))
    if blob_columns:
        raise PlanError(f"profile: {what} has several blob columns ({', '.join(blob_columns)}); "
                        "name the one to profile with column=...")
    raise PlanError(f"profile: {what} has no blob column (one declared under blobs: in the "
                    f"catalog); name the column of URIs with column=... "
                    f"(columns: {', '.join(columns)})")


def _named(name: str, columns: list[str], what: str) -> str:
    """``name`` as the output spells it (DuckDB compares names case-insensitively)."""
    exact = [c for c in columns if c == name] or [c for c in columns if c.lower() == name.lower()]
    if exact:
        return exact[0]
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise PlanError(f"profile: {what} has no column {name!r} ({hint}columns: {', '.join(columns)})")


# ---------------------------------------------------------------- SQL


def _column(name: str, table: str | None = "profiled") -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True),
                      table=exp.to_identifier(table) if table else None)


def _sampled(query: exp.Select, sample: int | float) -> exp.Select:
    """The rows of the files whose seeded rank is within ``sample`` (a count, or a fraction of
    the distinct URIs, at least one), in rank order."""
    names = [p.alias for p in query.expressions]
    key = exp.MD5(this=exp.DPipe(this=exp.Literal.string(SAMPLE_SEED + ":"),
                                 expression=exp.Coalesce(this=exp.column("uri"),
                                                         expressions=[exp.Literal.string("")])))
    rank = exp.Window(this=exp.Anonymous(this="dense_rank"),
                      order=exp.Order(expressions=[exp.Ordered(this=key)]))
    ranked = exp.select(*names, exp.alias_(rank, "rank_")).from_(query.subquery("chosen"))
    if isinstance(sample, int):
        limit: exp.Expr = exp.Literal.number(sample)
    else:
        files = exp.Window(this=exp.Max(this=exp.column("rank_")))
        ranked = exp.select("*", exp.alias_(files, "files_")).from_(ranked.subquery("ranked"))
        limit = exp.Greatest(this=exp.Literal.number(1), expressions=[exp.Round(
            this=exp.Mul(this=exp.column("files_"), expression=exp.Literal.number(repr(sample))))])
    return (exp.select(*names).from_(ranked.subquery("sampled"))
            .where(exp.LTE(this=exp.column("rank_"), expression=limit)).order_by("rank_"))


def _run(con: Connection, selection: Selection, query: exp.Select) -> pa.Table:
    """The query's rows: through the connection, or over a files source's listing in a
    private DuckDB."""
    if selection.listing is None:
        return con._sql(query.sql(DIALECT), None).arrow()
    private = duckdb.connect()
    try:
        private.register(_LISTING, selection.listing)
        return private.sql(query.sql(DIALECT)).to_arrow_table()
    finally:
        private.close()
