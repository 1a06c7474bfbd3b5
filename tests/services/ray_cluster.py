"""A real Ray cluster on this machine: a head and worker nodes started with ``ray start``; no pytest.

``ray_cluster(workers=2)`` starts ``ray start --head --block`` (no CPUs, so no task runs on the head;
no dashboard; its own GCS port and its own ``--temp-dir`` under /tmp) and ``workers`` times
``ray start --address=<head> --num-cpus=1 --block``: each worker is a node of its own (its own
raylet, object store and agents) on the same machine. Every port the nodes listen on is free or
chosen by the system, so clusters of other sessions on the machine are not disturbed. It waits
until the head sees every worker alive, yields a ``RayCluster`` and stops exactly its own
processes afterwards: SIGTERM to each ``ray start --block`` makes it stop the processes it started
(that is ``--block``'s contract); whatever of their descendants, or of the processes with the
cluster's temp dir on their command line, still runs is then killed. Not ``ray stop``, which ends
every Ray process of the machine, other sessions' clusters included. Each ``ray start`` also gets
SIGTERM when the process that started it dies (Linux), so a killed test run leaves no cluster.

The cluster uses token authentication with a token of its own (``auth_env()``: ``RAY_AUTH_MODE=token``
and ``RAY_AUTH_TOKEN``, the one in the environment if set, else a new one), not
``~/.ray/auth_token``. A driver process needs ``cluster.env`` in its environment before it
imports ray (ray reads ``RAY_AUTH_MODE`` once, on import): ``tests/ray_engine/conftest.py`` puts
``auth_env()`` in ``os.environ`` before anything imports ray. ``ServiceError`` when ray is not
installed or the cluster does not come up; ``tests/ray_engine/conftest.py`` turns that into a skip (or a
failure under CI=true), a benchmark into an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.services.launch import ServiceError, free_port

START_TIMEOUT = 120.0  # two shared cores: three nodes' processes start one after the other
STOP_TIMEOUT = 60.0  # a node drains for up to 30 s on SIGTERM before it stops its processes
OBJECT_STORE_BYTES = 256 * 1024 * 1024  # per node, in /dev/shm


@dataclass
class RayCluster:
    """A running cluster: ``address`` (``host:port`` of its GCS, for ``ray.init(address=...)``),
    ``env`` (the variables a driver needs: the cluster's token), ``temp_dir`` (its logs)."""

    address: str
    env: dict[str, str]
    temp_dir: Path
    workers: int
    processes: list[subprocess.Popen] = field(default_factory=list, repr=False)


def auth_env() -> dict[str, str]:
    """The variables that give a cluster and its drivers one token: the environment's, else new."""
    return {"RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)}


def ray_executable() -> str | None:
    """``ray`` installed next to the running interpreter (the venv's bin), or on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray")


@contextlib.contextmanager
def ray_cluster(workers: int = 2, cpus_per_worker: int = 1,
                object_store_bytes: int = OBJECT_STORE_BYTES,
                pin: bool = False) -> Iterator[RayCluster]:
    """Start a head and ``workers`` worker nodes; yield the ``RayCluster``; stop them afterwards.

    ``pin``: each worker node and every process it starts run on cores of their own
    (``cpus_per_worker`` each, in turn over the machine's), as on machines of that size: a
    node's thread pools (Daft's, Arrow's, the blob functions') cannot borrow another's cores.
    """
    executable = ray_executable()
    if executable is None:
        raise ServiceError("ray is not installed (pip install 'fedquery[ray]')")
    temp_dir = Path(tempfile.mkdtemp(prefix="fq-ray-", dir="/tmp"))  # unix sockets: a short path
    port = free_port()
    env = {**auth_env(), "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = RayCluster(f"127.0.0.1:{port}", env, temp_dir, workers)
    try:
        head = [*_node_flags(temp_dir / "head", object_store_bytes), "--head", f"--port={port}",
                "--num-cpus=0", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
        if _has_ray_client():  # else `ray start` refuses the flag; without it, it takes port 10001
            head.append(f"--ray-client-server-port={free_port()}")
        cluster.processes.append(_start(executable, head, temp_dir / "head.log", env))
        _wait_for_port(port, cluster.processes[0], temp_dir / "head.log")
        for number in range(workers):  # one after another: see _node_flags
            worker = [*_node_flags(temp_dir / f"worker-{number}", object_store_bytes),
                      f"--address={cluster.address}", f"--num-cpus={cpus_per_worker}"]
            log = temp_dir / f"worker-{number}.log"
            cores = _cores(number, cpus_per_worker) if pin else None
            cluster.processes.append(_start(executable, worker, log, env, cores))
            _wait_for_started(cluster.processes[-1], log)
        _wait_for_workers(cluster)
    except BaseException as exc:
        stop(cluster)
        if isinstance(exc, ServiceError):  # the nodes' logs stay for a look
            raise ServiceError(f"{exc} (logs in {temp_dir})") from exc
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _node_flags(node_dir: Path, object_store_bytes: int) -> list[str]:
    """Flags of every node: ``--block``; a temp dir and ports of its own (0: chosen by the system).

    Ray 2.52 and older ignore a worker node's ``--temp-dir`` (2.60 takes it): nodes share the head's,
    where a starting node picks the names of its unix sockets among those not yet made, so two
    nodes starting at once can take the same one (``bind: Address already in use``, seen on one
    start in three); hence the worker nodes are started one after another.
    """
    return ["--block", "--disable-usage-stats", f"--temp-dir={node_dir}",
            f"--object-store-memory={object_store_bytes}",
            "--min-worker-port=0", "--max-worker-port=0",
            f"--dashboard-agent-listen-port={free_port()}"]


def _has_ray_client() -> bool:
    """Whether ``ray start`` runs the Ray Client server (it does when ``grpc`` imports)."""
    return importlib.util.find_spec("grpc") is not None


def _start(executable: str, flags: list[str], log: Path, env: dict[str, str],
           cores: set[int] | None = None) -> subprocess.Popen:
    def prepare() -> None:
        _end_with_parent()
        if cores:  # inherited by every process the node starts
            os.sched_setaffinity(0, cores)

    with log.open("wb") as out:
        return subprocess.Popen([executable, "start", *flags], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                preexec_fn=prepare)


def _cores(number: int, count: int) -> set[int]:
    """The cores of worker node ``number``: the next ``count`` of the machine's, in turn."""
    available = sorted(os.sched_getaffinity(0))
    return {available[(number * count + i) % len(available)] for i in range(count)}


def _end_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies (Linux), so a killed test
    session stops its cluster too."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise ServiceError(f"the Ray head did not start on port {port}: {_tail(log)}")
        time.sleep(0.2)


def _wait_for_started(process: subprocess.Popen, log: Path) -> None:
    """Until ``ray start`` says its node runs (it has registered with the head)."""
    deadline = time.monotonic() + START_TIMEOUT
    while "Ray runtime started" not in _tail(log, 100_000):
        if process.poll() is not None or time.monotonic() > deadline:
            raise ServiceError(f"a Ray worker node did not start: {_tail(log)}")
        time.sleep(0.2)


# Run in a child process, so the caller does not become a Ray driver: polls ray.nodes() until
# the head sees the expected number of alive nodes with CPUs, prints them as JSON.
_NODES_SCRIPT = """
import json, sys, time
import ray
address, workers, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
try:
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        if sum(n["Resources"].get("CPU", 0) > 0 for n in alive) >= workers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
finally:
    ray.shutdown()
print(json.dumps([{"NodeID": n["NodeID"], "Resources": n["Resources"]} for n in alive]))
"""


def _wait_for_workers(cluster: RayCluster) -> None:
    try:
        result = subprocess.run([sys.executable, "-c", _NODES_SCRIPT, cluster.address,
                                 str(cluster.workers), str(START_TIMEOUT)],
                                capture_output=True, text=True, timeout=START_TIMEOUT + 60,
                                env={**os.environ, **cluster.env})
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"the Ray cluster at {cluster.address} did not answer") from exc
    if result.returncode != 0:
        raise ServiceError(f"could not list the nodes of the Ray cluster at {cluster.address}: "
                           f"{result.stderr[-1000:]}")
    nodes = json.loads(result.stdout.strip().splitlines()[-1])
    workers = [n for n in nodes if n["Resources"].get("CPU", 0) > 0]
    if len(workers) < cluster.workers:
        logs = "; ".join(f"{p.name}: {_tail(p)}" for p in sorted(cluster.temp_dir.glob("worker-*.log")))
        raise ServiceError(f"{len(workers)} of {cluster.workers} Ray worker nodes came up: {logs}")


def stop(cluster: RayCluster) -> None:
    """SIGTERM to each ``ray start --block`` (workers first), which stops its node's processes;
    then SIGKILL to any of their descendants still running (Ray's worker processes rename
    themselves ``ray::...``) and to any process with the cluster's temp dir in its command line."""
    before = process_table()
    ours = {pid: before[pid].started for pid in descendants(before, {p.pid for p in cluster.processes})}
    for process in reversed(cluster.processes):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in reversed(cluster.processes):
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    needle = str(cluster.temp_dir).encode()
    for pid, info in process_table().items():
        # the same process (not a new one with a reused pid), or one of the cluster's own files
        if ours.get(pid) == info.started or (needle in info.cmdline and pid != os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class ProcessInfo:
    """A process as /proc shows it."""

    parent: int
    started: int  # clock ticks after boot: with the pid, names one process
    cmdline: bytes


def process_table() -> dict[int, ProcessInfo]:
    """Every process /proc shows; empty without /proc."""
    table = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = ProcessInfo(int(fields[1]), int(fields[19]),
                                              (entry / "cmdline").read_bytes())
    return table


def descendants(table: dict[int, ProcessInfo], roots: set[int]) -> set[int]:
    """``roots`` and every process below them in ``table``."""
    found, frontier = set(), set(roots)
    while frontier:
        found |= frontier
        frontier = {pid for pid, info in table.items() if info.parent in frontier} - found
    return found


def _tail(log: Path, size: int = 800) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-size:]
    return "(no log)"
