"""PostgreSQL's binding of the shared ADBC streams (``_adbc_stream``): the driver's batch size
option, libpq's idea of a lost session and the numeric/JSON batch conversion."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import pyarrow as pa

from fedquery.connectors import _adbc_stream
from fedquery.connectors._postgres_session import Pool, Session, connection_lost
from fedquery.connectors._postgres_types import convert_batch


class Statement(_adbc_stream.Statement):
    """A statement started with PostgreSQL's batch size hint."""

    @classmethod
    def start(cls, session: Session, sql: str, timeout: float, batch_bytes: int,
              before: Callable[[object], None] | None = None) -> Statement:
        from adbc_driver_postgresql import StatementOptions  # the driver, when a source runs

        options = {StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(batch_bytes)}
        return super().start(session, sql, timeout, options, before)


class FragmentStream(_adbc_stream.FragmentStream):
    """A fragment's batches in PostgreSQL's target types, retried on libpq's lost sessions."""

    def __init__(self, open_statement: Callable[[bool], _adbc_stream.Statement], pool: Pool, *,
                 schema_of: Callable[[pa.Schema], pa.Schema], read_timeout: float,
                 batch_rows: int | None,
                 translate: Callable[[BaseException, str, str], NoReturn]) -> None:
        super().__init__(open_statement, pool, schema_of=schema_of, read_timeout=read_timeout,
                         batch_rows=batch_rows, translate=translate, convert=convert_batch,
                         lost=connection_lost)
