"""The ``fedquery`` command: sql, explain, tables, profile, index, serve, demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from fedquery.boundary import boundary
from fedquery.cli_output import (
    FORMATS,
    TABLE_ROWS,
    format_table,
    write_csv,
    write_json,
    write_parquet,
    write_table,
)
from fedquery.cli_params import CommandError, parse_params
from fedquery.errors import FedQueryError

__all__ = ["CommandError", "format_table", "main"]


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
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FedQueryError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _connect(args: argparse.Namespace):
    """A connection (on the engine asked for); what the command's own code raises is masked
    with its secrets too."""
    import fedquery

    engine = getattr(args, "engine", "local")
    address = getattr(args, "ray_address", None)
    with (fedquery.connect(args.catalog, engine=engine, ray_address=address) as con,
          boundary(con.catalog.secrets)):
        yield con


def _engine_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--engine", choices=("local", "ray"), default="local",
                         help="where queries run: in this process (default) or on a Ray cluster")
    command.add_argument("--ray-address", metavar="ADDRESS",
                         help="the Ray cluster to join with --engine ray (default: "
                              "$FEDQUERY_RAY_ADDRESS, else a local one)")


def _parser() -> argparse.ArgumentParser:
    from fedquery import __version__

    parser = argparse.ArgumentParser(prog="fedquery", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fedquery {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    sql = commands.add_parser("sql", help="run a query and print or write its rows")
    sql.add_argument("catalog")
    sql.add_argument("query")
    sql.add_argument("--format", choices=FORMATS, default="table")
    sql.add_argument("--output", help="write to this file instead of standard output")
    sql.add_argument("--param", action="append", default=[], metavar="NAME[:TYPE]=VALUE",
                     help=PARAM_HELP)
    sql.add_argument("--max-rows", type=_max_rows, default=TABLE_ROWS, metavar="N",
                     help=f"rows a table shows (default {TABLE_ROWS}; 0 or all: every row)")
    sql.set_defaults(run=_sql)
    explain = commands.add_parser("explain", help="show what each source receives")
    explain.add_argument("catalog")
    explain.add_argument("query")
    explain.add_argument("--analyze", action="store_true")
    explain.add_argument("--param", action="append", default=[], metavar="NAME[:TYPE]=VALUE",
                         help=PARAM_HELP)
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
    for command in (sql, explain, profile):
        _engine_arguments(command)
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
    serve = commands.add_parser("serve", help="a PostgreSQL wire-protocol endpoint over the "
                                "catalog (psql, psycopg, BI tools); password from "
                                "FEDQUERY_SERVE_PASSWORD")
    serve.add_argument("catalog")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; another needs a password)")
    serve.add_argument("--port", type=int, default=5433, help="port (default 5433; 0: any free)")
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate: clients must use TLS")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    serve.add_argument("--allow-no-password", action="store_true",
                       help="listen beyond 127.0.0.1 without a password (anyone may query)")
    serve.set_defaults(run=_serve)
    demo = commands.add_parser("demo", help="build the sample drive data set and run a showcase")
    demo.add_argument("--dir", help="where to build the sample data (default: a cache folder)")
    demo.set_defaults(run=_demo)
    return parser


PARAM_HELP = ("a query parameter $NAME; VALUE is text, typed by the column it is compared "
              "with; NAME:TYPE=VALUE gives the type (text, int, float, decimal, bool, date, "
              "time, timestamp, json)")
WRITERS = {"csv": write_csv, "json": write_json, "parquet": write_parquet}


def _max_rows(text: str) -> int | None:
    """``--max-rows``: a count, or ``0`` / ``all`` for every row (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count or 'all': {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"not a row count or 'all': {text!r}")
    return count or None


def _sql(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    if args.format == "parquet" and not args.output:
        raise CommandError("--format parquet needs --output FILE")
    with _destination(args.output, binary=args.format == "parquet") as out, \
            _connect(args) as con:
        reader = con.sql(args.query, params=params).batches()
        with _quiet_broken_pipe():
            if args.format == "table":
                write_table(reader, out, args.max_rows)
            else:
                WRITERS[args.format](reader, out)
    return 0


@contextlib.contextmanager
def _destination(output: str | None, *, binary: bool = False) -> Iterator[IO]:
    """Standard output, or the ``--output`` file, opened before the query runs (a path that
    cannot be written is reported at once); a command that fails leaves no partial file."""
    if not output:
        yield sys.stdout
        return
    path = Path(output).expanduser()
    try:
        # closed by the with below, which also removes the file of a command that failed
        handle = (open(path, "wb") if binary  # noqa: SIM115
                  else open(path, "w", encoding="utf-8", newline=""))  # noqa: SIM115
    except OSError as exc:
        raise CommandError(_cannot_write(path, exc)) from None
    try:
        with handle:
            yield handle
    except BaseException:
        if path.is_file():  # never a device or pipe (--output /dev/stdout)
            path.unlink()
        raise


def _cannot_write(path: Path, exc: OSError) -> str:
    folder = path.absolute().parent
    if not folder.is_dir():
        return f"cannot write {path}: the folder {folder} does not exist (create it first)"
    if path.is_dir():
        return f"cannot write {path}: it is a folder; give a file name"
    return f"cannot write {path}: {exc.strerror or exc}"


@contextlib.contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    """Output piped into ``head`` stops quietly (and the query with it) when the reader goes
    away."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _explain(args: argparse.Namespace) -> int:
    with _connect(args) as con:
        print(con.explain(args.query, analyze=args.analyze, params=parse_params(args.param)))
    return 0


def _tables(args: argparse.Namespace) -> int:
    """One name a line; a table with vector indices also shows them: ``IVF_PQ(vec, cosine)``."""
    from fedquery.vector_index import label

    with _connect(args) as con:
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
    with _connect(args) as con:
        profile = con.profile(args.source, column=args.column, by=by or None, sample=args.sample)
    print(summary_text(profile))
    if profile.groups is not None:
        print(format_table(profile.groups))
    if args.html:
        try:
            profile.save_html(args.html)
        except OSError as exc:
            raise CommandError(_cannot_write(Path(args.html), exc)) from None
        print(f"wrote {args.html}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from fedquery.serve import serve
    from fedquery.serve_auth import ENV, password_from_environment

    verifier = password_from_environment()
    os.environ.pop(ENV, None)  # hashed now; the plain password stays nowhere in the process
    serve(args.catalog, args.host, args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
          allow_no_password=args.allow_no_password, verifier=verifier)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fedquery.demo import run_demo

    run_demo(Path(args.dir).expanduser() if args.dir else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
