"""Secrets read from the catalog, and the one function that removes them from text."""

from __future__ import annotations

import contextlib
import re
from urllib.parse import urlsplit

MASK = "***"
_DSN_PASSWORD = re.compile(r"password\s*=\s*('[^']*'|\S+)", re.I)


class Secrets:
    """The secret strings of one catalog; ``redact`` replaces each of them with ``***``."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add_setting(self, value: str) -> None:
        """Remember a secret setting: the whole value and, for a DSN, its password."""
        if len(value) >= 4:
            self._values.add(value)
        self._values.update(p for p in _passwords(value) if p)

    def redact(self, text: str) -> str:
        """``text`` with every known secret masked, longest first."""
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return _DSN_PASSWORD.sub(f"password={MASK}", text)

    @contextlib.contextmanager
    def scrubbing(self):
        """Re-raise any exception of the block with secrets masked, in it and in its cause."""
        try:
            yield
        except Exception as exc:
            self.scrub(exc)
            raise

    def scrub(self, exc: BaseException) -> None:
        """Mask secrets in an exception's message; drop a chained cause that shows one."""
        exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
        cause = exc.__cause__ or exc.__context__
        if cause is not None and self.redact(str(cause)) != str(cause):
            exc.__cause__, exc.__suppress_context__ = None, True

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} hidden)"


def _passwords(value: str) -> list[str]:
    """Passwords inside a URL-style or key=value DSN."""
    found = [m.group(1).strip("'") for m in _DSN_PASSWORD.finditer(value)]
    if "://" in value:
        with contextlib.suppress(ValueError):
            found.append(urlsplit(value).password or "")
    return found
