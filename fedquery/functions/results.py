"""The memory one call of a blob function holds for its results, within ``limits.batch_memory``.

DuckDB calls a blob function once per batch of rows (up to 2048) and the function must return
every row's value at once: ``read_blob``'s bytes of every file in the batch, ``read_pointcloud``'s
points of every cloud. Each file is capped (``limits.read_blob``, ...), but a batch of them was
not: twelve 200 MiB files took 6.4 GB. So a call first learns what its results will hold (file
sizes, point counts: nothing read yet), counts each value twice (fedquery's copy and the copy
DuckDB makes into its own vectors), and reserves that from each source's ``batch_memory`` budget
before it reads, waiting while calls running at the same time hold it. A call that needs more
than the whole budget fails at once with a ``SourceError`` that says how much it needs: a
partial answer (some rows NULL because their neighbours were big) would look like bad files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fedquery.errors import SourceError
from fedquery.functions.limits import size_text

if TYPE_CHECKING:
    from fedquery.functions.blobs import Root

COPIES = 2  # a result is held by fedquery (the Arrow array) and by DuckDB (its vectors)
POINT_BYTES = 32  # x, y, z and intensity as float64


class Needs:
    """What the results of one call hold, per files source (each value ``COPIES`` times)."""

    def __init__(self) -> None:
        self.roots: dict[str, Root] = {}
        self.bytes: dict[str, int] = {}

    def add(self, root: Root, nbytes: int) -> None:
        self.roots[root.source] = root
        self.bytes[root.source] = self.bytes.get(root.source, 0) + COPIES * nbytes

    @contextlib.contextmanager
    def held(self, function: str) -> Iterator[None]:
        """Hold each source's share from its ``batch_memory`` for the block (see module doc);
        sources are taken in one order (by name), so calls never wait on each other in a
        cycle."""
        for name, need in self.bytes.items():
            budget = self.roots[name].results
            if need > budget.total:
                raise SourceError(
                    f"{function}: one batch of rows (DuckDB passes up to 2048 at a time) needs "
                    f"{size_text(need)} of memory for its results, over limits.batch_memory "
                    f"({size_text(budget.total)}); read fewer or smaller files per query (a "
                    f"filter, a LIMIT) or raise the source's limits.batch_memory", source=name)
        with contextlib.ExitStack() as stack:
            for name in sorted(self.bytes):
                if self.bytes[name]:
                    stack.enter_context(self.roots[name].results.reserve(self.bytes[name]))
            yield
