"""An S3-compatible HTTP server for the tests: ``moto_server`` on 127.0.0.1, started per session.

Fixtures: ``s3_endpoint`` (the server's URL), ``s3_credentials`` (dummy keys, also set in the
environment for ``${VAR}`` catalogs), ``s3_strict_endpoint`` (a second server that checks
credentials, so wrong keys are refused). ``FEDQUERY_TEST_S3_ENDPOINT`` points the tests at a
server you run yourself instead. ``s3_faults`` is a ``tests.services.s3_faults.FaultProxy`` in
front of the server (503s, stalls, resets, cut bodies, refused connections, counts of requests
and bytes), for one test. Helpers: ``upload_tree`` copies a local folder into a bucket,
``FlakyProxy`` relays requests to the real server but answers chosen ones with ``503 Slow
Down`` (a transient S3 error), to test retries.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.services import launch, unavailable
from tests.services.launch import ServiceError, answers

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fedquery-test-key", "AWS_SECRET_ACCESS_KEY": "fedquery-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None):
    """``launch.moto_server``, skipped (or failed in CI) when it cannot start."""
    try:
        with launch.moto_server(env) as url:
            yield url
    except ServiceError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """The URL of an S3-compatible server on 127.0.0.1 (``moto_server``), for the session."""
    external = os.environ.get("FEDQUERY_TEST_S3_ENDPOINT")
    if external:
        if not answers(external):
            unavailable(f"FEDQUERY_TEST_S3_ENDPOINT={external} does not answer")
        yield external
        return
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_strict_endpoint() -> str:
    """A second ``moto_server`` that checks credentials: unknown keys get ``403 Forbidden``."""
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as url:
        yield url


@pytest.fixture()
def s3_faults(request: pytest.FixtureRequest, s3_endpoint: str):
    """A fault-injecting proxy in front of the S3 server, for one test (seeded by its name)."""
    from tests.services.s3_faults import FaultProxy

    seed = zlib.crc32(request.node.nodeid.encode())
    with FaultProxy(s3_endpoint, seed=seed) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def s3_credentials() -> dict[str, str]:
    """Dummy AWS credentials, set in the environment for the session (``${AWS_...}``)."""
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield dict(CREDENTIALS)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3_client(endpoint: str):
    """A boto3 S3 client for the test server."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def upload_tree(local_dir: str | os.PathLike, bucket: str, prefix: str = "", *,
                endpoint: str) -> list[str]:
    """Copy every file under ``local_dir`` to ``s3://bucket/prefix/...``; return the keys.

    The bucket is created when missing.
    """
    client = s3_client(endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                             client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=bucket)
    root, keys = Path(local_dir), []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(root).as_posix()]))
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


class FlakyProxy:
    """An HTTP relay to an S3 server that answers the next ``failures`` requests with a 503.

    ``503 Slow Down`` is the transient error S3 sends under load: a client that retries gets
    through on a later attempt. One request per connection, so a failure can be injected at any
    point of a query (``fail_next``); ``injected`` counts the failures sent, ``relayed`` the
    requests passed on.
    """

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")

    def __init__(self, endpoint: str, failures: int = 0) -> None:
        host, port = endpoint.split("://", 1)[1].rstrip("/").rsplit(":", 1)
        self.target, self.failures, self.injected, self.relayed = (host, int(port)), failures, 0, 0
        self.only: str | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), type("Relay", (_Relay,), {"proxy": self}))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail_next(self, count: int, *, only: str | None = None) -> None:
        """Answer the next ``count`` requests with ``503 Slow Down`` (those whose request line
        contains ``only``, when given: an object's key, to fail reads and not listings)."""
        with self._lock:
            self.failures, self.only = self.failures + count, only

    def take_failure(self, request_line: str = "") -> bool:
        with self._lock:
            fail = self.failures > 0 and (self.only is None or self.only in request_line)
            self.failures -= fail
            self.injected += fail
            self.relayed += not fail
            return fail

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Relay(BaseHTTPRequestHandler):
    """Pass one request on to the S3 server (or fail it), then close the connection."""

    proxy: FlakyProxy
    _SKIP = {"connection", "transfer-encoding", "content-length", "date", "server", "keep-alive"}

    def relay(self) -> None:
        if self.proxy.take_failure(self.requestline):
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(FlakyProxy.BODY)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(FlakyProxy.BODY)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(*self.proxy.target, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in self._SKIP:
                self.send_header(name, value)
        size = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", size or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay

    def log_message(self, format: str, *args: object) -> None:
        pass
