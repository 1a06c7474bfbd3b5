"""Secrets read from the catalog, and the one function that removes them from text.

A secret is remembered in every form fedquery derives from it and may print: a path as it is
resolved and normalised (``~`` expanded, ``..`` and ``.`` folded, relative to the catalog),
a URL without its scheme or trailing ``/``, percent-encoded and decoded, and a URL's password
as libpq reads it too (libpq ends the user info at the first ``@``, so the rest of an
unencoded password becomes part of the host name it prints).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
MIN_LENGTH = 4  # shorter forms would mask common text; a DSN's password is masked whatever its length
_DSN_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)


class Secrets:
    """The secret strings of one catalog; ``redact`` replaces each of them with ``***``."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add_setting(self, value: str, *, base_dir: Path | None = None) -> None:
        """Remember a secret setting in each form fedquery may print; ``base_dir``: the value
        is a path, resolved against this folder when relative."""
        self._values.update(f for f in derived_forms(value, base_dir) if len(f) >= MIN_LENGTH)
        self._values.update(p for p in _passwords(value) if p)

    def redact(self, text: str) -> str:
        """``text`` with every known secret masked, longest first."""
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return _DSN_PASSWORD.sub(f"password={MASK}", text)

    def shows_secret(self, text: str) -> bool:
        """True if ``redact`` would change ``text``."""
        return self.redact(text) != text

    @contextlib.contextmanager
    def scrubbing(self):
        """Re-raise any exception of the block with secrets masked, in it and in its cause."""
        try:
            yield
        except Exception as exc:
            self.scrub(exc)
            raise

    def scrub(self, exc: BaseException) -> None:
        """Mask secrets in an exception's message; cut the chain of causes where one shows a
        secret (a traceback prints each cause's message)."""
        exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
        seen = {id(exc)}
        cause = exc.__cause__ or exc.__context__
        while cause is not None and id(cause) not in seen:
            if self.shows_secret(str(cause)) or self.shows_secret(repr(cause)):
                exc.__cause__, exc.__suppress_context__ = None, True
                return
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} hidden)"


def derived_forms(value: str, base_dir: Path | None = None) -> set[str]:
    """``value`` and the forms fedquery derives from it before printing."""
    forms = {value, value.strip()}
    if "://" in value:
        forms |= _url_forms(value)
    elif base_dir is not None:
        forms |= _path_forms(value, base_dir)
    for form in list(forms):
        forms |= {unquote(form), quote(form, safe=""), quote(form, safe="/:@")}
    return {f for f in forms if f}


def _path_forms(value: str, base_dir: Path) -> set[str]:
    """A local path as given, with ``~`` expanded, normalised, and resolved as
    ``SourceSpec.resolve`` does (symlinks followed), each without a trailing separator."""
    expanded = os.path.expanduser(value)
    forms = {expanded, os.path.normpath(expanded)}
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        forms.add(str((base_dir / expanded).resolve()))
        forms.add(os.path.normpath(os.path.join(base_dir, expanded)))
    return forms | {f.rstrip(os.sep) for f in forms}


def _url_forms(value: str) -> set[str]:
    """A URL without its scheme (``bucket/prefix``, as S3 paths are printed), without a
    trailing ``/``, normalised; and the password of its user info, as Python and libpq read it."""
    rest = value.split("://", 1)[1]
    forms = {rest, rest.rstrip("/"), posixpath.normpath(rest) if rest else "", value.rstrip("/")}
    with contextlib.suppress(ValueError):
        parts = urlsplit(value)
        forms |= _userinfo_forms(parts.netloc)
        if parts.password:
            forms |= {parts.password, unquote(parts.password)}
    return forms


def _userinfo_forms(netloc: str) -> set[str]:
    """For ``user:pass@word@host`` (an unencoded ``@`` in the password): each ``@``-separated
    tail that still holds part of the password (libpq ends the user info at the first ``@``
    and prints the rest as the host: ``word@host``) and each part of the password."""
    pieces = netloc.split("@")
    if len(pieces) < 3:
        return set()
    password = [pieces[0].partition(":")[2], *pieces[1:-1]]
    forms = {"@".join(pieces[i:]) for i in range(1, len(pieces) - 1)}
    return forms | {"@".join(password[i:j]) for i in range(len(password))
                    for j in range(i + 1, len(password) + 1)}


def _passwords(value: str) -> list[str]:
    """Passwords inside a URL-style or key=value DSN (quoted ones also unescaped)."""
    found = []
    for match in _DSN_PASSWORD.finditer(value):
        text = match.group(1)
        if text.startswith("'") and text.endswith("'") and len(text) > 1:
            text = text[1:-1]
            found.append(re.sub(r"\\(.)", r"\1", text))
        found.append(text)
    if "://" in value:
        with contextlib.suppress(ValueError):
            password = urlsplit(value).password or ""
            found += [password, unquote(password)]
    return found
