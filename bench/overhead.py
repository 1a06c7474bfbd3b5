"""Measure fedquery's overhead against DuckDB reading the same files directly.

TPC-H data is split the way a team's data would be: `lineitem` and `orders` are Parquet
files in a local lake folder, the other six tables live in a DuckDB warehouse file. Each
query runs alternately through fedquery and through a plain in-process DuckDB connection
with views over the same files; the best of N runs of each is compared, and the answers
are checked to be equal.

    python bench/overhead.py [--runs 7] [--sf 0.1] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from tpch_queries import ORDER_KEYS, QUERIES

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LAKE_TABLES = ("lineitem", "orders")
WAREHOUSE_TABLES = ("customer", "nation", "region", "part", "partsupp", "supplier")
FILES_PER_LAKE_TABLE = 2
ROW_GROUP_ROWS = 122_880  # DuckDB's own row-group size, so both sides scan alike
BUILD_MARKER = "BUILD_OK"
REL_TOL = 1e-9


# --------------------------------------------------------------------------- data


def data_dir(sf: float) -> Path:
    """Folder holding the generated data set for scale factor `sf`."""
    return BENCH_DIR / ".data" / f"tpch-sf{sf:g}"


def ensure_data(sf: float) -> float:
    """Build the lake and warehouse for `sf` unless already built; return build seconds."""
    root = data_dir(sf)
    if (root / BUILD_MARKER).exists():
        return 0.0
    start = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}-") as tmp:
        staging = Path(tmp) / "out"
        _build_into(sf, Path(tmp) / "raw", staging)
        shutil.rmtree(root, ignore_errors=True)  # a half-built folder from a crash
        staging.rename(root)
    return time.perf_counter() - start


def _build_into(sf: float, raw: Path, out: Path) -> None:
    """Generate raw Parquet into `raw`, then lay out the lake and warehouse in `out`."""
    _generate_raw(sf, raw)
    for table in LAKE_TABLES:
        _write_lake_table(raw / f"{table}.parquet", out / "lake" / table)
    _load_warehouse(raw, out / "warehouse.duckdb")
    (out / BUILD_MARKER).write_text(f"tpch sf={sf:g}\n")


def _tpchgen() -> str:
    """Path of `tpchgen-cli`, preferring the one installed next to this Python."""
    local = Path(sys.executable).parent / "tpchgen-cli"
    found = str(local) if local.exists() else shutil.which("tpchgen-cli")
    if found is None:
        raise SystemExit("tpchgen-cli not found: pip install tpchgen-cli")
    return found


def _generate_raw(sf: float, raw: Path) -> None:
    """Run tpchgen-cli: one Parquet file a table in `raw`."""
    cmd = [_tpchgen(), "parquet", "-s", f"{sf:g}", "-o", str(raw), "--quiet"]
    subprocess.run(cmd, check=True)


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with string_view columns as plain strings and no field metadata."""
    fields = [
        pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable) for f in schema
    ]
    return pa.schema(fields)


def _write_lake_table(source: Path, folder: Path) -> None:
    """Rewrite one tpchgen file as a few plain-string Parquet files in `folder`."""
    table = pq.read_table(source)
    table = table.cast(_plain_schema(table.schema))
    folder.mkdir(parents=True)
    step = math.ceil(table.num_rows / FILES_PER_LAKE_TABLE)
    for part in range(FILES_PER_LAKE_TABLE):
        chunk = table.slice(part * step, step)
        pq.write_table(chunk, folder / f"part-{part}.parquet", row_group_size=ROW_GROUP_ROWS)


def _load_warehouse(raw: Path, db_path: Path) -> None:
    """Load the six small tables into a DuckDB database file."""
    with duckdb.connect(str(db_path)) as con:
        for table in WAREHOUSE_TABLES:
            src = str(raw / f"{table}.parquet")
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?)", [src])
        con.execute("CHECKPOINT")


# --------------------------------------------------------------------------- connections


def make_catalog(root: Path) -> dict[str, Any]:
    """The fedquery catalog (DESIGN.md shape) over the data set in `root`."""
    tables: dict[str, dict[str, str]] = {t: {"source": "lake", "path": f"{t}/"} for t in LAKE_TABLES}
    tables |= {t: {"source": "warehouse", "table": t} for t in WAREHOUSE_TABLES}
    return {
        "sources": {
            "warehouse": {"kind": "duckdb", "path": str(root / "warehouse.duckdb")},
            "lake": {"kind": "parquet", "root": str(root / "lake")},
        },
        "tables": tables,
    }


def baseline_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """A plain DuckDB connection with one view per TPC-H table over the same files."""
    con = duckdb.connect()
    with contextlib.suppress(duckdb.Error):  # older DuckDB lacks it; matters for remote only
        con.execute("SET enable_external_file_cache = false")
    con.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    for table in LAKE_TABLES:
        glob = root / "lake" / table / "*.parquet"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}')")
    for table in WAREHOUSE_TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM wh.{table}")
    return con


def import_fedquery() -> Any | None:
    """The fedquery module if importable (from an install or this checkout), else None."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        import fedquery
    except Exception as exc:  # any failure means "not ready yet"
        print(f"note: fedquery is not importable ({type(exc).__name__}: {exc})")
        return None
    if not hasattr(fedquery, "connect"):
        print("note: fedquery has no connect() yet")
        return None
    return fedquery


def connect_fedquery(fq: Any, root: Path) -> Any | None:
    """`fedquery.connect` over the catalog, or None (with the error printed) if it fails."""
    try:
        return fq.connect(make_catalog(root))
    except Exception as exc:  # reported; the baseline still runs
        print(f"WARNING fedquery.connect failed: {type(exc).__name__}: {exc}")
        return None


# --------------------------------------------------------------------------- checking


def _values_equal(a: Any, b: Any) -> bool:
    """Equality of two cells; floats compare with a relative tolerance."""
    if isinstance(a, float | Decimal) and isinstance(b, float | Decimal | int):
        if isinstance(a, Decimal) and isinstance(b, Decimal | int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=REL_TOL)
    if isinstance(b, float | Decimal) and isinstance(a, int):
        return _values_equal(b, a)
    return a == b


def _rows_differ(expected: list[tuple], actual: list[tuple]) -> str | None:
    """First difference between two row lists, in words, or None."""
    if len(expected) != len(actual):
        return f"{len(actual)} rows, expected {len(expected)}"
    for i, (e_row, a_row) in enumerate(zip(expected, actual, strict=True)):
        if not all(_values_equal(e, a) for e, a in zip(e_row, a_row, strict=True)):
            return f"row {i}: got {a_row!r}, expected {e_row!r}"
    return None


def _sorted_rows(table: pa.Table) -> list[tuple]:
    """Rows of `table` sorted on every column, for an order-free comparison."""
    ordered = table.sort_by([(name, "ascending") for name in table.column_names])
    return list(zip(*(col.to_pylist() for col in ordered.columns), strict=True))


def _key_rows(table: pa.Table, keys: Sequence[str]) -> list[tuple]:
    """The ORDER BY key columns of `table`, row by row, in the order given."""
    return list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))


def compare(expected: pa.Table, actual: pa.Table, order_keys: Sequence[str]) -> list[str]:
    """Differences between two answers: names, types (a note), rows, order."""
    if expected.column_names != actual.column_names:
        return [f"columns {actual.column_names}, expected {expected.column_names}"]
    problems = []
    diff = _rows_differ(_sorted_rows(expected), _sorted_rows(actual))
    if diff:
        problems.append(f"rows differ: {diff}")
    elif order_keys:
        diff = _rows_differ(_key_rows(expected, order_keys), _key_rows(actual, order_keys))
        if diff:
            problems.append(f"order differs on {list(order_keys)}: {diff}")
    if expected.schema.types != actual.schema.types:
        problems.append(f"types differ: got {actual.schema}, expected {expected.schema}")
    return problems


# --------------------------------------------------------------------------- timing


@dataclass
class QueryResult:
    """The figures for one query; times in milliseconds, None where it did not run."""

    query: int
    baseline_ms: float
    fedquery_ms: float | None = None
    ratio: float | None = None
    cold_plan_ms: float | None = None
    rows: int = 0
    problems: list[str] = field(default_factory=list)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run `fn` once; return (milliseconds, its result)."""
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


def uncached_planner(con: Any) -> Callable[[str], Any] | None:
    """The planner entry point that bypasses the plan cache, if fedquery exposes one."""
    planner = getattr(con, "_planner", None)
    plan = getattr(planner, "plan", None)
    return plan if callable(plan) else None


def cold_plan_ms(con: Any, sql: str, runs: int) -> float | None:
    """Best-of-`runs` time of planning `sql` without the plan cache."""
    plan = uncached_planner(con)
    if plan is None:
        return None
    return min(timed(lambda: plan(sql))[0] for _ in range(runs))


def bench_query(n: int, base: duckdb.DuckDBPyConnection, fed: Any, runs: int) -> QueryResult:
    """Time query `n` alternately on both sides and check the answers agree."""
    sql = QUERIES[n]
    base_times, fed_times = [], []
    expected = actual = None
    result = QueryResult(query=n, baseline_ms=math.inf)
    for _ in range(runs):
        ms, expected = timed(lambda: base.sql(sql).to_arrow_table())
        base_times.append(ms)
        if fed is not None and not result.problems:
            try:
                ms, actual = timed(lambda: fed.sql(sql).arrow())
                fed_times.append(ms)
            except Exception as exc:  # reported, not raised
                result.problems.append(f"error: {type(exc).__name__}: {exc}")
    result.baseline_ms, result.rows = min(base_times), expected.num_rows
    if fed_times:
        _fill_fedquery(result, fed, sql, min(fed_times), runs)
        result.problems += compare(expected, actual, ORDER_KEYS[n])
    return result


def _fill_fedquery(result: QueryResult, fed: Any, sql: str, best: float, runs: int) -> None:
    """Record fedquery's best time, the ratio and the cold planning time."""
    result.fedquery_ms = best
    result.ratio = best / result.baseline_ms
    try:
        result.cold_plan_ms = cold_plan_ms(fed, sql, runs)
    except Exception as exc:  # reported, not raised
        result.problems.append(f"planner error: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- report


def geomean(values: Sequence[float]) -> float | None:
    """Geometric mean of positive values, None for an empty sequence."""
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _fmt(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or a dash for a missing figure."""
    return "-" if value is None else format(value, spec)


def print_table(results: Sequence[QueryResult]) -> float | None:
    """Print one line a query and the geometric mean ratio; return that mean."""
    print(
        f"{'query':>5} {'rows':>5} {'baseline ms':>12} {'fedquery ms':>12} {'ratio':>7} {'cold plan ms':>13}"
    )
    for r in results:
        print(
            f"{'Q' + str(r.query):>5} {r.rows:>5} {r.baseline_ms:>12.2f} "
            f"{_fmt(r.fedquery_ms, '12.2f'):>12} {_fmt(r.ratio, '7.2f'):>7} "
            f"{_fmt(r.cold_plan_ms, '13.2f'):>13}"
        )
    mean = geomean([r.ratio for r in results if r.ratio is not None])
    print(f"geometric mean ratio (fedquery / baseline): {_fmt(mean, '.3f')}")
    for r in results:
        for problem in r.problems:
            print(f"WARNING Q{r.query}: {problem}")
    return mean


def write_json(path: Path, results: Sequence[QueryResult], meta: dict[str, Any]) -> None:
    """Write the figures and the run's settings to `path`."""
    ratios = [r.ratio for r in results if r.ratio is not None]
    doc = {**meta, "geomean_ratio": geomean(ratios), "queries": [asdict(r) for r in results]}
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7, help="runs per side per query (best kept)")
    p.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument(
        "--queries",
        type=int,
        nargs="+",
        default=sorted(QUERIES),
        choices=sorted(QUERIES),
        help="subset of queries to run",
    )
    p.add_argument("--baseline-only", action="store_true", help="do not run fedquery")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the data if needed, run every query on both sides, print the comparison."""
    args = parse_args(argv)
    build_s = ensure_data(args.sf)
    root = data_dir(args.sf)
    print(f"data: {root} ({f'built in {build_s:.1f} s' if build_s else 'already built'})")
    fq = None if args.baseline_only else import_fedquery()
    base = baseline_connection(root)
    fed = connect_fedquery(fq, root) if fq else None
    results = [bench_query(n, base, fed, args.runs) for n in args.queries]
    threads = base.execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"runs per side: {args.runs}, duckdb {duckdb.__version__}, threads {threads}")
    print_table(results)
    if args.json:
        meta = {
            "sf": args.sf,
            "runs": args.runs,
            "build_seconds": build_s,
            "duckdb": duckdb.__version__,
            "fedquery": fed is not None,
        }
        write_json(args.json, results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
