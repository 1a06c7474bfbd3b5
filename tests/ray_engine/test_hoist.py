"""Which blob calls run on the workers as Daft UDFs (``fedquery.ray.hoist``): calls over the one
fragment a SELECT reads, once per distinct call; none under a join or a LIMIT."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlglot

from fedquery.ray import cluster, hoist
from fedquery.ray.reads import Opening


@pytest.fixture(autouse=True)
def _on_the_cluster(ray_cluster) -> None:
    """Daft's runner is the cluster's (a DataFrame made first would make it Daft's own)."""
    cluster.join(ray_cluster)


def _frames():
    import daft

    table = pa.table({"uri": ["a.jpg", "b.jpg"], "k": [1, 2]})
    return {"__f0": daft.from_arrow(table), "__f1": daft.from_arrow(table)}


def _hoisted(sql: str):
    frames = _frames()
    tree = hoist.hoist(sqlglot.parse_one(sql, dialect="duckdb"), frames, Opening("k", None),
                       {}, partitions=2)
    added = {n for name in frames for n in frames[name].column_names if n.startswith("__fq_b")}
    return tree.sql("duckdb"), added


RUN = "GETVARIABLE('__fq_run')"


def test_the_same_call_twice_is_one_column_read_once() -> None:
    sql, added = _hoisted(f"SELECT __fq_image_info(f.uri, 'cam', {RUN}).width AS w, "
                          f"__fq_image_info(f.uri, 'cam', {RUN}).height AS h, "
                          f"__fq_thumbnail(f.uri, 64, 'cam', {RUN}) AS t FROM __f0 AS f")
    assert added == {"__fq_b0", "__fq_b1"}
    assert "__fq_image_info" not in sql.lower() and sql.count("__fq_b0") == 2


def test_calls_under_a_join_or_a_limit_stay_in_the_residual() -> None:
    joined = (f"SELECT __fq_image_info(f.uri, 'cam', {RUN}) AS i FROM __f0 AS f "
              "JOIN __f1 AS g ON f.k = g.k")
    limited = f"SELECT __fq_image_info(uri, 'cam', {RUN}) AS i FROM __f0 LIMIT 1"
    computed = f"SELECT __fq_image_info(uri || '.x', 'cam', {RUN}) AS i FROM __f0"
    for sql in (joined, limited, computed):
        out, added = _hoisted(sql)
        assert added == set() and "__fq_image_info" in out.lower()
    out, added = _hoisted(f"SELECT count(*) FROM (SELECT __fq_image_info(uri, 'cam', {RUN}) AS i "
                          "FROM __f0) AS s JOIN __f1 ON TRUE")
    assert added == {"__fq_b0"}  # the subquery reads one fragment: its call is hoisted
