"""Scale-out on Ray: the same work with 1, 2 (and 4) worker nodes, against the local engine.

    python bench/scale.py [--images 20000] [--workers 1,2] [--tpch-scale 0.2]

Run it in the Ray environment (``.venv-ray/bin/python``, made by ``make test``). For each
worker count it starts a real cluster (``ray start``: a head with no CPU for tasks, and that
many worker nodes of one CPU each) and, in a fresh driver process, measures:

- **profile**: ``con.profile`` of N JPEG images (every image decoded and measured);
- **embed**: ``SELECT count(e) FROM (SELECT embed_image(uri) AS e FROM images)``;
- **TPC-H** Q1, Q3 and Q6 over an S3 lake (moto on 127.0.0.1), each table in 8 files.

Each worker node is pinned to a core of its own (``sched_setaffinity``), as a one-CPU machine
would be: its thread pools cannot borrow another node's core. It reports items per second, per
worker, the scaling efficiency from 1 worker
(``rate_N / (N * rate_1)``), the driver's CPU seconds beside the cluster's (the blob work must
run on the workers) and the bytes of results moved to the driver; the local engine's rate on
the same data, in this process, is the baseline. A paper projection to 100 nodes fits
``T(N) = serial + parallel / N`` to the smallest and largest worker counts measured.
Timings are of this machine (2 shared cores: more worker nodes than cores share them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

TPCH = {1: "Q1 (aggregate)", 3: "Q3 (join)", 6: "Q6 (filter, sum)"}
EMBED = "SELECT count(*) AS n, count(e) AS embedded FROM (SELECT embed_image(uri) AS e FROM images)"


def catalog(images: Path, s3: str | None, tpch_prefix: str) -> dict:
    from services import S3_CREDENTIALS

    out = {"sources": {"shots": {"kind": "files", "root": str(images)}},
           "tables": {"images": {"source": "shots"}}}
    if s3:
        options = {"endpoint_url": s3, "key": S3_CREDENTIALS["key"],
                   "secret": S3_CREDENTIALS["secret"], "region": S3_CREDENTIALS["region"]}
        out["sources"]["lake"] = {"kind": "parquet", "root": f"s3://{tpch_prefix}/",
                                  "options": options}
        for table in ("lineitem", "orders", "customer"):
            out["tables"][table] = {"source": "lake", "path": f"{table}/"}
    return out


def measure(con, s3: bool, temp_dir: str | None = None) -> dict:
    """Each workload once on ``con``: wall and driver CPU seconds, items, result bytes; on a
    cluster also its processes' CPU seconds and where the residual ran."""
    from tpch_queries import ALL_QUERIES

    out = {}

    def run(name: str, items: int, work) -> None:
        before = cluster_cpu(temp_dir) if temp_dir else 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        moved = work()
        out[name] = {"seconds": time.perf_counter() - wall, "driver_cpu": time.process_time() - cpu,
                     "items": items, "bytes_to_driver": moved}
        if temp_dir:
            out[name]["cluster_cpu"] = cluster_cpu(temp_dir) - before
            out[name]["residual"] = con._session.engine.last_residual

    count = con.sql("SELECT count(*) FROM images").fetchall()[0][0]
    run("profile", count, lambda: con.profile("images").to_arrow().nbytes)
    run("embed", count, lambda: con.sql(EMBED).arrow().nbytes)
    if s3:
        rows = con.sql("SELECT count(*) FROM lineitem").fetchall()[0][0]
        for q in TPCH:
            run(f"tpch_q{q}", rows, lambda q=q: con.sql(ALL_QUERIES[q]).arrow().nbytes)
    return out


def one(args: argparse.Namespace) -> None:
    """In a fresh process: join the cluster, warm up, measure; print JSON."""
    import fedquery

    con = fedquery.connect(catalog(Path(args.images_dir), args.s3, args.tpch_prefix),
                           engine="ray", ray_address=args.address)
    con.sql("SELECT count(*) FROM images").fetchall()  # workers open the catalog once
    print(json.dumps(measure(con, bool(args.s3), args.temp_dir)))


def cluster_cpu(temp_dir: str) -> float:
    """CPU seconds so far of the cluster's live processes: those whose command line names its
    temporary folder (its nodes' raylets, stores and agents) and every process below them
    (the nodes' workers, renamed ``ray::...``)."""
    from tests.services.ray_cluster import descendants, process_table

    table = process_table()
    roots = {pid for pid, info in table.items() if temp_dir.encode() in info.cmdline}
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in descendants(table, roots) - {os.getpid()}:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def on_cluster(workers: int, args: argparse.Namespace, images: Path, s3: str | None) -> dict:
    from tests.services.ray_cluster import ray_cluster

    with ray_cluster(workers=workers, pin=True) as cluster:
        command = [sys.executable, __file__, "--one", "--address", cluster.address,
                   "--images-dir", str(images), "--tpch-prefix", args.tpch_prefix,
                   "--temp-dir", str(cluster.temp_dir)]
        if s3:
            command += ["--s3", s3]
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, **cluster.env, "DAFT_PROGRESS_BAR": "0"})
        if done.returncode != 0:
            raise SystemExit(f"the run with {workers} workers failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def report(local: dict, runs: dict[int, dict]) -> str:
    counts = sorted(runs)
    lines = [f"{'workload':<32}{'engine':>10}{'items/s':>11}{'/worker':>10}{'efficiency':>12}"
             f"{'vs local':>10}{'driver cpu':>12}{'to driver':>11}{'cluster cpu':>13}  residual"]
    for name in local:
        base = local[name]["items"] / local[name]["seconds"]
        first = runs[counts[0]][name]
        rate1 = first["items"] / first["seconds"] / counts[0]
        lines.append(f"{_label(name):<32}{'local':>10}{base:>11,.0f}{'':>10}{'':>12}{'1.00':>10}"
                     f"{local[name]['driver_cpu']:>11.1f}s{local[name]['bytes_to_driver']:>11,}")
        for n in counts:
            m = runs[n][name]
            rate = m["items"] / m["seconds"]
            lines.append(f"{'':<32}{f'ray x{n}':>10}{rate:>11,.0f}{rate / n:>10,.0f}"
                         f"{rate / (n * rate1):>12.2f}{rate / base:>10.2f}{m['driver_cpu']:>11.1f}s"
                         f"{m['bytes_to_driver']:>11,}{m['cluster_cpu']:>12.1f}s  {m['residual']}")
        lines.append(f"{'':<32}{'100 nodes':>10}{_projection(runs, name, counts)}")
    return "\n".join(lines)


def _projection(runs: dict[int, dict], name: str, counts: list[int]) -> str:
    """T(N) = serial + parallel / N through the smallest and largest counts; its rate at 100."""
    low, high = counts[0], counts[-1]
    if low == high:
        return "   (needs two worker counts)"
    t_low, t_high = runs[low][name]["seconds"], runs[high][name]["seconds"]
    parallel = (t_low - t_high) / (1 / low - 1 / high)
    serial = max(0.0, t_low - parallel / low)
    if parallel <= 0:
        return f"   (no speed-up measured: serial {serial:.1f} s)"
    items = runs[low][name]["items"]
    t100 = serial + parallel / 100
    rate1 = items / (serial + parallel)
    return (f"{items / t100:>11,.0f}{items / t100 / 100:>10,.0f}{items / t100 / (100 * rate1):>12.2f}"
            f"   serial {serial:.2f} s + {parallel:.1f} s / N")


def _label(name: str) -> str:
    if name.startswith("tpch_q"):
        return "TPC-H " + TPCH[int(name[6:])] + " rows"
    return {"profile": "profile (images)", "embed": "embed_image (images)"}[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--tpch-scale", type=float, default=0.2)
    parser.add_argument("--no-tpch", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--images-dir", help=argparse.SUPPRESS)
    parser.add_argument("--s3", help=argparse.SUPPRESS)
    parser.add_argument("--temp-dir", help=argparse.SUPPRESS)
    parser.add_argument("--tpch-prefix", default="scale-tpch/lake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    import contextlib

    import scale_data
    from services import s3 as s3_server

    import fedquery

    images = scale_data.images(args.images)
    with (s3_server() if not args.no_tpch else contextlib.nullcontext()) as s3:
        if s3:
            _upload(scale_data.tpch(args.tpch_scale), s3, args.tpch_prefix)
        with fedquery.connect(catalog(images, s3, args.tpch_prefix)) as con:
            con.sql("SELECT count(*) FROM images").fetchall()
            local = measure(con, bool(s3))
        runs = {n: on_cluster(n, args, images, s3) for n in map(int, args.workers.split(","))}
    tpch = "" if args.no_tpch else f", TPC-H SF {args.tpch_scale:g} over S3"
    print(f"{args.images:,} images ({_size(images)}){tpch}, worker nodes {args.workers} "
          f"(one core each), {os.cpu_count()} cores")
    print(report(local, runs))
    print(json.dumps({"local": local, "ray": runs}))


def _upload(root: Path, endpoint: str, prefix: str) -> None:
    from tests.services.s3 import upload_tree

    bucket, _, key = prefix.partition("/")
    upload_tree(root, bucket, key, endpoint=endpoint)


def _size(folder: Path) -> str:
    total = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
    return f"{total / 2**20:.0f} MiB"


if __name__ == "__main__":
    main()
