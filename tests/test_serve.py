"""``fedquery serve`` from the outside: the command run as a user runs it, queried by ``psql``
and psycopg over the shop catalog federated across the test PostgreSQL and S3 servers.

What a client gets must be what fedquery gives in-process: the same rows for a federated
query, the sandbox's refusals as errors with their SQLSTATE, right answers for 16 clients at
once; a wrong or missing password is refused, TLS works when given a certificate.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

import fedquery
from tests.serve_process import ServeProcess, psql
from tests.services.postgres import shop_on_postgres_and_s3

PASSWORD = "correct horse battery staple"
FEDERATED = ("SELECT c.country, count(*) AS orders, sum(o.qty) AS qty "
             "FROM orders o JOIN clients c USING (customer_id) "
             "WHERE o.region = 'east' GROUP BY c.country ORDER BY c.country NULLS LAST")


@pytest.fixture(scope="module")
def federated(postgres_database, unseen, unseen_root, s3_endpoint, s3_credentials) -> dict:
    """The shop catalog: warehouse tables in PostgreSQL, the lake on the S3 server."""
    return shop_on_postgres_and_s3(postgres_database, unseen, unseen_root, s3_endpoint,
                                   s3_credentials, "serve-lake")


@pytest.fixture(scope="module")
def in_process(federated):
    with fedquery.connect(federated) as con:
        yield con


@pytest.fixture(scope="module")
def server(federated, tmp_path_factory):
    """``fedquery serve`` over the federated catalog, with a password."""
    with ServeProcess(federated, password=PASSWORD, tmp=tmp_path_factory.mktemp("serve")) as proc:
        assert proc.port, proc.output
        yield proc


def connect(server: ServeProcess, **kwargs) -> psycopg.Connection:
    return psycopg.connect(server.dsn(password=PASSWORD), autocommit=True, **kwargs)


def numbered(query: str) -> str:
    """psycopg's ``%s`` placeholders as the ``$1, $2, ...`` it sends to the server."""
    parts = query.split("%s")
    return "".join(f"{part}${i + 1}" for i, part in enumerate(parts[:-1])) + parts[-1]


# ---------------------------------------------------------------------- federated queries


def test_psql_runs_a_federated_query(server, in_process) -> None:
    done = psql(server.dsn(), FEDERATED, password=PASSWORD)
    assert done.returncode == 0, done.stderr
    got = [line.split("|") for line in done.stdout.splitlines() if line]
    want = [[("" if v is None else str(v)) for v in row] for row in in_process.sql(FEDERATED).fetchall()]
    assert got == want
    assert len(want) > 3


def test_psycopg_runs_a_federated_query_with_bound_parameters(server, in_process) -> None:
    query = ("SELECT c.country, count(*) AS orders, sum(o.qty) AS qty "
             "FROM orders o JOIN clients c USING (customer_id) "
             "WHERE o.region = %s AND c.segment = %s GROUP BY 1 ORDER BY 1 NULLS LAST")
    with connect(server) as con:
        got = con.execute(query, ["east", "corporate"]).fetchall()
        other = con.execute(query, ["west", "consumer"]).fetchall()
    want = in_process.sql(numbered(query), ["east", "corporate"]).fetchall()
    assert got == want and got
    assert other == in_process.sql(numbered(query), ["west", "consumer"]).fetchall()
    assert other != got


def test_a_query_read_by_psycopg_streams_in_batches_and_agrees(server, in_process) -> None:
    """Every order (more rows than one Arrow batch holds) arrives, in order, as in-process."""
    query = "SELECT order_id, customer_id, qty, ordered_at, note FROM orders ORDER BY order_id"
    with connect(server) as con, con.cursor() as cur:
        cur.execute(query)
        got = []
        while rows := cur.fetchmany(700):
            got += rows
    assert got == in_process.sql(query).fetchall()


# ---------------------------------------------------------------------- errors and sandbox

REFUSED = [
    "COPY clients TO '/tmp/fedquery-serve-copy.csv'",
    "ATTACH '/tmp/fedquery-serve-attach.duckdb' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "CREATE TABLE stolen AS SELECT * FROM clients",
    "DROP TABLE clients",
    "INSERT INTO clients VALUES (1, 'x', 'y', 'z')",
    "PRAGMA database_list",
    "SELECT * FROM information_schema.tables JOIN clients ON true",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_sandbox_refusals_reach_psycopg_as_insufficient_privilege(server, in_process,
                                                                     statement) -> None:
    """Each refusal is fedquery's own (the message in-process), under SQLSTATE 42501."""
    with connect(server) as con, pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        con.execute(statement)
    with pytest.raises(fedquery.ForbiddenError) as own:
        in_process.sql(statement)
    assert caught.value.sqlstate == "42501"
    assert caught.value.diag.message_primary == str(own.value).splitlines()[0]
    assert not Path("/tmp/fedquery-serve-copy.csv").exists()
    assert not Path("/tmp/fedquery-serve-attach.duckdb").exists()


def test_psql_shows_a_refusal_as_an_error(server) -> None:
    done = psql(server.dsn(), "COPY clients TO '/tmp/fedquery-serve-copy.csv'", password=PASSWORD)
    assert done.returncode == 1
    assert "ERROR:  COPY is not allowed" in done.stderr
    assert not Path("/tmp/fedquery-serve-copy.csv").exists()


@pytest.mark.parametrize(("statement", "error", "code"), [
    ("SELEC 1", psycopg.errors.SyntaxError, "42601"),
    ("SELECT * FROM clients WHERE", psycopg.errors.SyntaxError, "42601"),
    ("SELECT * FROM nowhere", psycopg.errors.UndefinedTable, "42P01"),
    ("SELECT no_such_column FROM clients", psycopg.errors.UndefinedColumn, "42703"),
    ("SHOW no_such_setting", psycopg.errors.UndefinedObject, "42704"),
])
def test_errors_carry_their_sqlstate(server, statement, error, code) -> None:
    with connect(server) as con, pytest.raises(error) as caught:
        con.execute(statement)
    assert caught.value.sqlstate == code
    assert "Traceback" not in str(caught.value)


def test_a_syntax_error_has_its_position_and_the_session_goes_on(server) -> None:
    with connect(server) as con:
        with pytest.raises(psycopg.errors.SyntaxError) as caught:
            con.execute("SELECT 1,\n  2 FORM clients")
        assert caught.value.diag.statement_position is not None
        assert con.execute("SELECT count(*) FROM clients").fetchone() == (600,)


def test_a_source_failure_names_the_source_without_its_secrets(server, federated) -> None:
    """A table of the PostgreSQL source that does not exist there: a SourceError or
    PlanError, never the DSN's password or the S3 keys."""
    with connect(server) as con, pytest.raises(psycopg.Error) as caught:
        con.execute("SELECT * FROM pg.public.no_such_table")
    text = str(caught.value)
    secret = federated["sources"]["lake"]["options"]["secret"]
    assert secret not in text
    assert caught.value.sqlstate in ("42P01", "58000")


# ---------------------------------------------------------------------- concurrency


def test_sixteen_clients_at_once_get_their_own_right_answers(server, in_process) -> None:
    """Each client's query differs (its number is in its rows), so an answer that went to
    the wrong client, or was mixed with another's, shows."""
    queries = []
    for i in range(16):
        region = ("east", "north", "south", "west")[i % 4]
        if i % 2:
            queries.append(("SELECT %s::int AS client, c.segment, count(*), sum(o.qty) "
                            "FROM orders o JOIN clients c USING (customer_id) "
                            "WHERE o.region = %s AND o.qty > %s GROUP BY 2 ORDER BY 2 NULLS LAST",
                            [i, region, i % 5]))
        else:
            queries.append(("SELECT %s::int AS client, p.category, count(*) FROM orders o "
                            "JOIN products p USING (product_id) WHERE o.region = %s "
                            "AND o.customer_id > %s GROUP BY 2 ORDER BY 2 NULLS LAST",
                            [i, region, i * 20]))
    want = [in_process.sql(numbered(q), p).fetchall() for q, p in queries]
    start = threading.Barrier(16)

    def client(i: int) -> list:
        with connect(server) as con:
            start.wait(timeout=60)
            return [con.execute(*queries[i]).fetchall() for _ in range(3)]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(client, range(16)))
    for i, runs in enumerate(answers):
        assert runs == [want[i]] * 3, queries[i]
    assert len({str(w) for w in want}) == 16


# ---------------------------------------------------------------------- authentication


def test_a_wrong_password_is_refused_with_28P01(server) -> None:
    """psycopg and psql are refused; the ErrorResponse on the wire has SQLSTATE 28P01 (libpq
    does not hand a connection error's SQLSTATE to its caller, so it is read raw)."""
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(server.dsn(password="wrong horse"))
    assert "password authentication failed" in str(caught.value)
    done = psql(server.dsn(), "SELECT 1", password="wrong horse")
    assert done.returncode == 2 and "password authentication failed" in done.stderr
    assert refusal_fields(server.port, "wrong horse") == {
        "S": "FATAL", "V": "FATAL", "C": "28P01", "M": "password authentication failed"}
    assert refusal_fields(server.port, PASSWORD) is None


def test_no_password_is_refused(server) -> None:
    done = psql(server.dsn(), "SELECT 1")
    assert done.returncode == 2
    assert "password" in done.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn(password=""))


def test_the_right_password_is_accepted_whatever_the_user(server) -> None:
    with psycopg.connect(server.dsn(user="someone_else", password=PASSWORD)) as con:
        assert con.execute("SELECT session_user").fetchone() == ("someone_else",)


def test_a_verifier_in_the_environment_serves_as_the_password(unseen, tmp_path) -> None:
    """FEDQUERY_SERVE_PASSWORD may hold a SCRAM-SHA-256 verifier rather than the password."""
    from fedquery.serve_auth import Verifier

    verifier = Verifier.from_password("s3cret-verified").text()
    with ServeProcess(unseen[0], password=verifier, tmp=tmp_path) as proc:
        with psycopg.connect(proc.dsn(password="s3cret-verified")) as con:
            assert con.execute("SELECT count(*) FROM clients").fetchone() == (600,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(proc.dsn(password=verifier))  # the verifier is not the password
        code, _, stderr = proc.stop()
    assert code == 0
    assert "s3cret-verified" not in stderr


def test_without_a_password_it_refuses_to_listen_beyond_loopback(unseen, tmp_path) -> None:
    proc = ServeProcess(unseen[0], args=("--host", "0.0.0.0"), tmp=tmp_path)
    code, _, stderr = proc.stop()
    assert proc.port is None
    assert code == 1
    assert "FEDQUERY_SERVE_PASSWORD" in stderr and "--allow-no-password" in stderr


def test_with_allow_no_password_it_listens_beyond_loopback(unseen, tmp_path) -> None:
    with ServeProcess(unseen[0], args=("--host", "0.0.0.0", "--allow-no-password"),
                      tmp=tmp_path) as proc:
        assert proc.port
        with psycopg.connect(proc.dsn()) as con:
            assert con.execute("SELECT count(*) FROM products").fetchone() == (150,)


def refusal_fields(port: int, password: str) -> dict[str, str] | None:
    """Start a session on a raw socket and answer SCRAM with ``password``: the fields of the
    ErrorResponse that follows, or None when authentication succeeds."""
    import socket
    import struct

    from fedquery.serve_auth import client_messages

    def message(sock) -> tuple[bytes, bytes]:
        head = sock.recv(5, socket.MSG_WAITALL)
        kind, length = head[:1], struct.unpack("!i", head[1:])[0]
        return kind, sock.recv(length - 4, socket.MSG_WAITALL) if length > 4 else b""

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        body = struct.pack("!i", 196608) + b"user\x00analyst\x00database\x00shop\x00\x00"
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        kind, payload = message(sock)
        assert (kind, payload[:4]) == (b"R", struct.pack("!i", 10))  # SASL
        scram = client_messages(password)
        first = next(scram).encode()
        body = b"SCRAM-SHA-256\x00" + struct.pack("!i", len(first)) + first
        sock.sendall(b"p" + struct.pack("!i", len(body) + 4) + body)
        kind, payload = message(sock)
        final = scram.send(payload[4:].decode()).encode()
        sock.sendall(b"p" + struct.pack("!i", len(final) + 4) + final)
        kind, payload = message(sock)
    if kind == b"R":
        return None
    assert kind == b"E"
    return {f[:1].decode(): f[1:].decode() for f in payload.split(b"\x00") if f}


# ---------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_carries_the_session_when_given_a_certificate(unseen, tmp_path, certificate) -> None:
    cert, key = certificate
    with ServeProcess(unseen[0], password=PASSWORD, tmp=tmp_path,
                      args=("--tls-cert", str(cert), "--tls-key", str(key))) as proc:
        with psycopg.connect(proc.dsn(password=PASSWORD, sslmode="require")) as con:
            assert con.pgconn.ssl_in_use
            assert con.execute("SELECT count(*) FROM clients").fetchone() == (600,)
        with psycopg.connect(proc.dsn(password=PASSWORD, sslmode="verify-ca",
                                      sslrootcert=str(cert))) as con:
            assert con.execute("SELECT 41 + 1").fetchone() == (42,)
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(proc.dsn(password=PASSWORD, sslmode="disable"))
        assert "TLS" in str(caught.value)
        done = psql(proc.dsn(sslmode="require"), "SELECT count(*) FROM products", password=PASSWORD)
        assert (done.returncode, done.stdout.strip()) == (0, "150")


def test_a_certificate_without_its_key_is_a_clear_error(unseen, tmp_path, certificate) -> None:
    proc = ServeProcess(unseen[0], args=("--tls-cert", str(certificate[0])), tmp=tmp_path)
    code, _, stderr = proc.stop()
    assert (proc.port, code) == (None, 1)
    assert "--tls-key" in stderr


# ---------------------------------------------------------------------- stopping


def test_sigterm_stops_the_server_cleanly_while_a_query_runs(unseen, tmp_path) -> None:
    with ServeProcess(unseen[0], tmp=tmp_path) as proc:
        con = psycopg.connect(proc.dsn(), autocommit=True)
        failed: list[BaseException] = []

        def long_query() -> None:
            try:
                con.execute("SELECT count(*) FROM orders a, orders b, orders c")
            except psycopg.Error as exc:
                failed.append(exc)

        worker = threading.Thread(target=long_query)
        worker.start()
        _wait_until_running(proc, con)
        code, stdout, stderr = proc.stop(signal.SIGTERM)
        worker.join(60)
        con.close()
    assert code == 0, stderr
    assert "stopped" in stdout
    assert not worker.is_alive() and failed
    assert "Traceback" not in stderr


def _wait_until_running(proc: ServeProcess, con: psycopg.Connection) -> None:
    """Until the connection's query has been sent (the server is busy with it)."""
    import time

    deadline = time.monotonic() + 30
    while con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


def test_decimal_and_null_values_of_the_federation_arrive_typed(server, in_process) -> None:
    query = "SELECT product_id, price FROM products WHERE price IS NULL OR product_id < 5 ORDER BY 1"
    with connect(server) as con:
        got = con.execute(query).fetchall()
    assert got == in_process.sql(query).fetchall()
    assert any(p is None for _, p in got) and any(isinstance(p, Decimal) for _, p in got)


def test_a_verifier_made_by_postgresql_itself_is_accepted(postgres_database, unseen, tmp_path) -> None:
    """The verifier PostgreSQL keeps for a role (``pg_authid.rolpassword``) works as
    FEDQUERY_SERVE_PASSWORD: the same SCRAM-SHA-256 form, read the same way."""
    with postgres_database.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SET password_encryption = 'scram-sha-256'")
        cursor.execute("DROP ROLE IF EXISTS fedquery_serve_probe")
        cursor.execute("CREATE ROLE fedquery_serve_probe PASSWORD 'made by postgres'")
        cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'fedquery_serve_probe'")
        verifier = cursor.fetchall()[0][0]
        cursor.execute("DROP ROLE fedquery_serve_probe")
    assert verifier.startswith("SCRAM-SHA-256$")
    with ServeProcess(unseen[0], password=verifier, tmp=tmp_path) as proc:
        with psycopg.connect(proc.dsn(password="made by postgres")) as con:
            assert con.execute("SELECT count(*) FROM products").fetchone() == (150,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(proc.dsn(password="made by someone else"))
