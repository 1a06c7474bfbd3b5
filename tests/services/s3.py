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
import os
import re
import zlib
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
    """The first retry proxy's interface, on ``FaultProxy``: the next ``failures`` requests are
    answered ``503 Slow Down`` (the transient error S3 sends under load), so a client that
    retries gets through on a later attempt. ``fail_next(count, only=...)`` fails the next
    ``count`` requests whose path contains ``only`` (an object's key, to fail reads and not
    listings); ``injected`` counts the failures sent, ``relayed`` the requests passed on.
    """

    def __init__(self, endpoint: str, failures: int = 0) -> None:
        from tests.services.s3_faults import FaultProxy

        self._proxy = FaultProxy(endpoint)
        self.url = self._proxy.url
        if failures:
            self.fail_next(failures)

    def fail_next(self, count: int, *, only: str | None = None) -> None:
        self._proxy.inject("503", count=count, match=re.escape(only) if only else None)

    @property
    def injected(self) -> int:
        self._proxy.wait_idle()
        return self._proxy.injected["503"]

    @property
    def relayed(self) -> int:
        self._proxy.wait_idle()
        return sum(self._proxy.requests.values()) - self._proxy.injected["503"]

    def close(self) -> None:
        self._proxy.close()
