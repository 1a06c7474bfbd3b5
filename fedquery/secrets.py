"""Secrets read from the catalog, and the one function that removes them from text.

A secret is remembered in every form fedquery derives from it and may print: a path as it is
resolved and normalised (``~`` expanded, ``..`` and ``.`` folded, relative to the catalog),
a URL without its scheme or trailing ``/``, percent-encoded and decoded, and a URL's password
as libpq reads it too (libpq ends the user info at the first ``@``, so the rest of an
unencoded password becomes part of the host name it prints).

A value read from the environment (``${VAR}``) is secret as a whole and in its parts too, for
fedquery and its drivers print parts of what they were given: a bucket, a host, a port, a
database, each path component and each leading part of a path (``/srv/<secret>`` of
``/srv/<secret>/x``). Parts shorter than ``MIN_PART_LENGTH``, and a few words every setup
has (``localhost``, ``postgres``), are not masked: they would mask common text everywhere.
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
MIN_PART_LENGTH = 6  # a part of a ${VAR} value (a path component, a host) masked on its own
COMMON_PARTS = {"localhost", "127.0.0.1", "postgres", "postgresql", "public", "default"}
_TEXT_ATTRIBUTES = ("filename", "filename2", "strerror", "msg", "reason")  # OSError, SyntaxError...
_LOCATION_KEYS = {"host", "hostaddr", "port", "dbname", "user"}  # libpq's, printed in its errors
_KEY_VALUE = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_DSN_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)


class Secrets:
    """The secret strings of one catalog; ``redact`` replaces each of them with ``***``."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._environment: set[str] = set()

    def add_setting(self, value: str, *, base_dir: Path | None = None,
                    environment: bool = False) -> None:
        """Remember a secret setting in each form fedquery may print; ``base_dir``: the value
        is a path, resolved against this folder when relative; ``environment``: the value was
        read from the environment, so its parts are secret too."""
        self._values.update(f for f in derived_forms(value, base_dir) if len(f) >= MIN_LENGTH)
        self._values.update(p for p in _passwords(value) if p)
        if environment:
            self._environment.add(value)
            self._values.update(p for p in value_parts(value)
                                if len(p) >= MIN_PART_LENGTH and p.lower() not in COMMON_PARTS)

    def from_environment(self, part: str | None) -> bool:
        """True if ``part`` (a host, a database name) is text of a value read from the
        environment, so it is not shown even where it is too short to be masked."""
        return bool(part) and any(part in value for value in self._environment)

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
        """Mask secrets in an exception (its message, notes and the attributes its message is
        built from); cut the chain of causes and contexts at the first exception that shows a
        secret (a traceback prints each one's message, and code can read ``__cause__`` and
        ``__context__`` even when suppressed)."""
        self._mask_in_place(exc)
        seen: set[int] = set()
        pending = [exc]
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            for link in ("__cause__", "__context__"):
                linked = getattr(current, link)
                if linked is not None and self._shown_by(linked):
                    setattr(current, link, None)
                    current.__suppress_context__ = True
                elif linked is not None:
                    pending.append(linked)

    def _mask_in_place(self, exc: BaseException) -> None:
        """Redact the texts an exception's message is made of. One raised in an ``except``
        block keeps the handled exception as ``__context__`` whatever is done before, so an
        exception that becomes one is masked in place; a message still showing a secret
        (built by its own ``__str__``) is replaced."""
        exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
        for name in _TEXT_ATTRIBUTES:
            value = getattr(exc, name, None)
            if isinstance(value, str):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, name, self.redact(value))
        if isinstance(getattr(exc, "__notes__", None), list):
            exc.__notes__ = [self.redact(n) if isinstance(n, str) else n for n in exc.__notes__]
        if self._shown_by(exc):
            exc.args = ("(message hidden: it showed a secret)",)
            for name in _TEXT_ATTRIBUTES:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, name, None)

    def _shown_by(self, exc: BaseException) -> bool:
        """True if the exception's message, repr or notes show a secret."""
        notes = getattr(exc, "__notes__", None)
        texts = [str(exc), repr(exc), *(notes if isinstance(notes, list) else [])]
        return any(self.shows_secret(str(t)) for t in texts)

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


def value_parts(value: str) -> set[str]:
    """The parts fedquery or a driver may print alone: of a URL its host (an S3 bucket), port,
    user, database and query values; of a libpq ``key=value`` string its values; of a path
    (also a URL's) each component and each leading part, as given and normalised. (Not the
    folder a relative path is resolved against: that is the catalog's, not a secret.)"""
    parts: set[str] = set()
    if "://" in value:
        parts |= _url_parts(value)
    else:
        parts |= {text.strip("'") for key, text in _KEY_VALUE.findall(value)
                  if key in _LOCATION_KEYS}
        expanded = os.path.expanduser(value)
        for path in {value, expanded, os.path.normpath(expanded)}:
            parts |= _path_parts(path)
    return {p for p in parts if p}


def _url_parts(value: str) -> set[str]:
    rest = value.split("://", 1)[1]
    location, _, tail = rest.partition("/")
    userinfo, _, hostport = location.rpartition("@")
    parts = {location, hostport, userinfo.partition(":")[0], *hostport.split(",")}
    for host in hostport.split(","):
        parts |= {host.rpartition(":")[0] or host, host.rpartition(":")[2]}
    path, _, query = tail.partition("?")
    parts |= {value for key, _, value in (pair.partition("=") for pair in query.split("&"))
              if key in _LOCATION_KEYS}
    parts |= {unquote(p) for p in _path_parts(path)}
    parts |= {f"{hostport}/{p}" for p in _prefixes(path)}  # s3://bucket/prefix: bucket/prefix
    return parts | {unquote(p) for p in parts}


def _path_parts(path: str) -> set[str]:
    """Each component of a path and each leading part of it (with and without the first
    separator)."""
    parts = {p for p in re.split(r"[/\\]", path) if p not in ("", ".", "..")}
    return parts | set(_prefixes(path))


def _prefixes(path: str) -> list[str]:
    pieces = path.split("/")
    return ["/".join(pieces[:i]) for i in range(1, len(pieces) + 1)]


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
