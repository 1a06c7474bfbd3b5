"""PostgreSQL and an S3-compatible server for the benchmarks, started and stopped here.

``postgres()`` yields a DSN: ``FEDQUERY_BENCH_PG_DSN`` if set, else a private server from
pgserver in a temporary folder (removed afterwards). ``s3()`` yields an endpoint URL:
``FEDQUERY_BENCH_S3_ENDPOINT`` if set, else ``moto_server`` on a free port of 127.0.0.1.
``S3_CREDENTIALS`` are the keys to use (the environment's AWS keys when set, else dummy keys
that moto accepts).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services.launch import ServiceError, answers, moto_server, postgres_server  # noqa: E402

__all__ = ["S3_CREDENTIALS", "ServiceError", "postgres", "s3"]
S3_CREDENTIALS = {
    "key": os.environ.get("AWS_ACCESS_KEY_ID", "fedquery-bench-key"),
    "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", "fedquery-bench-secret"),
    "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}


# --------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL DSN for the duration of the block."""
    dsn = os.environ.get("FEDQUERY_BENCH_PG_DSN")
    if dsn:
        yield dsn
        return
    with postgres_server("fedquery-bench-pg-") as dsn:
        yield dsn


# --------------------------------------------------------------------------- S3


@contextlib.contextmanager
def s3() -> Iterator[str]:
    """An S3 endpoint URL for the duration of the block."""
    external = os.environ.get("FEDQUERY_BENCH_S3_ENDPOINT")
    if external:
        if not answers(external):
            raise ServiceError(f"FEDQUERY_BENCH_S3_ENDPOINT={external} does not answer")
        yield external
        return
    with moto_server() as url:
        yield url
