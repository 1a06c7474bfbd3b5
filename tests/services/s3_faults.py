"""A fault-injecting HTTP proxy in front of an S3 server, for tests and benchmarks.

``FaultProxy(upstream)`` listens on a free port of 127.0.0.1 and relays each request to the
upstream server (``moto_server``), one request per client connection: it reads the request
head and body, sends them upstream with ``Connection: close``, and relays the response with
``Connection: close`` too, so no keep-alive framing is ever needed. While it runs, ``inject``
sets which requests fail and how:

- ``"503"``: ``503 Slow Down`` with S3's XML error body (the transient error S3 sends under load);
- ``"stall"``: the request is read and never answered (until ``release`` or ``close``);
- ``"stall_body"``: the head and half the body are sent, then nothing more;
- ``"reset"``: the connection is reset (TCP RST) before any answer;
- ``"reset_body"``: the head and half the body, then a reset;
- ``"cut"``: the head (with the full ``Content-Length``) and half the body, then a clean close;
- ``"refuse"``: the connection is reset as soon as it is accepted (an outage), unread;
- ``"trickle"``: the head at once, then the body ``chunk`` bytes at a time with ``pause``
  seconds between them (64 bytes every 0.05 s: 1.3 KB/s), never silent long enough for a
  request timeout; ``release`` or ``close`` cuts it short (a clean close);
- ``"status"``: an S3 error of another status (``status=429``, ``code="TooManyRequests"``; the
  code defaults by status), with its XML body (none for a HEAD);
- ``"short"``: the body ``short_by`` bytes short (8 by default), ``Content-Length`` matching
  the short body (a server or middlebox that answers fewer bytes than the range asked for);
- ``"replace"``: ``before()`` is called (say, to upload another object under the key) and the
  request is then relayed as usual: an object replaced between two requests of one read.

A rule applies to a seeded fraction of the requests (``rate``), optionally only to some methods
(``methods=("GET", "HEAD")``), to paths matching a regex (``match``), or to the next ``count``
matching requests. ``requests`` and ``body_bytes`` count, per method, the requests relayed and
the response body bytes sent to clients; ``injected`` counts faults per kind; ``log`` lists a
``Request`` (method, path, query, outcome, body bytes sent) per request. ``down()`` closes the
listening socket (connections are refused, as by a server that is down) and ``up()`` opens it
again on the same port.

>>> proxy = FaultProxy("http://127.0.0.1:5000", seed=7)  # doctest: +SKIP
>>> with proxy.faults("503", rate=0.5, methods=("GET", "HEAD")):  # doctest: +SKIP
...     ...  # half the reads answered 503
>>> proxy.body_bytes["GET"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

FAULTS = ("503", "stall", "stall_body", "reset", "reset_body", "cut", "trickle", "refuse",
          "status", "short", "replace")
CODES = {400: "BadRequest", 401: "Unauthorized", 403: "AccessDenied", 404: "NoSuchKey",
         408: "RequestTimeout", 409: "OperationAborted", 429: "TooManyRequests",
         499: "ClientClosedRequest", 500: "InternalError", 503: "SlowDown"}
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message>"
             b"<RequestId>fedquery-fault-proxy</RequestId></Error>")
_HEAD_MAX = 1 << 16
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding"}
_IO_TIMEOUT = 120.0  # a stuck upstream or client never holds a relay thread forever


@dataclass(frozen=True)
class Rule:
    """Which requests fail, and how."""

    fault: str
    rate: float = 1.0
    methods: frozenset[str] | None = None
    match: re.Pattern[str] | None = None
    chunk: int = 64  # trickle: bytes sent at a time
    pause: float = 0.05  # trickle: seconds between them
    status: int = 503  # "status": the status answered, and its S3 error code
    code: str | None = None
    short_by: int = 8  # "short": body bytes left out
    before: Callable[[], object] | None = None  # "replace": called before the request is relayed

    def applies(self, method: str, path: str) -> bool:
        return ((self.methods is None or method in self.methods)
                and (self.match is None or self.match.search(path) is not None))


@dataclass(frozen=True)
class Request:
    """One request the proxy handled: what was asked, what happened, the body bytes sent."""

    method: str
    path: str
    query: str
    outcome: str
    body: int

    @property
    def is_listing(self) -> bool:
        """A bucket listing (``GET /bucket?list-type=2...``), not an object read."""
        return self.method == "GET" and "list-type" in self.query


@dataclass
class _Message:
    """An HTTP request or response head, parsed: the first line and the headers in order."""

    first: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def encode(self, extra: Iterable[tuple[str, str]] = ()) -> bytes:
        kept = [(k, v) for k, v in self.headers if k.lower() not in _HOP_BY_HOP]
        lines = [self.first] + [f"{k}: {v}" for k, v in [*kept, *extra]]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    """A threaded relay to an S3 server that fails chosen requests in chosen ways."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rule: Rule | None = None
        self._remaining: int | None = None
        self._release = threading.Event()
        self._closed = threading.Event()
        self.requests: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.log: list[Request] = []
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._serve, args=(self._listener,), name="fault-proxy",
                                  daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ controls

    def inject(self, fault: str, *, rate: float = 1.0, methods: Iterable[str] | None = None,
               match: str | None = None, count: int | None = None, **details) -> None:
        """Fail ``rate`` of the requests that match (``methods``, ``match`` regex on the
        decoded path), all of them or only the next ``count``, with ``fault`` (see FAULTS);
        ``details``: ``chunk`` and ``pause`` (a trickle), ``status``, ``code``, ``short_by``
        or ``before`` (see Rule)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        rule = Rule(fault, rate, frozenset(m.upper() for m in methods) if methods else None,
                    re.compile(match) if match else None, **details)
        with self._lock:
            self._rule, self._remaining = rule, count
            self._release.clear()

    def clear(self, *, release: bool = True) -> None:
        """No more faults; stalled and trickling connections are released (closed), unless
        ``release`` is False (they go on as they were)."""
        with self._lock:
            self._rule, self._remaining = None, None
        if release:
            self.release()

    def release(self) -> None:
        """Close the connections stalled so far (the rule stays)."""
        self._release.set()

    @contextlib.contextmanager
    def faults(self, fault: str, **rule) -> Iterator[FaultProxy]:
        """``inject`` for the length of a ``with`` block, then ``clear``."""
        self.inject(fault, **rule)
        try:
            yield self
        finally:
            self.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.body_bytes.clear()
            self.injected.clear()
            self.log.clear()

    def down(self) -> None:
        """Stop listening: new connections are refused until ``up``."""
        _close_listener(self._listener)
        self._thread.join(5)

    def up(self) -> None:
        """Listen again on the same port."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = self._start()

    def object_bytes(self) -> int:
        """Body bytes of object reads sent so far (GETs that are not listings)."""
        self.wait_idle()
        with self._lock:
            return sum(r.body for r in self.log if r.method == "GET" and not r.is_listing)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being relayed (a client may have its answer before the
        proxy has logged it); False if some are still busy after ``timeout`` (stalls)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        self._closed.set()
        self.release()
        _close_listener(self._listener)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ serving

    def _serve(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), name="fault-proxy-relay",
                             daemon=True).start()

    def _decide(self, method: str | None, path: str) -> Rule | None:
        """The rule that fails one request (``method`` None: a connection just accepted, which
        only ``refuse`` applies to), if any; the seeded draw is taken under the lock."""
        with self._lock:
            rule = self._rule
            if rule is None or self._remaining == 0 or (rule.fault == "refuse") != (method is None):
                return None
            if method is not None and not rule.applies(method, path):
                return None
            if rule.rate < 1.0 and self._random.random() >= rule.rate:
                return None
            if self._remaining is not None:
                self._remaining -= 1
            self.injected[rule.fault] += 1
            return rule

    def _record(self, method: str, target: str, what: str, body: int = 0) -> None:
        parts = urlsplit(target)
        with self._lock:
            self.requests[method] += 1
            self.body_bytes[method] += body
            self.log.append(Request(method, unquote(parts.path), parts.query, what, body))

    def _handle(self, client: socket.socket) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._handle_one(client)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _handle_one(self, client: socket.socket) -> None:
        client.settimeout(_IO_TIMEOUT)
        with contextlib.suppress(OSError), client:
            if self._decide(None, "") is not None:
                self._record("*", "", "refuse")
                _reset(client)
                return
            reader = client.makefile("rb")
            request = _read_head(reader)
            if request is None:
                return
            method, target = (request.first.split(" ") + ["", ""])[:2]
            body = _read_body(reader, request, method="REQUEST")
            rule = self._decide(method, unquote(urlsplit(target).path))
            fault = rule.fault if rule is not None else None
            if fault in ("503", "stall", "reset", "status"):
                self._fail_before_answer(client, method, target, fault, rule)
                return
            if fault == "replace" and rule.before is not None:
                rule.before()
            self._relay(client, request, body, method, target, fault, rule)

    def _fail_before_answer(self, client: socket.socket, method: str, target: str, fault: str,
                            rule: Rule | None = None) -> None:
        self._record(method, target, fault)
        if fault in ("503", "status"):
            status = rule.status if fault == "status" and rule is not None else 503
            code = (rule.code if rule is not None and rule.code else None) or CODES.get(status, "Error")
            body = SLOW_DOWN if fault == "503" else _error_body(code)
            head = _Message(f"HTTP/1.1 {status} {code}", [
                ("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                ("Connection", "close")])
            client.sendall(head.encode() + (b"" if method == "HEAD" else body))
        elif fault == "stall":
            self._stall()
        else:
            _reset(client)

    def _relay(self, client: socket.socket, request: _Message, body: bytes, method: str,
               target: str, fault: str | None, rule: Rule | None = None) -> None:
        with socket.create_connection(self.upstream, timeout=_IO_TIMEOUT) as upstream:
            upstream.sendall(request.encode([("Connection", "close")]) + body)
            reader = upstream.makefile("rb")
            response = _read_head(reader)
            if response is None:
                _reset(client)
                self._record(method, target, "upstream closed")
                return
            data = b"" if method == "HEAD" else _read_body(reader, response, method="RESPONSE")
        extra = [("Connection", "close")]
        if fault == "short" and data and rule is not None:
            data = data[:max(0, len(data) - rule.short_by)]
        if method != "HEAD" or response.header("content-length") is None:
            extra.append(("Content-Length", str(len(data))))
            response.headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        head = response.encode(extra)
        if fault in ("cut", "stall_body", "reset_body") and data:
            sent = data[:len(data) // 2]
            client.sendall(head + sent)
            self._record(method, target, fault, len(sent))
            if fault == "stall_body":
                self._stall()
            elif fault == "reset_body":
                _reset(client)
            return
        if fault == "trickle" and rule is not None:
            self._record(method, target, fault, self._trickle(client, head, data, rule))
            return
        client.sendall(head + data)
        self._record(method, target, response.first.split(" ", 2)[1] if " " in response.first else "?",
                     len(data))

    def _trickle(self, client: socket.socket, head: bytes, data: bytes, rule: Rule) -> int:
        """Send the head, then the body a few bytes at a time until it is all sent or the
        proxy is released; the body bytes sent."""
        client.sendall(head)
        sent = 0
        while sent < len(data) and not self._release.wait(rule.pause):
            client.sendall(data[sent:sent + rule.chunk])
            sent += min(rule.chunk, len(data) - sent)
        return sent

    def _stall(self) -> None:
        """Hold a connection open, answering nothing, until released or closed."""
        self._release.wait()


def _error_body(code: str) -> bytes:
    """S3's XML error body for ``code``."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>injected by the fault proxy</Message>"
            f"<RequestId>fedquery-fault-proxy</RequestId></Error>").encode()


def _read_head(reader) -> _Message | None:
    """The head of an HTTP message (None when the peer closed before sending one)."""
    lines: list[str] = []
    size = 0
    while True:
        line = reader.readline(_HEAD_MAX)
        size += len(line)
        if not line or size > _HEAD_MAX:
            return None
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        lines.append(text)
    if not lines:
        return None
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
    return _Message(lines[0], headers)


def _read_body(reader, message: _Message, *, method: str) -> bytes:
    """A message's body: by ``Content-Length``, chunked, or (a response) until the close."""
    length = message.header("content-length")
    if length is not None:
        return reader.read(int(length))
    if (message.header("transfer-encoding") or "").lower() == "chunked":
        return _read_chunked(reader)
    if method == "REQUEST" or message.first.split(" ")[1:2] in (["204"], ["304"]):
        return b""
    return reader.read()


def _read_chunked(reader) -> bytes:
    parts = []
    while True:
        size = int(reader.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(reader.read(size))
        reader.readline()


def _close_listener(sock: socket.socket) -> None:
    """Close a listening socket, waking the thread blocked in its ``accept``."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
