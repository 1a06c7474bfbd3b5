"""fedquery: one SQL query over a warehouse, a Parquet lake, a vector index and blob stores.

>>> import fedquery
>>> con = fedquery.connect("catalog.yaml")                      # doctest: +SKIP
>>> con.sql("SELECT count(*) FROM frames WHERE camera = $c",
...         params={"c": "front"}).fetchall()                   # doctest: +SKIP

In IPython or Jupyter, ``%load_ext fedquery`` adds the ``%%fq`` SQL cell magic (``fedquery.magic``).
"""

from typing import TYPE_CHECKING

from fedquery.connection import Connection, connect
from fedquery.errors import (
    CatalogError,
    FedQueryError,
    ForbiddenError,
    ParseError,
    PlanError,
    QueryCancelled,
    QueryTimeout,
    SourceError,
)
from fedquery.functions.embedding import register_embedder
from fedquery.functions.joint_models import register_clip
from fedquery.result import Result

if TYPE_CHECKING:
    from fedquery.profile import Profile

__version__ = "0.1.0"
__all__ = [
    "CatalogError",
    "Connection",
    "FedQueryError",
    "ForbiddenError",
    "ParseError",
    "PlanError",
    "Profile",
    "QueryCancelled",
    "QueryTimeout",
    "Result",
    "SourceError",
    "connect",
    "register_clip",
    "register_embedder",
    "__version__",
]


def __getattr__(name: str) -> object:
    """``fedquery.Profile``, imported on first use: profiling needs Pillow, which
    ``import fedquery`` does not load."""
    if name == "Profile":
        from fedquery.profile import Profile

        return Profile
    raise AttributeError(f"module 'fedquery' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:  # noqa: ANN001 - IPython's shell
    """``%load_ext fedquery``: register the ``%fq`` / ``%%fq`` magics (IPython is imported
    only then)."""
    from fedquery.magic import load_ipython_extension as load

    load(ipython)
