"""One connection used from many threads: planning and running at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import fedquery


def test_first_queries_from_many_threads_on_a_fresh_connection(sample) -> None:
    """The first plans of a connection describe tables and create functions; threads doing
    that at once must not meet DuckDB's "connection is busy"."""
    queries = ([f"SELECT count(*) FROM frames f JOIN drives d USING (drive_id) WHERE d.drive_id > {i}"
                for i in range(6)]
               + [f"SELECT count(*) FROM lidar_sweeps l JOIN frame_embeddings e USING (drive_id) "
                  f"WHERE l.drive_id > {i}" for i in range(6)]
               + [f"SELECT count(embed_text(d.city)), count(image_info(f.image_uri)) FROM frames f "
                  f"JOIN drives d USING (drive_id) WHERE f.frame_id > {i}" for i in range(6)])
    with fedquery.connect(sample) as con:
        with ThreadPoolExecutor(len(queries)) as pool:
            answers = list(pool.map(lambda q: con.sql(q).fetchall(), queries))
        for query, answer in zip(queries, answers, strict=True):
            assert answer == con.sql(query).fetchall(), query
