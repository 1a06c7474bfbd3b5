"""``fedquery serve`` run as the command line runs it, in a subprocess, for the tests.

``ServeProcess(catalog, password=..., args=[...])`` starts ``python -m fedquery.cli serve
CATALOG --port 0`` (any free port), waits for its "listening on" line and knows the port;
``stop()`` sends SIGTERM and returns the exit code and what it printed. ``dsn(...)`` gives a
libpq connection string for psql and psycopg.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (?P<host>[\w.:]+):(?P<port>\d+)")
START_SECONDS = 60


class ServeProcess:
    """A running ``fedquery serve``."""

    def __init__(self, catalog: Path | dict, *, password: str | None = None,
                 args: tuple[str, ...] = (), tmp: Path | None = None) -> None:
        if isinstance(catalog, dict):
            path = (tmp or Path.cwd()) / "serve-catalog.yaml"
            path.write_text(yaml.safe_dump(catalog))
            catalog = path
        env = {k: v for k, v in os.environ.items() if k != "FEDQUERY_SERVE_PASSWORD"}
        if password is not None:
            env["FEDQUERY_SERVE_PASSWORD"] = password
        env["PYTHONPATH"] = str(ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fedquery.cli", "serve", str(catalog), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait_for_port()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _wait_for_port(self) -> int | None:
        """The port from the "listening on" line; None when the command ended first."""
        while True:
            try:
                line = self.lines.get(timeout=START_SECONDS)
            except queue.Empty:
                self.process.kill()
                raise AssertionError("fedquery serve did not start") from None
            if line is None:
                self.lines.put(None)  # for stop(), which reads to the end
                return None
            self.output.append(line)
            match = LISTENING.search(line)
            if match:
                return int(match["port"])

    def dsn(self, *, user: str = "analyst", password: str | None = None, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": user, "dbname": "shop",
                 "connect_timeout": "10", **extra}
        if password is not None:
            parts["password"] = password
        return " ".join(f"{k}={_quoted(v)}" for k, v in parts.items())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str, str]:
        """Signal the server and wait for it: (exit code, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"fedquery serve did not stop on signal {sig}") from None
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)
        return self.process.returncode, "".join(self.output), self.process.stderr.read()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.stop()


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def psql(dsn: str, sql: str, *, password: str | None = None) -> subprocess.CompletedProcess:
    """``psql -c`` with unaligned output (``|`` between fields, no header), never prompting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(["psql", "-X", "-w", "-A", "-t", "-F", "|", "-d", dsn, "-c", sql],
                          capture_output=True, text=True, timeout=120, env=env)
