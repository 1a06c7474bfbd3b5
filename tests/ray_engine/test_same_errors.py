"""A query that fails on the local engine fails on the Ray engine too, with the same fedquery
error and the same text, wherever it fails: in a blob call run as a Daft UDF on the workers, in
the residual, while planning; a missing file under ``strict=True`` (a ``SourceError`` raised in
a worker), a result over ``settings.max_rows``.

The sample data set copied, one camera image removed, its catalog with ``max_rows``; both
connections ``strict``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import fedquery

MAX_ROWS = 1000
MISSING = "0003/000017.jpg"


@pytest.fixture(scope="module")
def engines(sample: Path, tmp_path_factory: pytest.TempPathFactory, ray_cluster):
    """(local connection, Ray connection), both strict, to the damaged copy."""
    root = tmp_path_factory.mktemp("damaged") / "fleet"
    shutil.copytree(sample.parent, root)
    (root / "blobs" / "camera" / MISSING).unlink()
    catalog = yaml.safe_load((root / "catalog.yaml").read_text())
    catalog["settings"] = {"max_rows": MAX_ROWS}
    (root / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    with fedquery.connect(root / "catalog.yaml", strict=True) as local, \
            fedquery.connect(root / "catalog.yaml", strict=True, engine="ray",
                             ray_address=ray_cluster) as ray:
        yield local, ray


ERRORS = {
    "hoisted_blob_call": "SELECT frame_id, thumbnail(image_uri, 0) AS t FROM frames",
    "blob_call_in_the_residual": """
        SELECT f.frame_id, thumbnail(f.image_uri, 5000) AS t FROM frames f
        JOIN drives d USING (drive_id)""",
    "missing_file_in_a_hoisted_call": "SELECT frame_id, image_info(image_uri) AS i FROM frames",
    "missing_file_in_the_residual": """
        SELECT f.frame_id, image_info(f.image_uri).width AS w FROM frames f
        JOIN drives d USING (drive_id) WHERE d.drive_id <= 5""",
    "raised_in_the_residual": "SELECT error('boom') FROM frames f JOIN drives d USING (drive_id)",
    "scalar_subquery_of_many_rows": "SELECT (SELECT drive_id FROM frames) AS d FROM drives",
    "vector_dimensions": "SELECT array_cosine_distance(e.embedding, [1, 2]::FLOAT[2]) AS d "
                         "FROM frame_embeddings e",
    "uri_outside_the_roots": "SELECT image_info('/etc/passwd') AS i FROM frames",
    "over_max_rows": "SELECT drive_id, ts, ax FROM imu",
}


@pytest.mark.parametrize("sql", ERRORS.values(), ids=ERRORS.keys())
def test_same_errors(engines, sql: str) -> None:
    raised = []
    for con in engines:
        with pytest.raises(fedquery.FedQueryError) as info:
            con.sql(sql).arrow()
        raised.append((type(info.value), str(info.value)))
    assert raised[1] == raised[0]


def test_the_damage_is_what_fails(engines) -> None:
    """The files left and a small enough answer read fine on both engines."""
    for con in engines:
        rows = con.sql("SELECT count(image_info(image_uri).width) AS n FROM frames "
                       f"WHERE image_uri <> '{MISSING}'").fetchall()
        assert rows == [(399,)]
