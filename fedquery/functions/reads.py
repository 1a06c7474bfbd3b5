"""One file read exactly as it is: pinned when opened, every request checked, a change caught.

A read pins the file as it opens it: a local file by its ``fstat`` (size, modification and
change times, inode), an S3 object by its HEAD (size and ETag). It reads the bytes asked for
and checks that each request gave exactly as many; after the last byte it takes the pin again
(``fstat``, or one more HEAD) and compares. A file that changed meanwhile (grew, shrank, was
rewritten or replaced) raises ``Changed``: its bytes may be part old, part new, and are never
returned. Nothing is ever padded: a read that comes back short is an error.

pyarrow's S3 reads cannot say how many bytes a response held: a body shorter than the range
asked for (with a ``Content-Length`` to match) leaves the rest of the buffer as it was. So every
buffer's last byte is set to a random value before the request: if it is still that value
afterwards, either the file's byte is that value or the answer was short, and the request is
made again with the complement as the marker, which the file's byte cannot also equal (a check
of the last byte alone passed a short answer whenever the file's byte equalled the marker,
once in 256 short answers). A short answer of an object that has not changed is a transient
fault (``ShortRead``), tried again.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedquery.functions.confine import read_from

READ_CHUNK = 64 << 20  # bytes asked of S3 (or the disk) in one request


class Changed(ValueError):
    """The file changed while it was read (its pin differs after the read)."""


class Stale(Changed):
    """The file is not the version read earlier in the same query."""


class ShortRead(ConnectionError):
    """A request answered fewer bytes than it asked for, of a file that did not change."""


@dataclass(frozen=True)
class Read:
    """What one read gave: the bytes asked for, the file's size, and its pin."""

    data: bytes | bytearray
    size: int
    pin: tuple


Admit = Callable[[int, tuple], None]  # called with the size and pin once opened: may refuse
Request = Callable[[Callable[[], Any]], Any]  # runs one request, trying it again on faults


def local_pin(info: os.stat_result) -> tuple:
    """What identifies a version of a local file: a rewrite changes its times, if not its size."""
    return ("file", info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


def read_local(fd: int, length: int | None, admit: Admit) -> Read:
    """The first ``length`` bytes of an opened file (all when None), exactly, pinned."""
    before = os.fstat(fd)
    pin = local_pin(before)
    admit(before.st_size, pin)
    wanted = before.st_size if length is None else min(length, before.st_size)
    data = read_from(fd, wanted, READ_CHUNK)  # fewer bytes only if the file shrank
    if len(data) != wanted or local_pin(os.fstat(fd)) != pin:
        raise Changed("changed while it was read")
    return Read(data, before.st_size, pin)


def remote_pin(metadata: dict[str, Any], size: int) -> tuple:
    """What identifies a version of an S3 object: its size and ETag (or Last-Modified)."""
    tag = metadata.get("ETag") or metadata.get("Last-Modified") or b""
    return ("s3", size, tag.decode("latin-1") if isinstance(tag, bytes) else str(tag))


def read_remote(open_file: Callable[[], Any], length: int | None, admit: Admit,
                request: Request) -> Read:
    """The first ``length`` bytes of an S3 object (all when None), exactly, pinned: opened with
    ``open_file()`` (its HEAD: a ``remote_fs._CountingReader``), each request made through
    ``request``, the HEAD made again after the last byte."""
    reader = request(open_file)
    size = reader.size()
    pin = remote_pin(reader.metadata(), size)
    admit(size, pin)
    wanted = size if length is None else min(length, size)
    if wanted == 0:
        return Read(b"", size, pin)
    buffer = bytearray(wanted)
    with memoryview(buffer) as view:
        for start in range(0, wanted, READ_CHUNK):
            part = view[start:start + READ_CHUNK]
            request(lambda part=part, start=start: _fill(reader, part, start, pin, open_file))
    if _pin_now(open_file, request) != pin:
        raise Changed("changed while it was read")
    return Read(buffer, size, pin)


def _fill(reader: Any, part: memoryview, offset: int, pin: tuple,
          open_file: Callable[[], Any]) -> None:
    """Read ``part`` from ``offset``, exactly (see module doc); ``Changed`` if the object is
    not the one pinned (also when the request failed: a range past a shrunk object's end),
    ``ShortRead`` if it is and still came back short."""
    first = random.randrange(256)  # noqa: S311 - a sentinel, not a secret
    try:
        for marker in (first, first ^ 0xFF):
            part[-1] = marker
            got = reader.read_into(part, offset)
            if got != len(part):
                break
            if part[-1] != marker:
                return
    except OSError:
        _check_pin(open_file, pin)
        raise
    _check_pin(open_file, pin)
    raise ShortRead(f"S3 answered fewer bytes than the {len(part)} asked for from byte {offset}")


def _check_pin(open_file: Callable[[], Any], pin: tuple) -> None:
    """``Changed`` if the object is not the version pinned (a HEAD)."""
    again = open_file()
    if remote_pin(again.metadata(), again.size()) != pin:
        raise Changed("changed while it was read")


def _pin_now(open_file: Callable[[], Any], request: Request) -> tuple:
    reader = request(open_file)
    return remote_pin(reader.metadata(), reader.size())
