"""A progress bar for a query that runs past a second (``tqdm.auto``: a widget in Jupyter, text
on a terminal), fed with DuckDB's own estimate of how far the query is.

``settings.progress`` in the catalog: ``auto`` (the default: on in a Jupyter kernel or when
stderr is a terminal, off in scripts, tests and pipes), ``true`` or ``false``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

DELAY_SECONDS = 1.0


def wanted(setting: str | bool) -> bool:
    """Whether queries show a bar, for the catalog's ``settings.progress``."""
    if setting in (True, False):
        return bool(setting)
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


class ProgressBar:
    """A bar from 0 to 100 %, drawn only once the query has run ``DELAY_SECONDS``."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=100, delay=DELAY_SECONDS, desc="fedquery", unit="%",
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}", leave=False)
        self._shown = 0.0

    def update(self, percent: Callable[[], float]) -> None:
        """Move the bar to ``percent()`` (ignored when DuckDB does not know, -1)."""
        try:
            value = float(percent())
        except Exception:  # noqa: BLE001 - the query may have ended meanwhile
            return
        if value > self._shown:
            self._bar.update(min(value, 100.0) - self._shown)
            self._shown = min(value, 100.0)
        else:
            self._bar.refresh()

    def close(self, finished: bool) -> None:
        if finished and self._shown < 100.0:
            self._bar.update(100.0 - self._shown)
        self._bar.close()
