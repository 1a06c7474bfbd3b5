"""Ctrl-C and close() while a query waits for a silent source: control comes back at once.

The caller's thread only waits for the query's worker (fedquery/waiting.py), so a
KeyboardInterrupt arrives at once and interrupts DuckDB; close() from another thread
interrupts the queries still running, whose callers get QueryCancelled.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import fedquery
from tests.services.postgres import load_shop, proxied_dsn, shop_catalog_in_postgres

STALL_QUERIES = [
    "SELECT count(*) FROM orders o JOIN clients c USING (customer_id)",  # PostgreSQL + lake
    "SELECT * FROM clients",
]


@pytest.fixture()
def stalled(unseen, unseen_root, postgres_database, pg_proxy):
    """A connection whose PostgreSQL answers nothing (read_timeout 60 s), once warmed up."""
    catalog, _ = unseen
    load_shop(postgres_database, unseen_root)
    federated = shop_catalog_in_postgres(catalog, proxied_dsn(postgres_database.dsn, pg_proxy.port))
    federated["sources"]["pg"].update(read_timeout=60, connect_timeout=30)
    with fedquery.connect(federated) as con:
        for sql in STALL_QUERIES:
            con.sql(sql).arrow()  # planned and described while the server answers
        pg_proxy.stall("both")
        yield con
        pg_proxy.pass_through()


@pytest.mark.parametrize("how", ["arrow", "batches"])
@pytest.mark.parametrize("sql", STALL_QUERIES, ids=["federated", "postgres"])
def test_ctrl_c_comes_back_at_once(stalled, sql: str, how: str) -> None:
    """It came back only after read_timeout, as a PlanError, or was swallowed under batches()."""
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        result = stalled.sql(sql)
        result.arrow() if how == "arrow" else result.batches().read_all()
    timer.join()
    assert time.monotonic() - started < 30  # far below the 60 s read timeout: not a wait for it


def test_close_from_another_thread_cancels_running_queries(stalled) -> None:
    outcomes: list[BaseException | None] = []

    def run() -> None:
        try:
            stalled.sql(STALL_QUERIES[0]).arrow()
            outcomes.append(None)
        except BaseException as exc:  # what the caller gets
            outcomes.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1)
    stalled.close()  # it raised ResourceInUseException and left the temporary folder before
    worker.join(30)
    assert not worker.is_alive()
    assert len(outcomes) == 1 and isinstance(outcomes[0], fedquery.FedQueryError), outcomes
    with pytest.raises(fedquery.FedQueryError, match="closed"):
        stalled.sql("SELECT 1")
