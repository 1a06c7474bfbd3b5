"""What a failed request for an S3 object means: a missing object, a passing fault, a refusal.

pyarrow reports an S3 failure as an ``OSError`` whose text holds the HTTP status when the AWS
SDK did not know the error (``AWS Error UNKNOWN (HTTP status 429) during HeadObject``), and the
SDK's name for it otherwise (``AWS Error SLOW_DOWN``, ``ACCESS_DENIED``, ``NO_SUCH_KEY``,
``NETWORK_CONNECTION``: the status is then gone); a HEAD answered 404 is a
``FileNotFoundError``. ``classify`` reads the status where there is one and the name where
there is not, and sorts the failure by the one rule every blob read follows:

- ``MISSING``: the object does not exist (404, ``NoSuchKey``): that file's own per-row error;
- ``TRANSIENT``: 408, 429, any 5xx, throttling, a timeout, a reset or an unreachable endpoint,
  and a body shorter than the range asked for: tried again with backoff, then a ``SourceError``;
- ``REFUSED``: any other 4xx (400, 401, 403, 409, 416, 499, ...), a missing bucket, and any
  failure that says nothing known: a ``SourceError`` at once (the source, not the file, is
  wrong: credentials, permissions, the endpoint).
"""

from __future__ import annotations

import re

MISSING, TRANSIENT, REFUSED = "missing", "transient", "refused"

_STATUS = re.compile(r"HTTP (?:status|response code):? (\d{3})\b", re.I)
# the AWS SDK's names for the errors it recognises, which then stand in for the status
_NAMES = re.compile(r"AWS Error ([A-Z_]+)")
_TRANSIENT_NAMES = {"INTERNAL_FAILURE", "SERVICE_UNAVAILABLE", "SLOW_DOWN", "THROTTLING",
                    "REQUEST_TIMEOUT", "NETWORK_CONNECTION", "REQUEST_TIMEOUT_EXCEPTION"}
_MISSING_NAMES = {"NO_SUCH_KEY", "RESOURCE_NOT_FOUND"}
# failures below HTTP, in the words of curl, the SDK or fedquery's own reads
_NETWORK = re.compile(r"curlCode|timed? ?out|timeout|reset by peer|connection reset|"
                      r"Connection refused|Broken pipe|unexpected eof|cannot reach|"
                      r"kept failing: reset|partial file|Operation too slow", re.I)
_NO_BUCKET = re.compile(r"NoSuchBucket|NO_SUCH_BUCKET|bucket '[^']*' does not exist", re.I)


def classify(exc: BaseException) -> str:
    """``MISSING``, ``TRANSIENT`` or ``REFUSED`` for a failed S3 request (see module doc)."""
    text = str(exc)
    if _NO_BUCKET.search(text):
        return REFUSED
    status = status_of(text)
    if status is not None:
        return by_status(status)
    names = set(_NAMES.findall(text))
    if names & _MISSING_NAMES or isinstance(exc, FileNotFoundError):
        return MISSING
    if names & _TRANSIENT_NAMES or isinstance(exc, TimeoutError | ConnectionError) \
            or _NETWORK.search(text):
        return TRANSIENT
    return REFUSED


def by_status(status: int) -> str:
    """The class of an HTTP status: 404 missing; 408, 429 and 5xx transient; others refused."""
    if status == 404:
        return MISSING
    if status in (408, 429) or 500 <= status <= 599:
        return TRANSIENT
    return REFUSED


def status_of(text: str) -> int | None:
    """The HTTP status a failure's text gives, if it gives one."""
    match = _STATUS.search(text)
    return int(match.group(1)) if match else None
