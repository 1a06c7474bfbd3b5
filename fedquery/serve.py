"""``fedquery serve CATALOG``: the federation behind a PostgreSQL wire-protocol endpoint.

``psql``, psycopg, JDBC tools (DBeaver, Tableau) and SQLAlchemy (Superset) connect as to a
PostgreSQL server and query the catalog's tables. Every query goes through fedquery's public
path (``Connection.sql`` and ``Result.batches``): the same planner, read-only sandbox and
catalog ``settings`` (timeout, max_rows, memory_limit) as in Python. The protocol is
buenavista's (``serve_protocol`` adapts its handler); one thread serves each client.

All clients share one ``fedquery.Connection``: it is safe from many threads (its planner
and executor lock what they share, and each query runs on its own DuckDB cursor), its plan
cache and described tables serve every client, and the catalog's ``memory_limit`` then
bounds the whole server rather than each client.

>>> server = Server(con, ("127.0.0.1", 5433), verifier=None)   # doctest: +SKIP
>>> server.serve_forever()                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING

from buenavista.core import Connection as BVConnection
from buenavista.postgres import BuenaVistaServer

from fedquery.cli_params import CommandError
from fedquery.serve_auth import ENV, Verifier
from fedquery.serve_catalog import MetadataCatalog
from fedquery.serve_protocol import Context, Handler, same_key, tls_context
from fedquery.serve_session import ClientSession
from fedquery.serve_statements import SessionState

if TYPE_CHECKING:
    import ssl

    from fedquery.connection import Connection

DEFAULT_PORT = 5433


class Sessions(BVConnection):
    """buenavista's connection object: opens a ``ClientSession`` per client over the one
    shared ``fedquery.Connection``."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection
        self.metadata = MetadataCatalog(connection)

    def open_session(self, state: SessionState) -> ClientSession:
        session = ClientSession(self.connection, self.metadata, state)
        self._sessions[session.id] = session
        return session


class Server(BuenaVistaServer):
    """A threaded PostgreSQL endpoint over one fedquery connection."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, connection: Connection, address: tuple[str, int], *,
                 verifier: Verifier | None, tls: ssl.SSLContext | None = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Sessions(connection))
        self.RequestHandlerClass = Handler
        self.verifier, self.tls = verifier, tls
        self._lock = threading.Lock()
        self._requests: set[socket.socket] = set()

    def verify_request(self, request, client_address) -> bool:  # noqa: ANN001
        """Every client may try: the password (or a loopback-only listener) decides;
        buenavista's own check admits 127.0.0.1 only."""
        return True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """A handler's unexpected exception: one line on standard error, no traceback."""
        kind, exc, _ = sys.exc_info()
        print(f"fedquery serve: client {client_address[0]}: {kind.__name__}: {exc}",
              file=sys.stderr)

    def remember(self, ctx: Context) -> None:
        with self._lock:
            self.ctxts[ctx.process_id] = ctx

    def forget(self, ctx: Context) -> None:
        with self._lock:
            self.ctxts.pop(ctx.process_id, None)
        self.conn.close_session(ctx.session)

    def cancel(self, process: int, key: int) -> None:
        """A cancel request: the session with that process id and secret key stops its
        query (nothing happens for a wrong key, as in PostgreSQL)."""
        with self._lock:
            ctx = self.ctxts.get(process)
        if ctx is not None and same_key(ctx.secret_key, key):
            ctx.session.cancel()

    def stop_clients(self) -> None:
        """Cancel every running query and hang up on every client (at shutdown)."""
        with self._lock:
            contexts = list(self.ctxts.values())
        for ctx in contexts:
            ctx.session.cancel()
        with self._lock:
            requests = list(self._requests)
        for request in requests:  # a handler blocked reading its client wakes up and ends
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        with self._lock:
            self._requests.add(request)
        super().process_request(request, client_address)

    def replaced(self, old: socket.socket, new: socket.socket) -> None:
        """A client's socket now wrapped in TLS (the plain one is detached)."""
        with self._lock:
            self._requests.discard(old)
            self._requests.add(new)

    def shutdown_request(self, request) -> None:  # noqa: ANN001
        with self._lock:
            self._requests.discard(request)
        super().shutdown_request(request)


def is_loopback(host: str) -> bool:
    """True for a host that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, verifier: Verifier | None, allow_no_password: bool) -> None:
    """No password: refuse to listen beyond this machine unless explicitly allowed."""
    if verifier is None and not is_loopback(host) and not allow_no_password:
        raise CommandError(f"no password is set, so fedquery serve listens on 127.0.0.1 only; "
                           f"set {ENV} to serve {host} (or pass --allow-no-password to let "
                           "anyone who can reach it in)")


def serve(catalog: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
          tls_cert: str | None = None, tls_key: str | None = None,
          allow_no_password: bool = False, verifier: Verifier | None = None) -> None:
    """Run the endpoint until Ctrl-C or SIGTERM, then stop cleanly: running queries are
    cancelled, clients disconnected, the fedquery connection closed."""
    import fedquery

    check_exposure(host, verifier, allow_no_password)
    tls = _tls(tls_cert, tls_key)
    with fedquery.connect(catalog) as connection:
        try:
            server = Server(connection, (host, port), verifier=verifier, tls=tls)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        _run(server)


def _tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    import ssl

    if not cert and not key:
        return None
    if not (cert and key):
        raise CommandError("TLS needs both --tls-cert and --tls-key")
    try:
        return tls_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot load the TLS certificate {cert} and key {key}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None


def _run(server: Server) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                            name="fedquery-serve")
    loop.start()
    bound_host, bound_port = server.server_address[:2]
    tls = ", TLS" if server.tls is not None else ""
    auth = "password (SCRAM-SHA-256)" if server.verifier is not None else "no password"
    print(f"fedquery serve: listening on {bound_host}:{bound_port} ({auth}{tls}); "
          "Ctrl-C stops", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.stop_clients()
        loop.join()
        server.server_close()
        print("fedquery serve: stopped", flush=True)
