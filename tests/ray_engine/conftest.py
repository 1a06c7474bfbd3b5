"""The Ray engine's tests: they run in their own environment (``.venv-ray``, ``fedquery[ray-test]``),
as Daft pins a pyarrow older than the base install's; ``make test`` runs them there. (Not
``tests/ray``: pytest puts ``tests/`` on ``sys.path``, where a folder ``ray`` would be imported as
the namespace package ``ray`` wherever the real one is not installed.)

Without daft or ray every test module here is skipped (failed under CI=true) before it is
imported. ``ray_cluster`` (session) is the address of a real cluster of this machine: a head and
two worker nodes of one CPU each (``tests/services/ray_cluster.py``). Its token is put in the
environment here, before daft or ray is imported (ray reads it once, on import), so
``ray.init(address=ray_cluster)`` in a test, and any subprocess it starts, joins it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.services import unavailable
from tests.services.launch import ServiceError
from tests.services.ray_cluster import auth_env
from tests.services.ray_cluster import ray_cluster as start_ray_cluster

if "ray" in sys.modules and os.environ.get("RAY_AUTH_MODE") != "token":
    raise RuntimeError("ray was imported before tests/ray_engine/conftest.py set the test cluster's token "
                       "(RAY_AUTH_MODE, RAY_AUTH_TOKEN): import ray lazily in fedquery and tests/conftest.py")
os.environ.update(auth_env())


def _missing() -> list[str]:
    """What of daft and ray does not import here (with the reason)."""
    missing = []
    for name in ("daft", "ray"):
        try:
            __import__(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    return missing


MISSING = _missing()


class _Unavailable(pytest.File):
    """A test module collected in place of one that needs what is not installed."""

    def collect(self):
        unavailable(f"the Ray engine's tests need {' and '.join(MISSING)} "
                    "(pip install -e '.[ray-test]'; make test runs them in .venv-ray)")
        return []


def pytest_pycollect_makemodule(module_path, parent):
    if MISSING:
        return _Unavailable.from_parent(parent, path=module_path)
    return None


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of a Ray cluster of a head (no CPUs) and two one-CPU worker nodes, started
    for the session (``host:port``, for ``ray.init(address=...)``)."""
    try:
        with start_ray_cluster(workers=2) as cluster:
            try:
                yield cluster.address
            finally:  # this process leaves the cluster first: its nodes then stop at once
                if "ray" in sys.modules and sys.modules["ray"].is_initialized():
                    sys.modules["ray"].shutdown()
    except ServiceError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def lake_engines(ray_cluster, tmp_path_factory):
    """(local connection, Ray connection) over the Daft-stage fuzzing lake (``daftfuzz``)."""
    import fedquery
    from tests.ray_engine.daftfuzz import build_lake

    catalog = build_lake(tmp_path_factory.mktemp("daftfuzz") / "lake")
    local = fedquery.connect(catalog)
    ray = fedquery.connect(catalog, engine="ray", ray_address=ray_cluster)
    yield local, ray
    ray.close()
    local.close()
