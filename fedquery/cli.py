"""The ``fedquery`` command: sql, explain, tables, profile, index, demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from fedquery.boundary import boundary
from fedquery.errors import FedQueryError
from fedquery.pyvalues import python_rows

FORMATS = ("table", "csv", "json", "parquet")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code: 0, 1 for an error (printed
    as one line, secrets masked, never a traceback), 130 when interrupted."""
    args = _parser().parse_args(argv)
    try:
        with boundary():
            return args.run(args)
    except KeyboardInterrupt:  # Ctrl-C, also while a query ran (a QueryCancelled too)
        print("interrupted", file=sys.stderr)
        return 130
    except FedQueryError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _connect(catalog: str):
    """A connection; what the command's own code raises is masked with its secrets too."""
    import fedquery

    with fedquery.connect(catalog) as con, boundary(con.catalog.secrets):
        yield con


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedquery", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    sql = commands.add_parser("sql", help="run a query and print or write its rows")
    sql.add_argument("catalog")
    sql.add_argument("query")
    sql.add_argument("--format", choices=FORMATS, default="table")
    sql.add_argument("--output", help="write to this file instead of standard output")
    sql.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    sql.set_defaults(run=_sql)
    explain = commands.add_parser("explain", help="show what each source receives")
    explain.add_argument("catalog")
    explain.add_argument("query")
    explain.add_argument("--analyze", action="store_true")
    explain.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    explain.set_defaults(run=_explain)
    tables = commands.add_parser("tables", help="list the tables SQL sees")
    tables.add_argument("catalog")
    tables.set_defaults(run=_tables)
    profile = commands.add_parser("profile", help="measure the files a source or query points at")
    profile.add_argument("catalog")
    profile.add_argument("source", help="a files source, a table with a blob column, or a SELECT")
    profile.add_argument("--column", help="the column of URIs (default: the one blob column)")
    profile.add_argument("--by", action="append", default=[], metavar="COLUMN",
                         help="group by this output column (repeat, or a comma list, for several)")
    profile.add_argument("--sample", type=_sample_size, help="measure N files, or a fraction in (0, 1]")
    profile.add_argument("--html", help="also write the profile as an HTML page")
    profile.set_defaults(run=_profile)
    index = commands.add_parser("index", help="build a LanceDB ANN index on a vector column "
                                "(writes the index only, never data)")
    index.add_argument("catalog")
    index.add_argument("table", help="a catalog table of a lancedb source")
    index.add_argument("--column", help="the vector column (default: the table's one vector column)")
    index.add_argument("--kind", default="IVF_PQ", metavar="KIND",
                       help="IVF_PQ (default), IVF_HNSW_SQ, IVF_HNSW_PQ, IVF_HNSW_FLAT, IVF_FLAT, "
                            "IVF_SQ or IVF_RQ")
    index.add_argument("--metric", default="cosine", metavar="METRIC",
                       help="cosine (default), l2 or dot: the distance the queries use; an index "
                            "answers only its own")
    index.add_argument("--partitions", type=int, metavar="N",
                       help="IVF partitions (default: sqrt(rows), at most 4096 and rows/256)")
    index.add_argument("--sub-vectors", type=int, metavar="N",
                       help="PQ sub-vectors, a divisor of the dimension (default: dimension/4)")
    index.add_argument("--replace", action="store_true", help="rebuild an index the column has")
    index.set_defaults(run=_index)
    demo = commands.add_parser("demo", help="build the sample drive data set and run a showcase")
    demo.add_argument("--dir", help="where to build the sample data (default: a cache folder)")
    demo.set_defaults(run=_demo)
    return parser


def _params(pairs: list[str]) -> dict[str, object] | None:
    """``NAME=VALUE`` pairs; values that parse as numbers become numbers."""
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        params[name.lstrip("$")] = _number_or_text(value)
    return params or None


def _number_or_text(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _sql(args: argparse.Namespace) -> int:
    with _connect(args.catalog) as con:
        table = con.sql(args.query, params=_params(args.param)).arrow()
        try:
            _write(table, args.format, args.output)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


def _explain(args: argparse.Namespace) -> int:
    with _connect(args.catalog) as con:
        print(con.explain(args.query, analyze=args.analyze, params=_params(args.param)))
    return 0


def _tables(args: argparse.Namespace) -> int:
    """One name a line; a table with vector indices also shows them: ``IVF_PQ(vec, cosine)``."""
    from fedquery.vector_index import label

    with _connect(args.catalog) as con:
        names, indices = con.tables(), con.indices()
    width = max((len(n) for n in indices), default=0)
    for name in names:
        shown = ", ".join(label(i) for i in indices.get(name, ()))
        print(f"{name.ljust(width)}  {shown}" if shown else name)
    return 0


def _index(args: argparse.Namespace) -> int:
    from fedquery.catalog import load_catalog
    from fedquery.vector_index import create_index

    # LanceDB's Rust log repeats a k-means warning per sub-vector on small tables; set
    # LANCEDB_LOG=warn to see it. Read once, when lancedb is first imported (below).
    os.environ.setdefault("LANCEDB_LOG", "error")
    catalog = load_catalog(args.catalog)
    params = {"num_partitions": args.partitions, "num_sub_vectors": args.sub_vectors}
    with boundary(catalog.secrets):
        info = create_index(catalog, args.table, args.column, kind=args.kind, metric=args.metric,
                            replace=args.replace,
                            **{k: v for k, v in params.items() if v is not None})
    print(f"built {info}")
    return 0


def _sample_size(text: str) -> int | float:
    """``--sample``: a count (``100``) or a fraction (``0.1``)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a count or a fraction: {text!r}") from None


def _profile(args: argparse.Namespace) -> int:
    from fedquery.profile_text import summary_text

    by = [name.strip() for names in args.by for name in names.split(",") if name.strip()]
    with _connect(args.catalog) as con:
        profile = con.profile(args.source, column=args.column, by=by or None, sample=args.sample)
    print(summary_text(profile))
    if profile.groups is not None:
        print(format_table(profile.groups))
    if args.html:
        try:
            profile.save_html(args.html)
        except OSError as exc:
            print(f"error: cannot write {args.html}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.html}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fedquery.demo import run_demo

    run_demo(Path(args.dir) if args.dir else None)
    return 0


def _write(table: pa.Table, fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        if not output:
            raise SystemExit("--format parquet needs --output FILE")
        import pyarrow.parquet as pq

        pq.write_table(table, output)
        return
    text = {"table": format_table, "csv": _csv, "json": _json}[fmt](table)
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def _csv(table: pa.Table) -> str:
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue().to_pybytes().decode()


def _json(table: pa.Table) -> str:
    import json

    names = table.column_names
    return "".join(json.dumps(dict(zip(names, row, strict=True)), default=str) + "\n"
                   for row in python_rows(table))


def format_table(table: pa.Table, max_rows: int = 40, max_width: int = 40) -> str:
    """A plain-text table of the first rows, columns padded to their widest value."""
    names = table.column_names
    rows = [[_cell(v, max_width) for v in row] for row in python_rows(table.slice(0, max_rows))]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more rows")
    out.append(f"({table.num_rows} rows)")
    return "\n".join(out) + "\n"


def _cell(value: object, width: int) -> str:
    text = "NULL" if value is None else str(value)
    if isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    raise SystemExit(main())
