"""The test cluster itself: two alive one-CPU worker nodes beside a head without CPUs; tasks run in
worker processes of the worker nodes, not on the head nor in the driver; a driver leaves cleanly
and the cluster serves the next one; a cluster stops its own processes and no other's."""

from __future__ import annotations

import os

import pytest
import ray

from tests.services.ray_cluster import descendants, process_table
from tests.services.ray_cluster import ray_cluster as start_ray_cluster


def _alive_nodes() -> list[dict]:
    return [node for node in ray.nodes() if node["Alive"]]


def _worker_nodes() -> set[str]:
    return {node["NodeID"] for node in _alive_nodes() if node["Resources"].get("CPU", 0) > 0}


@pytest.fixture()
def driver(ray_cluster: str):
    """This process as a driver of the test cluster, for one test."""
    ray.init(address=ray_cluster, logging_level="ERROR")
    try:
        yield ray.get_runtime_context()
    finally:
        ray.shutdown()


@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def _where() -> tuple[str, int]:
    return ray.get_runtime_context().get_node_id(), os.getpid()


def test_two_alive_worker_nodes_and_a_head_without_cpus(driver) -> None:
    nodes = _alive_nodes()
    assert len(nodes) == 3, nodes
    cpus = sorted(node["Resources"].get("CPU", 0) for node in nodes)
    assert cpus == [0, 1, 1]
    assert len({node["NodeManagerPort"] for node in nodes}) == 3  # three raylets, not one
    assert ray.cluster_resources()["CPU"] == 2


def test_tasks_run_on_the_worker_nodes_not_on_the_head_or_in_the_driver(driver) -> None:
    workers = _worker_nodes()
    head = driver.get_node_id()  # the driver joins the head's node
    assert head not in workers
    placed = ray.get([_where.remote() for _ in range(4)], timeout=120)
    assert {node for node, _ in placed} == workers  # spread over both worker nodes
    assert os.getpid() not in {pid for _, pid in placed}


def test_a_driver_shuts_down_cleanly_and_the_cluster_serves_the_next(ray_cluster: str) -> None:
    ray.init(address=ray_cluster, logging_level="ERROR")
    first_job = ray.get_runtime_context().get_job_id()
    assert ray.get(_where.remote(), timeout=120)[0] in _worker_nodes()
    ray.shutdown()
    assert not ray.is_initialized()

    ray.init(address=ray_cluster, logging_level="ERROR")
    try:
        assert ray.get_runtime_context().get_job_id() != first_job
        assert len(_worker_nodes()) == 2
        assert ray.get(_where.remote(), timeout=120)[0] in _worker_nodes()
    finally:
        ray.shutdown()
    assert not ray.is_initialized()


def test_a_cluster_stops_all_its_processes_and_no_other_clusters(ray_cluster: str) -> None:
    with start_ray_cluster(workers=1) as other:
        table = process_table()
        started = {pid: table[pid].started
                   for pid in descendants(table, {p.pid for p in other.processes})}
        assert len(started) >= 6  # two `ray start`, a GCS, two raylets, their agents...
        ray.init(address=other.address, logging_level="ERROR")
        try:
            assert ray.get(_where.remote(), timeout=120)[0] in _worker_nodes()
        finally:
            ray.shutdown()
    after = process_table()
    assert [pid for pid, tick in started.items() if pid in after and after[pid].started == tick] == []
    assert not other.temp_dir.exists()

    ray.init(address=ray_cluster, logging_level="ERROR")  # the session's cluster still runs
    try:
        assert len(_worker_nodes()) == 2
        assert ray.get(_where.remote(), timeout=120)[0] in _worker_nodes()
    finally:
        ray.shutdown()
