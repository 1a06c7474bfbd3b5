"""Filesystems for a source's ``root`` and ``options``: S3 (``s3://``) or a local folder.

``open_native`` returns pyarrow's own filesystem (C++ only) as a ``Location`` that also names
paths and explains failures in words; lakes read through it, as pyarrow's dataset scans run on
C++ threads that must never call back into Python. ``open_filesystem`` wraps the same
filesystem in a Python one that counts the bytes it reads (per source and per file), for reads
made from Python threads (blob functions). S3 goes through pyarrow's ``S3FileSystem``: measured
against s3fs it reads only the byte ranges a Parquet scan asks for (s3fs's default read-ahead
reads whole 50 MiB blocks). Transient errors (5xx, throttling, resets, timeouts) are retried
with exponential backoff, ``max_attempts`` attempts in all. The S3 client only gives up on a
response that stays silent (``request_timeout``); ``ReadLimits`` (``read_timeout``,
``min_read_speed``) bound how long a read may take in all, kept by the lake's waiting threads
(``connectors._lake_deadline``).

>>> fs, path = open_filesystem("s3://lake/frames/", {"endpoint_url": "http://127.0.0.1:9000",
...     "key": "AKIA...", "secret": "..."}, source="lake", secrets=secrets)  # doctest: +SKIP
>>> fs.handler.stats.bytes  # doctest: +SKIP
0
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from fedquery.connectors._lake_deadline import ReadLimits, TooSlow
from fedquery.errors import SourceError

if TYPE_CHECKING:
    from fedquery.secrets import Secrets

_UNREACHABLE = re.compile(r"curlCode: (6|7)\b|connect to server|Connection timed out|"
                          r"Connection refused|Could not resolve|Couldn't connect", re.I)
_CUT_OFF = re.compile(r"NETWORK_CONNECTION|curlCode|timed? ?out|Connection reset|"
                      r"partial file|Operation too slow", re.I)
_DENIED = re.compile(r"ACCESS_DENIED|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|"
                     r"Forbidden|HTTP response code: 403|INVALID_ACCESS_KEY_ID", re.I)
_TRANSIENT = re.compile(r"SLOW_DOWN|SlowDown|THROTTL|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|"
                        r"HTTP status 5\d\d|HTTP response code: 5\d\d", re.I)
_NO_BUCKET = re.compile(r"NoSuchBucket|NO_SUCH_BUCKET|bucket does not exist", re.I)

# an az://container/prefix root (Azure Blob Storage, or Azurite at endpoint_url)
AZURE_OPTIONS = ("account_name", "account_key", "sas_token", "endpoint_url")
S3_OPTIONS = ("endpoint_url", "key", "secret", "token", "region", "anonymous", "max_attempts",
              "connect_timeout", "request_timeout", "read_timeout", "min_read_speed")
DEFAULT_MAX_ATTEMPTS = 8  # 7 retries, 50 ms to 1.6 s apart (3.2 s in all): a 50% 503 storm
#                           fails one request in 256
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 5.0  # seconds a response may stay silent before the attempt fails
DEFAULT_MIN_READ_SPEED = 100_000  # bytes per second: slower than this, a read is given up


class ReadStats:
    """Bytes served by one filesystem, in total and per file. The per-file counts keep the
    ``FILES_KEPT`` files read last (a profile of a million files must not keep a million
    entries); the total only ever grows."""

    FILES_KEPT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.files: OrderedDict[str, int] = OrderedDict()

    def add(self, path: str, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
            self.files[path] = self.files.pop(path, 0) + nbytes
            if len(self.files) > self.FILES_KEPT:
                self.files.popitem(last=False)

    def snapshot(self) -> dict[str, int]:
        """Bytes read so far per file (a copy: diff two snapshots to see what a query read)."""
        with self._lock:
            return dict(self.files)


class _CountingReader:
    """A read-only file object over a pyarrow ``NativeFile`` that adds what it reads to stats."""

    def __init__(self, inner: pa.NativeFile, path: str, handler: CountingHandler) -> None:
        self._inner, self._path, self._handler = inner, path, handler
        self.closed = False

    def read(self, nbytes: int | None = -1) -> pa.Buffer:
        try:
            buffer = self._inner.read_buffer(None if nbytes is None or nbytes < 0 else nbytes)
        except OSError as exc:
            raise self._handler.failure("cannot read", self._path, exc) from None
        self._handler.stats.add(self._path, buffer.size)
        return buffer

    def read_into(self, view: memoryview, offset: int) -> int:
        """Read ``len(view)`` bytes from ``offset`` straight into ``view`` (no copy); the count
        pyarrow reports (for S3 always ``len(view)``, even when the body was short: see
        ``fedquery.functions.reads``)."""
        try:
            self._inner.seek(offset)
            got = self._inner.readinto(view)
        except OSError as exc:
            raise self._handler.failure("cannot read", self._path, exc) from None
        self._handler.stats.add(self._path, got)
        return got

    def size(self) -> int:
        """The file's size, as its opening learnt it (an S3 object's HEAD): no request."""
        return self._inner.size()

    def metadata(self) -> dict[str, Any]:
        """What opening the file learnt of it (an S3 object's ``ETag``, ``Last-Modified``)."""
        return self._inner.metadata()

    def seek(self, position: int, whence: int = 0) -> int:
        return self._inner.seek(position, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._inner.close()


class Location:
    """Where a source's files live: its filesystem, how a path is shown, why a call failed.

    Failures name the file as a URL (``s3://bucket/key``) and say why in words; secrets are
    masked with ``redact``.
    """

    def __init__(self, filesystem: pafs.FileSystem, *, scheme: str, source: str,
                 redact: Callable[[str], str] = str, endpoint: str | None = None,
                 attempts: int = 1, request_timeout: float | None = None,
                 limits: ReadLimits | None = None) -> None:
        self.filesystem, self.scheme, self.source, self.redact = filesystem, scheme, source, redact
        self.endpoint, self.attempts, self.request_timeout = endpoint, attempts, request_timeout
        self.limits = limits or ReadLimits(attempts * (DEFAULT_CONNECT_TIMEOUT
                                                       + (request_timeout or DEFAULT_REQUEST_TIMEOUT)),
                                           DEFAULT_MIN_READ_SPEED)

    def url(self, path: str) -> str:
        """The user-facing address of a path inside this filesystem."""
        return f"{self.scheme}://{path}" if self.scheme != "file" else path

    def failure(self, what: str, path: str, exc: BaseException) -> OSError:
        """An OSError for a failed open or read, in words, naming the source and the file."""
        error = FileNotFoundError if isinstance(exc, FileNotFoundError) else OSError
        return error(f"source {self.source!r}: {what} {self.url(path)}: {self.reason(exc, path)}")

    def reason(self, exc: BaseException, path: str) -> str:
        """Why an S3 call failed, in words: unreachable, cut off, throttled, access denied, no
        bucket, not found."""
        text = self.redact(str(exc))
        if isinstance(exc, TooSlow):
            return text
        where = self.service()
        tried = f"gave up after {self.attempts} attempts"
        if _UNREACHABLE.search(text):
            store = "Azure" if self.scheme == "az" else "S3"
            return f"cannot reach the {store} endpoint {where} ({tried}): {_first_line(text)}"
        if _CUT_OFF.search(text):
            timeout = f"{self.request_timeout:g} s" if self.request_timeout else "the default"
            return (f"the connection to {where} kept failing: reset, cut short or silent for "
                    f"longer than options.request_timeout ({timeout}) ({tried}): {_first_line(text)}")
        if _DENIED.search(text):
            return (f"access denied by {where}: check the source's credentials (options.key, "
                    f"options.secret, options.token or options.anonymous) [{_first_line(text)}]")
        if _TRANSIENT.search(text):
            return (f"{where} kept failing with a transient error ({tried}; raise "
                    f"options.max_attempts to retry longer): {_first_line(text)}")
        if _NO_BUCKET.search(text) or (isinstance(exc, FileNotFoundError) and self.scheme == "s3"
                                       and not self._bucket_exists(path)):
            return f"bucket {path.split('/', 1)[0]!r} does not exist at {where}"
        if isinstance(exc, FileNotFoundError):
            return "not found"
        return _first_line(text)

    def service(self) -> str:
        """The store as messages name it: its endpoint, else AWS S3 or Azure Blob Storage."""
        if self.endpoint:
            return self.redact(self.endpoint)
        return "Azure Blob Storage" if self.scheme == "az" else "AWS S3"

    def missing_bucket(self, path: str) -> str | None:
        """Why a listing came back empty when its bucket does not exist (None: it does)."""
        if self.scheme == "s3" and not self._bucket_exists(path):
            where = self.service()
            return f"bucket {path.split('/', 1)[0]!r} does not exist at {where}"
        return None

    def _bucket_exists(self, path: str) -> bool:
        try:
            return self.filesystem.get_file_info(path.split("/", 1)[0]).type != pafs.FileType.NotFound
        except OSError:
            return True  # cannot tell: say "not found" rather than guess


class CountingHandler(pafs.FileSystemHandler):
    """A read-only pyarrow filesystem over another that counts bytes read (``stats``).

    Its files are Python objects: read them from Python threads only (blob reads). Never hand
    it to a pyarrow dataset, whose C++ threads would call back into Python (a GIL deadlock
    under errors); lakes read through ``open_native``. Failures are in words (``Location``).
    """

    def __init__(self, inner: pafs.FileSystem, *, scheme: str, source: str,
                 redact: Callable[[str], str] = str, endpoint: str | None = None,
                 attempts: int = 1, request_timeout: float | None = None) -> None:
        self.inner = inner
        self.location = Location(inner, scheme=scheme, source=source, redact=redact,
                                 endpoint=endpoint, attempts=attempts,
                                 request_timeout=request_timeout)
        self.scheme, self.source, self.redact = scheme, source, redact
        self.endpoint, self.attempts = endpoint, attempts
        self.stats = ReadStats()

    def url(self, path: str) -> str:
        return self.location.url(path)

    def failure(self, what: str, path: str, exc: BaseException) -> OSError:
        return self.location.failure(what, path, exc)

    def reason(self, exc: BaseException, path: str) -> str:
        return self.location.reason(exc, path)

    def missing_bucket(self, path: str) -> str | None:
        return self.location.missing_bucket(path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountingHandler) and other.inner.equals(self.inner)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"counting+{self.inner.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(selector)

    def open_input_file(self, path: str) -> pa.PythonFile:
        try:
            inner = self.inner.open_input_file(path)
        except OSError as exc:
            raise self.failure("cannot open", path, exc) from None
        return pa.PythonFile(_CountingReader(inner, path, self), mode="r")

    open_input_stream = open_input_file

    def open_reader(self, path: str) -> _CountingReader:
        """The file as a counting reader of the inner filesystem, for blob reads that read into
        buffers of their own and pin what they read (``size``, ``metadata``, ``read_into``)."""
        try:
            inner = self.inner.open_input_file(path)
        except OSError as exc:
            raise self.failure("cannot open", path, exc) from None
        return _CountingReader(inner, path, self)

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(f"source {self.source!r} is read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def open_filesystem(root: str, options: Mapping[str, Any] | None, *, source: str,
                    secrets: Secrets) -> tuple[pafs.PyFileSystem, str]:
    """The filesystem a root lives in, counting the bytes read, and the root's path inside it
    (``bucket/prefix``); for reads from Python threads (blob functions).

    ``s3://`` roots take ``options``: ``endpoint_url``, ``key``, ``secret``, ``token``,
    ``region``, ``anonymous``, ``max_attempts`` (attempts per request: transient errors are
    retried with backoff), ``connect_timeout`` and ``request_timeout`` (seconds). Other roots
    are local folders.
    """
    location, path = open_native(root, options, source=source, secrets=secrets)
    handler = CountingHandler(location.filesystem, scheme=location.scheme, source=source,
                              redact=location.redact, endpoint=location.endpoint,
                              attempts=location.attempts, request_timeout=location.request_timeout)
    return pafs.PyFileSystem(handler), path


def open_native(root: str, options: Mapping[str, Any] | None, *, source: str,
                secrets: Secrets) -> tuple[Location, str]:
    """pyarrow's own filesystem for a root (C++ only: safe under pyarrow's I/O threads), as a
    ``Location``, and the root's path inside it (``bucket/prefix``)."""
    options = dict(options or {})
    scheme = urlsplit(root).scheme if "://" in root else "file"
    if scheme == "file":
        path = root.split("://", 1)[-1]
        filesystem: pafs.FileSystem = pafs.LocalFileSystem()
    elif scheme in ("s3", "s3a"):
        filesystem, path = _s3(root, options, source=source, secrets=secrets), root.split("://", 1)[1]
        scheme = "s3"
    elif scheme == "az":
        filesystem, path = _azure(root, options, source=source, secrets=secrets), root.split("://", 1)[1]
        options = {k: v for k, v in options.items() if k == "endpoint_url"}
    else:
        raise SourceError(f"unsupported root {secrets.redact(root)!r}: expected s3://, az:// or a "
                          "local folder", source=source)
    location = Location(filesystem, scheme=scheme, source=source, redact=secrets.redact,
                        endpoint=options.get("endpoint_url"), attempts=_attempts(options, source),
                        request_timeout=_request_timeout(options, source),
                        limits=read_limits(options, source))
    return location, path.rstrip("/")


def _s3(root: str, options: dict[str, Any], *, source: str, secrets: Secrets) -> pafs.S3FileSystem:
    unknown = sorted(set(options) - set(S3_OPTIONS))
    if unknown:
        raise SourceError(f"options.{unknown[0]}: unknown S3 option; expected one of: "
                          f"{', '.join(S3_OPTIONS)}", source=source)
    for name in ("key", "secret", "token"):
        if options.get(name):
            secrets.add_setting(str(options[name]))
    kwargs: dict[str, Any] = {
        "region": _region(root, options),
        # AWS's default strategy: the standard one takes a retry quota that pyarrow never
        # refunds, so after ~100 retries a filesystem stops retrying for good
        "retry_strategy": pafs.AwsDefaultS3RetryStrategy(max_attempts=_attempts(options, source) - 1),
        "connect_timeout": _connect_timeout(options, source),
        "request_timeout": _request_timeout(options, source),
    }
    kwargs.update(_endpoint(options.get("endpoint_url")))
    kwargs.update(_credentials(options, source))
    try:
        return pafs.S3FileSystem(**kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise SourceError(f"cannot set up S3 for {root}: {secrets.redact(str(exc))}",
                          source=source) from None


def _azure(root: str, options: dict[str, Any], *, source: str,
           secrets: Secrets) -> pafs.FileSystem:
    """pyarrow's Azure filesystem for ``az://container/prefix``: the account's name and key
    (or a SAS token); ``endpoint_url`` for another host than Azure's, such as Azurite."""
    unknown = sorted(set(options) - set(AZURE_OPTIONS))
    if unknown:
        raise SourceError(f"options.{unknown[0]}: unknown Azure option; expected one of: "
                          f"{', '.join(AZURE_OPTIONS)}", source=source)
    for name in ("account_key", "sas_token"):
        if options.get(name):
            secrets.add_setting(str(options[name]))
    kwargs: dict[str, Any] = {k: str(options[k]) for k in ("account_name", "account_key", "sas_token")
                              if options.get(k)}
    endpoint = options.get("endpoint_url")
    if endpoint:
        parts = urlsplit(str(endpoint))
        for service in ("blob", "dfs"):
            kwargs[f"{service}_storage_authority"] = parts.netloc
            kwargs[f"{service}_storage_scheme"] = parts.scheme or "https"
    try:
        return pafs.AzureFileSystem(**kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise SourceError(f"cannot set up Azure for {root}: {secrets.redact(str(exc))}",
                          source=source) from None


def _attempts(options: Mapping[str, Any], source: str) -> int:
    return _number(options, "max_attempts", DEFAULT_MAX_ATTEMPTS, int, source)


def _request_timeout(options: Mapping[str, Any], source: str) -> float:
    return _number(options, "request_timeout", DEFAULT_REQUEST_TIMEOUT, float, source)


def _connect_timeout(options: Mapping[str, Any], source: str) -> float:
    return _number(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, float, source)


def read_limits(options: Mapping[str, Any], source: str) -> ReadLimits:
    """``ReadLimits`` from a source's options (``read_timeout``, ``min_read_speed``)."""
    attempts = _attempts(options, source)
    default = attempts * (_connect_timeout(options, source) + _request_timeout(options, source))
    return ReadLimits(_number(options, "read_timeout", default, float, source),
                      _number(options, "min_read_speed", DEFAULT_MIN_READ_SPEED, float, source),
                      explicit=options.get("read_timeout") is not None)


def _region(root: str, options: Mapping[str, Any]) -> str:
    """The region option, else the environment's; on AWS, else the bucket's own region."""
    region = options.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region or options.get("endpoint_url"):
        return region or "us-east-1"
    try:
        return pafs.resolve_s3_region(urlsplit(root).netloc)
    except (OSError, ValueError):
        return "us-east-1"


def _endpoint(url: str | None) -> dict[str, str]:
    """pyarrow's ``endpoint_override`` and ``scheme`` from an ``endpoint_url``."""
    if not url:
        return {}
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return {"endpoint_override": parts.netloc + parts.path.rstrip("/"), "scheme": parts.scheme}


def _credentials(options: Mapping[str, Any], source: str) -> dict[str, Any]:
    if _flag(options.get("anonymous")):
        return {"anonymous": True}
    key, secret = options.get("key"), options.get("secret")
    if bool(key) != bool(secret):
        raise SourceError("options: give both `key` and `secret` (or neither, to use the "
                          "environment's AWS credentials)", source=source)
    if not key:
        return {}
    return {"access_key": str(key), "secret_key": str(secret),
            "session_token": str(options["token"]) if options.get("token") else None}


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def _number(options: Mapping[str, Any], name: str, default: Any, kind: type, source: str) -> Any:
    """A positive number option (``default`` when absent)."""
    value = options.get(name, default)
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise SourceError(f"options.{name}: expected a positive number, got {value!r}", source=source)
    return number


def describe_options(root: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a root lives, for ``explain``: the endpoint and region, never credentials."""
    options = options or {}
    if not root.startswith(("s3://", "s3a://")):
        return {}
    detail = {"endpoint": options.get("endpoint_url") or "AWS", "region": options.get("region")}
    if _flag(options.get("anonymous")):
        detail["anonymous"] = True
    return {k: v for k, v in detail.items() if v}


# ---------------------------------------------------------------------- listings


def list_files(filesystem: pafs.FileSystem, pattern: str) -> list[pafs.FileInfo]:
    """Files matching a folder (every file under it), a glob (``*``, ``?``, ``**``) or a file.

    One listing request (paged by the server) for a folder or a glob, one HEAD for a file; a
    missing folder or bucket lists as empty (``CountingHandler.missing_bucket`` tells which).
    """
    if _has_magic(pattern):
        base = _static_prefix(pattern)
        deep = "**" in pattern or "/" in pattern[len(base) + 1:]
        matcher = glob_regex(pattern)
        return [i for i in _listing(filesystem, base, deep) if matcher.fullmatch(i.path)]
    folder = pattern.endswith("/")
    named_like_a_file = not folder and bool(posixpath.splitext(pattern)[1])
    if named_like_a_file and (info := _file(filesystem, pattern)):
        return [info]
    files = _listing(filesystem, pattern.rstrip("/"), True)
    if not files and not folder and not named_like_a_file and (info := _file(filesystem, pattern)):
        return [info]
    return files


def _file(filesystem: pafs.FileSystem, path: str) -> pafs.FileInfo | None:
    (info,) = filesystem.get_file_info([path])
    return info if info.type == pafs.FileType.File else None


def _listing(filesystem: pafs.FileSystem, folder: str, recursive: bool) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(folder, recursive=recursive, allow_not_found=True)
    return sorted((i for i in filesystem.get_file_info(selector) if i.is_file), key=lambda i: i.path)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob: ``*`` and ``?`` stay within a folder, ``**/`` spans folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _static_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return posixpath.dirname(head) if not head.endswith("/") else head.rstrip("/")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
