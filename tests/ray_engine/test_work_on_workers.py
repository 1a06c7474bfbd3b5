"""Blob work on the Ray engine runs in the worker nodes' processes, not in the driver.

A shelf of photographs (noise JPEGs of about half a MiB each, so their bytes dwarf everything
else a query reads) in a files source, their URIs in a Parquet table; ``image_stats`` and
``thumbnail`` read and decode every one. The kernel's counters (``node_processes``) say who
read the files and who spent the CPU: on the local engine the test's own process (the driver)
reads them all; on the Ray engine the processes of the worker nodes do (Ray names each node's
raylet socket in ``ray.nodes()``; a node's processes are its raylet's descendants), spread
over every worker node, while the driver reads a few KiB and spends little CPU.

Ray's state API (``ray.util.state.list_tasks`` with node ids) needs the dashboard, which the
test cluster does not run; ``ray.nodes()`` is read from the GCS.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery
from tests.ray_engine.node_processes import Counters, node_processes
from tests.ray_engine.same_answers import differences

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

PHOTOS = 64
QUERY = """SELECT id, image_stats(uri).brightness AS brightness, image_stats(uri).content_hash AS hash,
                  octet_length(thumbnail(uri, 256)) AS thumbnail_bytes
           FROM shots"""


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, int]:
    """(catalog, bytes of all the photographs)."""
    root = tmp_path_factory.mktemp("shelf")
    (root / "photos").mkdir()
    (root / "lake" / "shots").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(PHOTOS):
        pixels = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "photos" / f"{i:03d}.jpg", quality=95)
    pq.write_table(pa.table({"id": range(PHOTOS), "uri": [f"{i:03d}.jpg" for i in range(PHOTOS)]}),
                   root / "lake" / "shots" / "part-0.parquet")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(root / "lake")},
                           "photos": {"kind": "files", "root": str(root / "photos")}},
               "tables": {"shots": {"source": "lake", "path": "shots/"}},
               "blobs": {"shots.uri": "photos"}}
    return catalog, sum(p.stat().st_size for p in (root / "photos").iterdir())


def _nodes() -> tuple[dict[str, str], list[str]]:
    """Ray's worker nodes (node id -> raylet socket) and its nodes without CPUs (the head)."""
    import ray

    alive = [n for n in ray.nodes() if n["Alive"]]
    workers = {n["NodeID"]: n["RayletSocketName"] for n in alive if n["Resources"].get("CPU", 0) > 0}
    return workers, [n["RayletSocketName"] for n in alive if n["Resources"].get("CPU", 0) == 0]


def test_blob_work_runs_in_the_worker_processes(shelf, ray_cluster) -> None:
    catalog, photo_bytes = shelf
    driver = {"driver": lambda: {os.getpid()}}
    with fedquery.connect(catalog) as local, \
            fedquery.connect(catalog, engine="ray", ray_address=ray_cluster) as ray:
        counters = Counters(driver)
        counters.start()
        expected = local.sql(QUERY).arrow()
        on_local = counters.stop()["driver"]

        ray.sql("SELECT count(*) FROM shots").fetchall()  # the workers open the catalog first
        workers, heads = _nodes()
        groups = {**driver, **{node: (lambda s=socket: node_processes(s))
                               for node, socket in workers.items()}}
        groups["head"] = lambda: set().union(*(node_processes(s) for s in heads))
        counters = Counters(groups)
        counters.start()
        actual = ray.sql(QUERY).arrow()
        spent = counters.stop()

    assert not differences(expected, actual, ordered=False)
    assert expected.num_rows == PHOTOS
    by_node = {node: (spent[node].read, round(spent[node].cpu, 2)) for node in workers}
    report = (f"photos {photo_bytes:,} bytes; local engine's driver {on_local}; Ray engine: driver "
              f"{spent['driver']}, head {spent['head']}, workers (read, cpu) {by_node}")
    print(report)
    assert on_local.read >= photo_bytes, report  # the counters see the reads where they happen
    assert workers and sum(spent[node].read for node in workers) >= photo_bytes, report
    assert all(spent[node].read >= photo_bytes / (4 * len(workers)) for node in workers), report
    assert spent["driver"].read < photo_bytes / 50, report
    assert spent["head"].read < photo_bytes / 50, report
    assert spent["driver"].cpu < on_local.cpu / 4, report
    assert sum(spent[node].cpu for node in workers) > on_local.cpu / 2, report
