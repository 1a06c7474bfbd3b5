"""``Connector.split``: a scan cut into parts that a distributed engine reads in parallel.

The parts of a split scan together hold exactly the rows of the scan, none twice: a local and
an S3 lake by file (partition keys typed as the whole table types them), PostgreSQL by ranges
of its integer primary key. A scan too small, with a limit, or of a table with no such key is
one part.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.connectors import postgres
from fedquery.connectors.base import ScanRequest
from tests.services.s3 import upload_tree

ROWS = 3_000


def _frames() -> pa.Table:
    return pa.table({"frame_id": pa.array(range(ROWS), pa.int64()),
                     "drive": pa.array([f"d{i % 7}" for i in range(ROWS)]),
                     "speed": pa.array([i * 0.5 for i in range(ROWS)], pa.float64())})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("split-lake")
    frames = _frames()
    for i, day in enumerate(["2024-05-01", "2024-05-02", "2024-05-03"]):
        folder = root / "frames" / f"day={day}"
        folder.mkdir(parents=True)
        chunk = frames.slice(i * 1000, 1000)
        pq.write_table(chunk.slice(0, 600), folder / "a.parquet")
        pq.write_table(chunk.slice(600), folder / "b.parquet")
    return root


def _rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def _check_parts(connector, request: ScanRequest, parts: int, *,
                 each_has_rows: bool = True) -> list[ScanRequest]:
    whole = connector.scan(request).read_all()
    split = connector.split(request, parts)
    tables = [connector.scan(part).read_all() for part in split]
    for table in tables:
        assert table.schema == whole.schema
        assert table.num_rows > 0 or not each_has_rows
    assert _rows(pa.concat_tables(tables)) == _rows(whole)
    return split


def test_a_local_lake_splits_by_file_with_partition_keys_typed_as_the_table(lake) -> None:
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(lake)}},
               "tables": {"frames": {"source": "lake", "path": "frames/", "partitioning": "hive"}}}
    with fedquery.connect(catalog) as con:
        connector = con._session.connectors["lake"]
        request = ScanRequest("lake.main.frames", columns=("frame_id", "day", "speed"),
                              filter="speed > 10")
        split = _check_parts(connector, request, 4)
        assert len(split) == 4
        files = [f for part in split for f in part.part]
        assert len(files) == len(set(files)) == 6
        # a part holding one day's files still types the key as the table does (DATE)
        one = connector.scan(split[0]).read_all()
        assert one.schema.field("day").type == pa.date32()
        assert dt.date(2024, 5, 1) <= min(one.column("day").to_pylist())
        # a pruned partition key prunes within a part too
        pruned = ScanRequest("lake.main.frames", columns=("frame_id",), filter="day = DATE '2024-05-02'")
        _check_parts(connector, pruned, 3, each_has_rows=False)
        # more parts than files: one per file
        assert len(connector.split(request, 50)) == 6


def _s3_lake(lake, prefix: str, endpoint: str, credentials: dict) -> dict:
    """The lake copied to ``s3://split-lake/<prefix>/`` and a catalog of it."""
    upload_tree(lake, "split-lake", prefix, endpoint=endpoint)
    options = {"endpoint_url": endpoint, "key": credentials["AWS_ACCESS_KEY_ID"],
               "secret": credentials["AWS_SECRET_ACCESS_KEY"]}
    return {"sources": {"lake": {"kind": "parquet", "root": f"s3://split-lake/{prefix}/",
                                 "options": options}},
            "tables": {"frames": {"source": "lake", "path": "frames/", "partitioning": "hive"}}}


def test_an_s3_lake_splits_by_object(lake, s3_endpoint: str, s3_credentials: dict) -> None:
    catalog = _s3_lake(lake, "v1", s3_endpoint, s3_credentials)
    with fedquery.connect(catalog) as con:
        connector = con._session.connectors["lake"]
        request = ScanRequest("lake.main.frames", columns=("frame_id", "drive", "day"),
                              filter="drive <> 'd3'")
        split = _check_parts(connector, request, 3)
        assert len(split) == 3
        assert sorted(f for part in split for f in part.part) == sorted(
            f"split-lake/v1/frames/day={d}/{n}.parquet"
            for d in ("2024-05-01", "2024-05-02", "2024-05-03") for n in "ab")


def test_a_part_whose_object_is_gone_is_a_source_error(lake, s3_endpoint: str,
                                                       s3_credentials: dict) -> None:
    from tests.services.s3 import s3_client

    catalog = _s3_lake(lake, "v2", s3_endpoint, s3_credentials)
    with fedquery.connect(catalog) as con:
        connector = con._session.connectors["lake"]
        split = connector.split(ScanRequest("lake.main.frames"), 6)
        gone = split[0].part[0]
        s3_client(s3_endpoint).delete_object(Bucket="split-lake", Key=gone.split("/", 1)[1])
        with pytest.raises(fedquery.SourceError, match="is gone since the query listed"):
            connector.scan(split[0]).read_all()


def test_postgres_splits_a_big_table_by_primary_key_ranges(postgres_database, monkeypatch) -> None:
    postgres_database.load("public.frames", _frames(),
                           ddl="CREATE TABLE public.frames (frame_id bigint PRIMARY KEY, "
                               "drive text, speed double precision)")
    postgres_database.load("public.loose", _frames())  # no primary key
    postgres_database.execute("ANALYZE public.frames", "ANALYZE public.loose")
    catalog = {"sources": {"pg": {"kind": "postgres", "dsn": postgres_database.dsn}},
               "tables": {"frames": {"source": "pg", "table": "public.frames"},
                          "loose": {"source": "pg", "table": "public.loose"}}}
    with fedquery.connect(catalog) as con:
        connector = con._session.connectors["pg"]
        request = ScanRequest("pg.public.frames", columns=("frame_id", "drive"), filter="drive <> 'd1'")
        assert connector.split(request, 4) == [request]  # 3,000 rows: read whole
        monkeypatch.setattr(postgres, "SPLIT_ROWS", 1_000)
        split = _check_parts(connector, request, 4)
        assert len(split) == 4
        assert all("frame_id" in part.filter for part in split)
        loose = ScanRequest("pg.public.loose", columns=("frame_id",))
        assert connector.split(loose, 4) == [loose]


def test_a_lance_table_splits_by_fragment_at_one_version(tmp_path) -> None:
    import lance

    frames = _frames()
    lance.write_dataset(frames.slice(0, 1000), tmp_path / "vectors" / "frames.lance")
    for start in (1000, 2000):
        lance.write_dataset(frames.slice(start, 1000), tmp_path / "vectors" / "frames.lance", mode="append")
    dataset = lance.dataset(tmp_path / "vectors" / "frames.lance")
    dataset.delete("frame_id % 10 = 3")
    catalog = {"sources": {"vectors": {"kind": "lancedb", "uri": str(tmp_path / "vectors")}},
               "tables": {"frames": {"source": "vectors", "table": "frames"}}}
    with fedquery.connect(catalog) as con:
        connector = con._session.connectors["vectors"]
        request = ScanRequest("vectors.main.frames", columns=("frame_id",), filter="drive <> 'd2'")
        split = _check_parts(connector, request, 4)
        assert len(split) == 3  # one part per fragment, deleted rows left out
        assert connector.scan(request).read_all().num_rows == len(
            [i for i in range(ROWS) if i % 10 != 3 and i % 7 != 2])
        lance.write_dataset(frames.slice(0, 10), tmp_path / "vectors" / "frames.lance", mode="append")
    # the table written since: a part of the version before is refused
    with (fedquery.connect(catalog) as con,
          pytest.raises(fedquery.SourceError, match="changed since the query was planned")):
        con._session.connectors["vectors"].scan(split[0]).read_all()
