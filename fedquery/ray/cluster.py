"""Joining a Ray cluster: the one ``ray_address=`` or ``FEDQUERY_RAY_ADDRESS`` names, else a
local one started in this process; Daft then runs its plans on it."""

from __future__ import annotations

import os
import socket
import threading

from fedquery.errors import CatalogError

ADDRESS_VARIABLE = "FEDQUERY_RAY_ADDRESS"
_LOCK = threading.Lock()
_JOINED: list[str | None] = []  # the address this process joined (Ray joins one per process)


def require() -> None:
    """Ray and Daft importable, else a ``CatalogError`` that says what to install."""
    try:
        import daft  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        raise CatalogError(f"engine='ray' needs Ray and Daft ({exc.name} is missing): "
                           "pip install 'fedquery[ray]'") from None


def join(address: str | None = None) -> str | None:
    """Connect this process to the cluster (once; later calls reuse it) and make Daft run on
    it. Returns the address joined (None: a local cluster)."""
    require()
    import daft
    import ray

    address = address or os.environ.get(ADDRESS_VARIABLE) or None
    with _LOCK:
        if _JOINED and ray.is_initialized() and address not in (None, _JOINED[0]):
            raise CatalogError(f"engine='ray': this process is already on the Ray cluster at "
                               f"{_JOINED[0] or 'started locally'}; a process joins one cluster "
                               f"(asked for {address!r})")
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level="warning", configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise CatalogError(f"engine='ray': cannot join the Ray cluster at {address!r}: "
                                   f"{str(exc).splitlines()[0]}") from None
        daft.set_runner_ray(address=address, noop_if_initialized=True)
        from daft.runners import get_or_create_runner

        if get_or_create_runner().name != "ray":
            raise CatalogError("engine='ray': Daft already runs on its own in this process (a Daft "
                               "DataFrame was used before this connection); connect with "
                               "engine='ray' first, or run daft.set_runner_ray() before using Daft")
        if not _JOINED:
            _JOINED.append(address)
    return _JOINED[0]


def worker_cpus() -> int:
    """The CPUs the cluster's nodes offer tasks (at least one)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def has_gpu() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) that does not answer is a ``CatalogError`` now
    (Ray itself would wait for it for minutes)."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise CatalogError(f"engine='ray': cannot join the Ray cluster at {address!r}: nothing "
                           f"answers there ({exc.strerror or exc})") from None
