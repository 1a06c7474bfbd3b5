"""A fault-injecting TCP proxy for the tests: stalls, cuts, resets and refusals on command.

``FaultProxy(upstream)`` listens on a free port of 127.0.0.1 and relays every connection to
``upstream`` (a unix socket path, as pgserver's PostgreSQL listens on, or ``(host, port)``).
While connections are live a test switches faults on and off:

>>> with FaultProxy("/tmp/pg/.s.PGSQL.5432") as proxy:          # doctest: +SKIP
...     proxy.stall("down", after_bytes=100_000)   # each connection: 100 kB more, then silence
...     proxy.reset()                              # RST every live connection now
...     proxy.refuse()                             # new connections are reset at once
...     proxy.pass_through()                       # every fault off, held bytes flow again

Faults: ``stall`` (stop forwarding in one or both directions, now or after N more bytes of a
connection), ``cut`` (close with FIN) and ``reset`` (close with RST: ``SO_LINGER`` 0), now or
after N more bytes; ``kill_all`` (close every live connection); ``refuse`` (accept and reset
new connections, for a while or until ``pass_through``). ``bytes_up``/``bytes_down`` count what
was forwarded; ``live`` counts open connections. A stalled direction stops reading, so TCP
backpressure builds up as with a silent network path; the client's kernel still acknowledges,
so only a client-side timeout can notice.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CHUNK = 65536
DIRECTIONS = ("up", "down")  # up: client -> server, down: server -> client


@dataclass
class Fault:
    """What happens to a direction once its byte allowance is spent."""

    kind: str  # "stall", "cut" or "reset"
    directions: tuple[str, ...]
    after_bytes: int | None
    live_only: bool


@dataclass
class Link:
    """One relayed connection: the client's socket, the upstream's, and byte allowances."""

    id: int
    client: socket.socket
    upstream: socket.socket
    budget: dict[str, int | None] = field(default_factory=dict)  # bytes left before the fault
    closing: bool = False
    pipes_left: int = 2


class FaultProxy:
    """A TCP relay on 127.0.0.1 to ``upstream`` with faults a test switches while it runs."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream
        self._cond = threading.Condition()
        self._links: dict[int, Link] = {}
        self._ids = itertools.count()
        self._fault: Fault | None = None
        self._refuse_until: float | None = None
        self.bytes_up = self.bytes_down = 0
        self.accepted = self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._acceptor.start()

    # ------------------------------------------------------------------ controls

    def pass_through(self) -> None:
        """Every fault off; bytes held by a stall flow again; new connections accepted."""
        with self._cond:
            self._fault, self._refuse_until = None, None
            for link in self._links.values():
                link.budget = {}
            self._cond.notify_all()

    def stall(self, direction: str = "both", *, after_bytes: int | None = None,
              live_only: bool = False) -> None:
        """Stop forwarding ``direction`` ("up", "down" or "both"), now or after ``after_bytes``
        more bytes of each connection; ``live_only``: new connections pass."""
        self._arm("stall", direction, after_bytes, live_only)

    def cut(self, *, after_bytes: int | None = None, live_only: bool = False) -> None:
        """Close the live connections (FIN both ways) now; or each connection, new ones too
        unless ``live_only``, after ``after_bytes`` more bytes of the response."""
        self._arm("cut", "down", after_bytes, live_only)

    def reset(self, *, after_bytes: int | None = None, live_only: bool = False) -> None:
        """Reset the live connections (RST to the client) now; or each connection, new ones
        too unless ``live_only``, after ``after_bytes`` more bytes of the response."""
        self._arm("reset", "down", after_bytes, live_only)

    def kill_all(self) -> None:
        """Close every live connection now (as a server process that died); new ones pass."""
        with self._cond:
            links = list(self._links.values())
        for link in links:
            self._close(link, rst=False)

    def refuse(self, seconds: float | None = None) -> None:
        """Reset every new connection at once, for ``seconds`` or until ``pass_through``."""
        with self._cond:
            self._refuse_until = float("inf") if seconds is None else time.monotonic() + seconds

    @property
    def live(self) -> int:
        with self._cond:
            return len(self._links)

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        with contextlib.suppress(OSError):
            self._listener.close()
        self.pass_through()
        self.kill_all()
        self._acceptor.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ relaying

    def _arm(self, kind: str, direction: str, after_bytes: int | None, live_only: bool) -> None:
        directions = DIRECTIONS if direction == "both" else (direction,)
        if not set(directions) <= set(DIRECTIONS):
            raise ValueError(f"direction is 'up', 'down' or 'both', not {direction!r}")
        if kind != "stall" and not after_bytes:  # now: the live connections, once
            with self._cond:
                links = list(self._links.values())
            for link in links:
                self._close(link, rst=kind == "reset")
            return
        with self._cond:
            self._fault = Fault(kind, directions, after_bytes, live_only)
            for link in self._links.values():
                link.budget = {d: after_bytes or 0 for d in directions}
            self._cond.notify_all()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing():
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                _reset(client)
                continue
            self._start(client, upstream)

    def _refusing(self) -> bool:
        with self._cond:
            if self._refuse_until is not None and time.monotonic() >= self._refuse_until:
                self._refuse_until = None
            return self._refuse_until is not None

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.upstream)
            return sock
        return socket.create_connection(self.upstream, timeout=10)

    def _start(self, client: socket.socket, upstream: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.settimeout(None)
        with self._cond:
            link = Link(next(self._ids), client, upstream)
            fault = self._fault
            if fault is not None and not fault.live_only:
                link.budget = {d: fault.after_bytes or 0 for d in fault.directions}
            self._links[link.id] = link
            self.accepted += 1
        for direction, src, dst in (("up", client, upstream), ("down", upstream, client)):
            threading.Thread(target=self._pipe, args=(link, direction, src, dst),
                             name=f"fault-proxy-{link.id}-{direction}", daemon=True).start()

    def _pipe(self, link: Link, direction: str, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    break
                if not self._forward(link, direction, memoryview(data), dst):
                    break
        except OSError:
            self._close(link, rst=False)
        finally:
            self._pipe_done(link)

    def _forward(self, link: Link, direction: str, data: memoryview, dst: socket.socket) -> bool:
        """Send ``data`` as the faults allow; False once the link is closed."""
        while data:
            with self._cond:
                while not link.closing and link.budget.get(direction, None) == 0:
                    if self._fault is not None and self._fault.kind != "stall":
                        break
                    self._cond.wait()
                if link.closing:
                    return False
                allowance = link.budget.get(direction)
                if allowance == 0:  # a cut or reset whose allowance is spent
                    kind = self._fault.kind if self._fault else "cut"
                    rst = kind == "reset"
                else:
                    rst = None
                    size = len(data) if allowance is None else min(len(data), allowance)
                    if allowance is not None:
                        link.budget[direction] = allowance - size
            if rst is not None:
                self._close(link, rst=rst)
                return False
            dst.sendall(data[:size])
            with self._cond:
                if direction == "up":
                    self.bytes_up += size
                else:
                    self.bytes_down += size
            data = data[size:]
        return True

    def _close(self, link: Link, *, rst: bool) -> None:
        """Wake both pipes of a link (they close its sockets once both are out)."""
        with self._cond:
            if link.closing:
                return
            link.closing = True
            self._cond.notify_all()
        if rst:
            with contextlib.suppress(OSError):
                link.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for sock in (link.client, link.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD if rst and sock is link.client else socket.SHUT_RDWR)

    def _pipe_done(self, link: Link) -> None:
        with self._cond:
            link.pipes_left -= 1
            last = link.pipes_left == 0
        if not last:
            self._close(link, rst=False)
            return
        for sock in (link.client, link.upstream):
            with contextlib.suppress(OSError):
                sock.close()
        with self._cond:
            self._links.pop(link.id, None)
            self._cond.notify_all()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def unix_socket_of(dsn: str) -> str | None:
    """The unix socket path a libpq URI names (``?host=/dir``, port 5432 unless given)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = (query.get("host") or [parts.hostname or ""])[0]
    if not host.startswith("/"):
        return None
    port = (query.get("port") or [str(parts.port or 5432)])[0]
    return f"{host}/.s.PGSQL.{port}"


def proxied_dsn(dsn: str, port: int) -> str:
    """The same role and database reached over TCP at 127.0.0.1:``port`` (a ``FaultProxy``),
    without TLS (the proxy relays bytes it cannot read)."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in dsn:
        return f"{dsn} host=127.0.0.1 port={port} sslmode=disable"
    parts = urlsplit(dsn)
    query = "&".join(p for p in parts.query.split("&")
                     if p and p.split("=", 1)[0] not in ("host", "port", "sslmode"))
    user = parts.username or "postgres"
    login = f"{user}:{parts.password}" if parts.password else user
    query = "&".join(filter(None, [query, "sslmode=disable"]))
    return urlunsplit((parts.scheme, f"{login}@127.0.0.1:{port}", parts.path, query, ""))


def upstream_of(dsn: str) -> str | tuple[str, int]:
    """Where a DSN's server listens: its unix socket path, or (host, port)."""
    from urllib.parse import urlsplit

    if "://" in dsn:
        path = unix_socket_of(dsn)
        if path:
            return path
        parts = urlsplit(dsn)
        return parts.hostname or "127.0.0.1", parts.port or 5432
    found = dict(re.findall(r"(\w+)\s*=\s*(\S+)", dsn))
    host, port = found.get("host", "127.0.0.1"), int(found.get("port", 5432))
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
