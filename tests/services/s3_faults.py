"""A fault-injecting relay in front of the test S3 server: seeded 503s, resets and stalls.

``FaultProxy(endpoint, rate=0.5, seed=1)`` listens on 127.0.0.1 and reads each request's head;
a seeded draw decides whether it is relayed to the real server (with ``Connection: close``) or
answered with a fault: ``503 SlowDown`` with S3's XML error body, a connection reset (RST, no
answer) or a stall (nothing sent for ``stall_seconds``, then the connection closes). ``only``
limits faults to requests whose request line contains it (an object's key prefix, say), so a
bucket listing can pass while object reads fail. ``counts`` tells what was done.

    with FaultProxy(s3_endpoint, rate=0.5, faults=("503",), seed=7) as proxy:
        catalog = {... "options": {"endpoint_url": proxy.url, ...}}
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FaultProxy:
    """An HTTP relay to an S3 server that answers a seeded fraction of requests with faults."""

    def __init__(self, endpoint: str, *, rate: float = 0.0, faults: tuple[str, ...] = ("503",),
                 seed: int = 0, only: str | None = None, stall_seconds: float = 5.0) -> None:
        host, port = endpoint.split("://", 1)[1].rstrip("/").rsplit(":", 1)
        self.target = (host, int(port))
        self.rate, self.faults, self.only, self.stall_seconds = rate, faults, only, stall_seconds
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def decide(self, request_line: str) -> str:
        """``relay`` or the fault to answer this request with (seeded, in arrival order)."""
        with self._lock:
            fault = "relay"
            if self.only is None or self.only in request_line:
                draw, pick = self._random.random(), self._random.choice(self.faults)
                fault = pick if draw < self.rate else "relay"
            self.counts[fault] += 1
            return fault

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    """One request per connection: a fault, or the request relayed and the answer passed back."""

    proxy: FaultProxy
    protocol_version = "HTTP/1.1"
    _SKIP = {"connection", "transfer-encoding", "content-length", "keep-alive", "date", "server"}

    def handle_one(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.proxy.decide(self.requestline)
        if fault == "503":
            self._answer(503, "Slow Down", [("Content-Type", "application/xml")], SLOW_DOWN)
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif fault == "stall":
            time.sleep(self.proxy.stall_seconds)
            self.close_connection = True
        else:
            self._relay(body)

    def _relay(self, body: bytes) -> None:
        upstream = http.client.HTTPConnection(*self.proxy.target, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            upstream.request(self.command, self.path, body=body or None,
                             headers={**headers, "Connection": "close"})
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        passed = [(k, v) for k, v in response.getheaders() if k.lower() not in self._SKIP]
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self._answer(response.status, response.reason, passed, data, length)

    def _answer(self, status: int, reason: str, headers: list, data: bytes,
                length: str | None = None) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", length or str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_one

    def log_message(self, format: str, *args: object) -> None:
        pass
