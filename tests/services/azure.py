"""An Azure Blob Storage emulator for the tests: Azurite (npm) on 127.0.0.1, per session.

``azurite_endpoint`` yields the emulator's URL; ``AZURITE_ACCOUNT`` and ``AZURITE_KEY`` are its
well-known development account (public, not a secret). Azurite is found on PATH, in
``FEDQUERY_AZURITE`` (a folder holding ``node_modules/.bin/azurite-blob``), or installed once with
npm into ``~/.cache/fedquery/azurite``. Skipped without node/npm locally, failed in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.services import unavailable
from tests.services.launch import _stop, free_port

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
VERSION = "3.37.0"
START_TIMEOUT = 30.0


def azurite_executable() -> str | None:
    """``azurite-blob``: on PATH, in FEDQUERY_AZURITE, or installed with npm into the cache."""
    found = shutil.which("azurite-blob")
    if found:
        return found
    folders = [Path(os.environ["FEDQUERY_AZURITE"])] if os.environ.get("FEDQUERY_AZURITE") else []
    cache = Path.home() / ".cache" / "fedquery" / "azurite"
    for folder in [*folders, cache]:
        candidate = folder / "node_modules" / ".bin" / "azurite-blob"
        if candidate.exists():
            return str(candidate)
    if shutil.which("npm") is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                           str(cache), f"azurite@{VERSION}"], capture_output=True, timeout=600)
    candidate = cache / "node_modules" / ".bin" / "azurite-blob"
    return str(candidate) if done.returncode == 0 and candidate.exists() else None


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def azurite_endpoint() -> str:
    executable = azurite_executable()
    if executable is None:
        unavailable("Azurite is not installed and npm cannot install it")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fedquery-azurite-") as data, \
            tempfile.TemporaryFile() as log:
        process = subprocess.Popen([executable, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                    "--location", data, "--skipApiVersionCheck", "--loose"],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _listening(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    unavailable(f"Azurite did not start: {log.read().decode(errors='replace')[-500:]}")
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


def azure_filesystem(endpoint: str):
    """pyarrow's filesystem on the emulator's account, to write test data."""
    import pyarrow.fs as pafs

    authority = endpoint.split("://", 1)[1]
    return pafs.AzureFileSystem(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                                blob_storage_authority=authority, blob_storage_scheme="http",
                                dfs_storage_authority=authority, dfs_storage_scheme="http")
