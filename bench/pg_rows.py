"""A TCP relay in front of PostgreSQL that counts the rows the server sends back.

``RowCountingProxy(upstream)`` is ``tests.services.tcp_proxy.FaultProxy`` (no faults) that reads
the server's side of the wire protocol as it relays it: every ``DataRow`` message is a row of a
plain query's answer, and every ``CopyData`` message of a ``COPY ... TO STDOUT`` is one row (the
server sends one a row; a binary copy adds one more for its trailer, subtracted at ``CopyDone``).
DuckDB's postgres extension, ADBC's PostgreSQL driver and ConnectorX all read with binary
``COPY``, and their catalog and planning queries come back as ``DataRow``s, so the two counts
are kept apart (``copy_rows``, ``data_rows``); ``rows`` is their sum.

Clients reach it at ``proxied_dsn(dsn, proxy.port)`` (TLS off: the relay must read the bytes).
"""

from __future__ import annotations

import struct
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services.tcp_proxy import FaultProxy, Link, proxied_dsn, upstream_of  # noqa: E402,F401

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class _Wire:
    """One connection's parser: the client's startup packets, the server's typed messages."""

    def __init__(self) -> None:
        self.up = bytearray()  # the client's untyped startup packets, until the real one
        self.up_done = False
        self.single_bytes = 0  # answers to SSL/GSS requests: one byte, no header
        self.head = bytearray()  # the current server message's type and length, as they come
        self.body_left = 0
        self.keep: bytearray | None = None  # a body we need (CopyOutResponse's format byte)
        self.kind = b""
        self.copy_messages = 0
        self.copy_binary = False
        self.copy_rows = 0
        self.data_rows = 0

    def client_bytes(self, data: bytes) -> None:
        if self.up_done:
            return
        self.up += data
        while len(self.up) >= 8:
            length, code = struct.unpack("!ii", self.up[:8])
            if len(self.up) < length:
                return
            del self.up[:length]
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                self.single_bytes += 1
            else:
                self.up_done = True
                return

    def server_bytes(self, data: memoryview) -> None:
        i, n = 0, len(data)
        while i < n:
            if self.body_left:
                take = min(self.body_left, n - i)
                if self.keep is not None:
                    self.keep += data[i:i + take]
                self.body_left -= take
                i += take
                if not self.body_left:
                    self._message_done()
                continue
            if self.single_bytes and not self.head:
                self.single_bytes -= 1
                i += 1
                continue
            take = min(5 - len(self.head), n - i)
            self.head += data[i:i + take]
            i += take
            if len(self.head) == 5:
                self.kind = bytes(self.head[:1])
                self.body_left = struct.unpack("!i", self.head[1:5])[0] - 4
                self.head.clear()
                self.keep = bytearray() if self.kind == b"H" else None
                if not self.body_left:
                    self._message_done()

    def _message_done(self) -> None:
        kind = self.kind
        if kind == b"D":
            self.data_rows += 1
        elif kind == b"d":
            self.copy_messages += 1
        elif kind == b"H":
            self.copy_binary = bool(self.keep and self.keep[0] == 1)
            self.copy_messages = 0
        elif kind == b"c":
            trailer = 1 if self.copy_binary and self.copy_messages else 0
            self.copy_rows += self.copy_messages - trailer
            self.copy_messages = 0
        self.keep = None


class RowCountingProxy(FaultProxy):
    """A relay to PostgreSQL that counts the rows its answers carry (see the module's text)."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self._wires: dict[int, _Wire] = {}
        self._wires_lock = threading.Lock()
        super().__init__(upstream)

    def _wire(self, link: Link) -> _Wire:
        with self._wires_lock:
            wire = self._wires.get(link.id)
            if wire is None:
                wire = self._wires[link.id] = _Wire()
            return wire

    def _forward(self, link: Link, direction: str, data: memoryview, dst) -> bool:
        wire = self._wire(link)
        if direction == "up":
            wire.client_bytes(bytes(data))
        else:
            wire.server_bytes(data)
        return super()._forward(link, direction, data, dst)

    def counts(self) -> dict[str, int]:
        """Rows sent so far: ``copy_rows``, ``data_rows`` and their sum ``rows``."""
        with self._wires_lock:
            wires = list(self._wires.values())
        copy = sum(w.copy_rows for w in wires)
        data = sum(w.data_rows for w in wires)
        return {"copy_rows": copy, "data_rows": data, "rows": copy + data}
