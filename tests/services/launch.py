"""Start and stop the real services the tests and the benchmarks use; no pytest here.

``moto_server()`` runs an S3-compatible server on a free port of 127.0.0.1 and yields its URL;
``postgres_server()`` runs PostgreSQL from pgserver in a temporary folder and yields its DSN.
Both raise ``ServiceError`` when the service cannot start; the test fixtures turn that into a
skip (or a failure under CI=true), the benchmarks into an error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 30.0


class ServiceError(RuntimeError):
    """A service could not be started or reached."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """True once an HTTP server answers at ``url`` (any status)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def moto_server_executable() -> str | None:
    """``moto_server`` installed next to the running interpreter (the venv's bin), or on PATH."""
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``moto_server`` on a free port of 127.0.0.1; yield its URL; stop it afterwards."""
    executable = moto_server_executable()
    if executable is None:
        raise ServiceError("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The server logs every request: to a file, as an unread pipe would fill and stall it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise ServiceError(f"moto_server did not start on {url}: "
                                       f"{log.read().decode(errors='replace')[-500:]}")
                time.sleep(0.1)
            yield url
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def postgres_server(prefix: str = "fedquery-pg-") -> Iterator[str]:
    """PostgreSQL from pgserver on a unix socket in a temporary folder; yield its DSN.

    The folder is made with ``mkdtemp``, not under pytest's ``basetemp``: as root, pgserver runs
    PostgreSQL as another user and opens the folder's parents to it, and every pytest session
    that starts meanwhile closes ``/tmp/pytest-of-<user>`` again (mode 0700).
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise ServiceError("pgserver is not installed (pip install pgserver)") from exc
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = pgserver.get_server(folder / "data", cleanup_mode="delete")
    except Exception as exc:  # pgserver raises whatever initdb or pg_ctl raised
        shutil.rmtree(folder, ignore_errors=True)
        raise ServiceError(f"pgserver could not start PostgreSQL in {folder}: {exc}") from exc
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
