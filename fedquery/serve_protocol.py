"""The connection handler of ``fedquery serve``: buenavista's, with what fedquery needs.

buenavista (``buenavista.postgres.BuenaVistaHandler``) gives the PostgreSQL message codes,
the messages it sends (ParseComplete, BindComplete, CommandComplete, ReadyForQuery, ...),
Parse and the prepared-statement and portal bookkeeping. This subclass replaces the parts
that do not hold up for a shared, password-protected server:

- startup: TLS (answers SSLRequest with ``S`` and wraps the socket), GSSENCRequest refused,
  a cancel request that cancels the running query (buenavista closes the session instead);
- authentication: SCRAM-SHA-256 against a verifier (``serve_auth``) instead of md5 over a
  plain password compared with ``==``;
- errors: ErrorResponse with severity, SQLSTATE and position (buenavista sends a message
  only), and messages after an extended-protocol error skipped until Sync;
- values: parameters decoded by their declared types and rows encoded a batch at a time by
  ``serve_types`` (buenavista parses every untyped parameter as a date and writes one
  socket call per row), NoData and EmptyQueryResponse where the protocol wants them;
- a client that disconnects while its query runs has the query cancelled.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import select
import socket
import ssl
import struct
import sys
import threading
from typing import TYPE_CHECKING

from buenavista.postgres import BuenaVistaHandler, BVContext, ClientCommand, ServerResponse

from fedquery.errors import FedQueryError
from fedquery.serve_auth import MECHANISM, AuthFailed, ScramExchange
from fedquery.serve_errors import ErrorFields, ProtocolViolation, error_fields
from fedquery.serve_params import decode
from fedquery.serve_session import Answer
from fedquery.serve_statements import SessionState
from fedquery.serve_types import TEXT

if TYPE_CHECKING:
    from fedquery.serve import Server

logger = logging.getLogger("fedquery.serve")
SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
PROTOCOL_3 = 3
MAX_MESSAGE = 1 << 30
WATCH_SECONDS = 0.2
HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


class ClientGone(Exception):
    """The client closed the connection (or its socket failed)."""


class Context(BVContext):
    """buenavista's per-connection state, plus the SCRAM exchange under way."""

    scram: ScramExchange | None = None
    scram_started = False


class Handler(BuenaVistaHandler):
    """One client connection, from startup to Terminate."""

    server: Server
    tls = False

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self._streams()

    def _streams(self) -> None:
        self.rfile = self.request.makefile("rb")
        self.wfile = self.request.makefile("wb", buffering=1 << 16)

    def finish(self) -> None:
        for stream in (self.wfile, self.rfile):
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def handle(self) -> None:
        ctx = None
        hung_up = threading.Event()
        try:
            ctx = self.handle_startup(self.server.conn)
            if ctx is not None:
                threading.Thread(target=self._watch, args=(ctx, hung_up), daemon=True,
                                 name="fedquery-serve-watch").start()
            while ctx is not None and self._serve_one(ctx):
                pass
        except (ClientGone, OSError, EOFError):
            pass  # the client went away; its queries are cancelled below
        except AuthFailed as exc:
            logger.warning("password authentication failed for user %r from %s",
                           ctx.params.get("user", "") if ctx else "", self.client_address[0])
            self._quietly_send_error(exc)
        except FedQueryError as exc:  # a broken protocol: say why, then hang up
            self._quietly_send_error(exc, fatal=True)
        finally:
            hung_up.set()
            if ctx is not None:
                self.server.forget(ctx)
                ctx.session.close()

    # ------------------------------------------------------------------ reading

    def _read(self, count: int) -> bytes:
        data = self.rfile.read(count)
        if len(data) != count:
            raise ClientGone()
        return data

    def _serve_one(self, ctx: Context) -> bool:
        """Read and handle one message; False at Terminate or end of stream."""
        code = self.rfile.read(1)
        if not code or code == ClientCommand.TERMINATE:
            return False
        length = struct.unpack("!i", self._read(4))[0]
        if not 4 <= length <= MAX_MESSAGE:
            raise ProtocolViolation(f"a message of length {length}")
        payload = self._read(length - 4)
        if not ctx.authenticated:
            if code != ClientCommand.PASSWORD_MESSAGE:
                raise ProtocolViolation("a message before authentication ended")
            self.handle_password(ctx, payload)
        elif code == ClientCommand.SYNC:
            self._sync(ctx)
        elif ctx.has_error:
            pass  # after an error, the extended protocol skips every message until Sync
        elif code == ClientCommand.FLUSH:
            self.wfile.flush()
        else:
            self._dispatch(ctx, code, payload)
        return True

    def _dispatch(self, ctx: Context, code: bytes, payload: bytes) -> None:
        handlers = {ClientCommand.QUERY: self.handle_query, ClientCommand.PARSE: self.handle_parse,
                    ClientCommand.BIND: self.handle_bind, ClientCommand.DESCRIBE: self.handle_describe,
                    ClientCommand.EXECUTE: self.handle_execute, ClientCommand.CLOSE: self.handle_close}
        handler = handlers.get(code)
        if handler is None:
            raise ProtocolViolation(f"unsupported message type {code!r}")
        try:
            handler(ctx, payload)
        except (ClientGone, OSError):
            raise
        except FedQueryError as exc:
            self.send_error(exc, ctx)
        except (ValueError, IndexError, KeyError, struct.error, UnicodeDecodeError) as exc:
            self.send_error(ProtocolViolation(f"malformed {code.decode()} message "
                                              f"({type(exc).__name__})"), ctx)
        except Exception as exc:  # a bug: the client gets XX000, the server's log the traceback
            logger.exception("fedquery serve: internal error")
            self.send_error(exc, ctx)

    # ------------------------------------------------------------------ startup

    def handle_startup(self, conn) -> Context | None:  # noqa: ANN001 - buenavista's signature
        while True:
            length, code = struct.unpack("!ii", self._read(8))
            if code == SSL_REQUEST:
                self._answer_tls()
            elif code == GSSENC_REQUEST:
                self.request.sendall(b"N")
            elif code == CANCEL_REQUEST:
                process, key = struct.unpack("!II", self._read(8))
                self.server.cancel(process, key)
                return None
            elif code >> 16 == PROTOCOL_3 and 8 <= length <= 1 << 16:
                return self._start_session(self._read(length - 8))
            else:
                raise ProtocolViolation(f"unsupported startup message (code {code})")

    def _answer_tls(self) -> None:
        if self.server.tls is None:
            self.request.sendall(b"N")
            return
        self.request.sendall(b"S")
        plain, self.request = self.request, self.server.tls.wrap_socket(self.request,
                                                                        server_side=True)
        self.server.replaced(plain, self.request)
        self.tls = True
        self._streams()

    def _start_session(self, body: bytes) -> Context | None:
        words = [w.decode() for w in body.split(b"\x00")]
        params = dict(zip(words[::2], words[1::2], strict=False))
        if self.server.tls is not None and not self.tls:
            self._quietly_send_error(_refusal("28000", "this server accepts TLS connections only;"
                                              " connect with sslmode=require"), fatal=True)
            return None
        state = SessionState(user=params.get("user", ""), database=params.get("database", ""))
        if params.get("application_name"):
            state.settings["application_name"] = params["application_name"]
        ctx = Context(self.server.conn.open_session(state), None, params)
        self.server.remember(ctx)
        self.send_auth_request(ctx)
        return ctx

    def send_auth_request(self, ctx: Context) -> None:
        if self.server.verifier is None:
            self.send_authentication_ok()
            self.handle_post_auth(ctx)
            return
        ctx.scram = ScramExchange(self.server.verifier)
        self._auth(10, MECHANISM.encode() + b"\x00\x00")  # AuthenticationSASL

    def handle_password(self, ctx: Context, payload: bytes) -> None:
        """The SASLInitialResponse, then the SASLResponse, of SCRAM-SHA-256."""
        if ctx.scram is None:
            raise ProtocolViolation("a password message, but no password was asked for")
        if not ctx.scram_started:
            mechanism, _, rest = payload.partition(b"\x00")
            if mechanism.decode() != MECHANISM or len(rest) < 4:
                raise AuthFailed("unsupported SASL mechanism")
            size = struct.unpack("!i", rest[:4])[0]
            ctx.scram_started = True
            self._auth(11, ctx.scram.first(rest[4:4 + size].decode()).encode())
            return
        self._auth(12, ctx.scram.final(payload.decode()).encode())
        self.send_authentication_ok()
        self.handle_post_auth(ctx)

    def _auth(self, kind: int, data: bytes) -> None:
        self.wfile.write(struct.pack("!cii", ServerResponse.AUTHENTICATION_REQUEST,
                                     8 + len(data), kind) + data)
        self.wfile.flush()

    def handle_post_auth(self, ctx: Context) -> None:
        self.send_parameter_status(ctx.session.state.reported())
        self.send_backend_key_data(ctx)
        ctx.authenticated = True
        self.send_ready_for_query(ctx)

    # ------------------------------------------------------------------ queries

    def handle_query(self, ctx: Context, payload: bytes) -> None:
        """A simple-protocol query: rows and CommandComplete, or an error; then ready."""
        sql = payload.rstrip(b"\x00").decode()
        try:
            reply = ctx.session.execute(sql)
            self._send_answer(ctx, reply, describe=True)
        except FedQueryError as exc:
            self.send_error(ctx.session.translated(exc), query=sql)
        except (ClientGone, OSError):
            raise
        except Exception as exc:  # a bug: the client gets XX000, the server's log the traceback
            logger.exception("fedquery serve: internal error")
            self.send_error(exc)
        self.send_ready_for_query(ctx)

    def handle_bind(self, ctx: Context, payload: bytes) -> None:
        portal, rest = _cstring(payload)
        statement, rest = _cstring(rest)
        sql, oids = ctx.stmts[statement]
        count, rest = _int16(rest)
        formats = list(struct.unpack(f"!{count}h", rest[:2 * count]))
        rest = rest[2 * count:]
        total, rest = _int16(rest)
        formats = formats * total if len(formats) == 1 else formats or [0] * total
        values = []
        for i in range(total):
            size = struct.unpack("!i", rest[:4])[0]
            value, rest = (None, rest[4:]) if size < 0 else (rest[4:4 + size], rest[4 + size:])
            oid = oids[i] if i < len(oids) else 0
            values.append(decode(value, oid, formats[i] == 1))
        count, rest = _int16(rest)
        result_formats = list(struct.unpack(f"!{count}h", rest[:2 * count]))
        self._drop_portal(ctx, portal)
        ctx.add_portal(portal, statement, values, result_formats)
        self.send_bind_complete()

    def handle_describe(self, ctx: Context, payload: bytes) -> None:
        kind, name = payload[:1], payload[1:].rstrip(b"\x00").decode()
        if kind == b"S":
            self._describe_statement(ctx, name)
            return
        statement, params, result_formats = ctx.portals[name]
        sql = ctx.stmts[statement][0]
        reply = ctx.session.execute(sql, params)
        reply.result_format = result_formats
        ctx.result_cache[name] = reply
        self._describe(reply)

    def _describe_statement(self, ctx: Context, name: str) -> None:
        """ParameterDescription, then the row description of the query planned with NULL
        parameters and no rows (``LIMIT 0``), or NoData."""
        from fedquery.preview import limited_query

        sql, oids = ctx.stmts[name]
        count = max(len(oids), _placeholders(sql))
        declared = [(oids[i] if i < len(oids) and oids[i] else TEXT) for i in range(count)]
        self.send_paramter_description(declared)
        limited = limited_query(sql, 0) or sql
        reply = ctx.session.execute(limited, [None] * count)
        reply.cancel()
        ctx.session.done(reply)
        self._describe(reply)

    def _describe(self, reply: Answer) -> None:
        if reply.has_results():
            self.send_row_description(reply)
        else:
            self.wfile.write(struct.pack("!ci", ServerResponse.NO_DATA, 4))

    def handle_execute(self, ctx: Context, payload: bytes) -> None:
        portal, rest = _cstring(payload)
        limit = struct.unpack("!i", rest[:4])[0]
        reply = ctx.result_cache.pop(portal, None)
        if reply is None:
            statement, params, result_formats = ctx.portals[portal]
            reply = ctx.session.execute(ctx.stmts[statement][0], params)
            reply.result_format = result_formats
        try:
            suspended = self._send_answer(ctx, reply, describe=False, limit=max(limit, 0))
        except FedQueryError as exc:
            raise ctx.session.translated(exc) from None
        if suspended:
            ctx.result_cache[portal] = reply

    def handle_close(self, ctx: Context, payload: bytes) -> None:
        kind, name = payload[:1], payload[1:].rstrip(b"\x00").decode()
        if kind == b"S":
            ctx.stmts.pop(name, None)
        else:
            self._drop_portal(ctx, name)
            ctx.portals.pop(name, None)
        self.send_close_complete()

    def _sync(self, ctx: Context) -> None:
        ctx.sync()
        self._drop_portal(ctx, "")  # the unnamed portal ends with its Sync
        self.send_ready_for_query(ctx)

    def _drop_portal(self, ctx: Context, name: str) -> None:
        reply = ctx.result_cache.pop(name, None)
        if reply is not None:
            reply.cancel()
            ctx.session.done(reply)

    # ------------------------------------------------------------------ sending

    def _send_answer(self, ctx: Context, reply: Answer, *, describe: bool, limit: int = 0) -> bool:
        """RowDescription (simple protocol), DataRows, then CommandComplete, or
        PortalSuspended when ``limit`` rows were sent and more may follow (True)."""
        if reply.empty:
            self.wfile.write(struct.pack("!ci", ServerResponse.EMPTY_QUERY_RESPONSE, 4))
            return False
        try:
            if reply.has_results():
                if describe:
                    self.send_row_description(reply)
                for chunk in reply.row_messages(limit):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                if not reply.finished:
                    self.send_portal_suspend()
                    return True
            self.send_command_complete(reply.status() + "\x00")
        except BaseException:
            reply.cancel()
            raise
        finally:
            if reply.finished or not reply.has_results() or sys.exc_info()[0] is not None:
                ctx.session.done(reply)
        return False

    def send_row_description(self, query_result: Answer) -> None:
        formats = query_result.formats()
        body = b"".join(column.name.encode() + b"\x00"
                        + struct.pack("!ihihih", 0, 0, column.oid, -1, -1, formats[i])
                        for i, column in enumerate(query_result.columns))
        self.wfile.write(struct.pack("!cih", ServerResponse.ROW_DESCRIPTION, len(body) + 6,
                                     len(query_result.columns)) + body)

    def send_ready_for_query(self, ctx: Context | None) -> None:
        super().send_ready_for_query(ctx)
        self.wfile.flush()

    def send_error(self, exception: BaseException, ctx: Context | None = None, *,
                   query: str | None = None, fatal: bool = False) -> None:
        fields = (exception if isinstance(exception, ErrorFields)
                  else error_fields(exception, query))
        severity = "FATAL" if fatal else fields.severity
        parts = [(b"S", severity), (b"V", severity), (b"C", fields.code), (b"M", fields.message)]
        if fields.detail:
            parts.append((b"D", fields.detail))
        if fields.position:
            parts.append((b"P", str(fields.position)))
        body = b"".join(tag + text.encode() + b"\x00" for tag, text in parts) + b"\x00"
        self.wfile.write(struct.pack("!ci", ServerResponse.ERROR_RESPONSE, len(body) + 4) + body)
        self.wfile.flush()
        if ctx is not None:
            ctx.mark_error()

    def _quietly_send_error(self, exc: BaseException | ErrorFields, *, fatal: bool = False) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send_error(exc, fatal=fatal)

    # ------------------------------------------------------------------ disconnects

    def _watch(self, ctx: Context, stop: threading.Event) -> None:
        """Until ``stop``: when the client hangs up (even while its query runs and nothing
        reads its socket), cancel its session's queries. One such thread a client."""
        poller = select.poll()
        try:
            poller.register(self.request.fileno(), HANGUP)
        except (OSError, ValueError):
            return
        while not stop.is_set():
            if poller.poll(WATCH_SECONDS * 1000):
                ctx.session.cancel()
                return


def _cstring(data: bytes) -> tuple[str, bytes]:
    end = data.index(b"\x00")
    return data[:end].decode(), data[end + 1:]


def _int16(data: bytes) -> tuple[int, bytes]:
    return struct.unpack("!h", data[:2])[0], data[2:]


def _placeholders(sql: str) -> int:
    """The highest ``$n`` in the query (0 without any)."""
    import re

    return max((int(n) for n in re.findall(r"\$(\d+)", sql)), default=0)


def _refusal(code: str, message: str) -> ErrorFields:
    return ErrorFields(code, message, severity="FATAL")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context from a certificate and its key (PEM files), TLS 1.2 or newer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def same_key(expected: int, given: int) -> bool:
    """A cancel request's secret key, compared in constant time."""
    return hmac.compare_digest(expected.to_bytes(4, "big"), given.to_bytes(4, "big"))
