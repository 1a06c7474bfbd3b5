"""Local files opened beneath a root, never following a symlink out of it.

``open_beneath(root, relative)`` walks ``relative`` one component at a time from a descriptor
of the root, each ``os.open`` relative to the folder opened before it with ``O_NOFOLLOW``, so
no path is checked and then opened again (a symlink swapped in between cannot redirect the
read). A symlink met on the way is followed only while it stays beneath the root (Linux's
``RESOLVE_BENEATH``): its target is walked the same way, ``..`` never climbs above the root,
and an absolute target must lie under the root's path. Anything else raises ``Escape``. The
opened descriptor is then checked with ``fstat``: a regular file (a FIFO, device, socket or
folder is ``NotRegular``, opened with ``O_NONBLOCK`` so a FIFO never blocks) with a single
link unless hard links are allowed (``HardLink``). Reads use that descriptor only.

``list_beneath`` lists a root the same way: folders reached through symlinks are not entered,
a symlink to a file is listed when it leads to a regular file beneath the root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_SYMLINKS = 40  # as Linux's path walk allows
_PROC_FD = "/proc/self/fd"


class Escape(Exception):  # noqa: N818 - a refusal, raised as ForbiddenError by the caller
    """The path leads out of the root (through ``..`` or a symlink)."""


class NotRegular(OSError):
    """The path names a FIFO, device, socket or folder: nothing a blob function reads."""


class HardLink(OSError):
    """The file has more than one link and the source does not allow hard links."""


def open_beneath(root: str, relative: str, *, allow_hard_links: bool = False,
                 real_root: str | None = None) -> int:
    """A read-only descriptor of ``relative`` beneath ``root`` (see module doc; ``real_root``:
    the root with its symlinks resolved, if known); the caller closes it. Raises ``Escape``,
    ``NotRegular``, ``HardLink`` or ``OSError``."""
    real_root = real_root or os.path.realpath(root)
    fd = _walk(root, relative, real_root)
    try:
        check_opened(fd, allow_hard_links=allow_hard_links)
        _check_still_beneath(fd, real_root)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_opened(fd: int, *, allow_hard_links: bool) -> os.stat_result:
    """The descriptor's ``fstat``, if it is a regular file with the links allowed."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegular(f"not a regular file (a {_kind(info.st_mode)})")
    if info.st_nlink > 1 and not allow_hard_links:
        raise HardLink(f"a hard link ({info.st_nlink} links): hard links are not "
                       "read unless the files source sets allow_hard_links: true")
    return info


def _walk(root: str, relative: str, real_root: str) -> int:
    """The descriptor of the last component, every component opened without following."""
    parts = deque(_parts(relative))
    folders = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    hops = 0
    try:
        while parts:
            name = parts.popleft()
            if name == "..":
                if len(folders) == 1:
                    raise Escape(f"{relative!r} climbs above the root")
                os.close(folders.pop())
                continue
            try:
                if not parts:
                    _refuse_special(name, folders[-1])
                fd = os.open(name, _FILE if not parts else _DIR, dir_fd=folders[-1])
            except OSError as exc:
                target = _symlink(name, folders[-1], exc)
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links") from None
                parts.extendleft(reversed(_target_parts(target, (root, real_root), folders,
                                                        relative)))
                continue
            if not parts:
                return fd
            folders.append(fd)
        raise NotRegular("not a regular file (a folder)")
    finally:
        for fd in folders:
            os.close(fd)


def _refuse_special(name: str, folder: int) -> None:
    """Refuse a FIFO, device or socket before opening it (opening some has effects); the
    ``fstat`` of what is opened stays the check that counts."""
    info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise NotRegular(f"not a regular file (a {_kind(info.st_mode)})")


def _symlink(name: str, folder: int, error: OSError) -> str:
    """The target of ``name`` when opening it failed because it is a symlink; else the error."""
    if isinstance(error, NotRegular) or error.errno not in (errno.ELOOP, errno.ENOTDIR,
                                                            errno.EMLINK):
        raise error
    try:
        return os.readlink(name, dir_fd=folder)
    except OSError:
        raise error from None


def _target_parts(target: str, roots: tuple[str, str], folders: list[int],
                  relative: str) -> list[str]:
    """The components a symlink's target adds to the walk: a relative target from the folder
    it lies in; an absolute one from the root, when it lies under the root's path (as
    declared, or with its symlinks resolved)."""
    if not target.startswith("/"):
        return _parts(target)
    for base in {os.path.normpath(r) for r in roots}:
        inner = os.path.normpath(target)
        if inner == base or inner.startswith(base.rstrip("/") + "/"):
            while len(folders) > 1:
                os.close(folders.pop())
            return _parts(inner[len(base):])
    raise Escape(f"{relative!r} leads through a symlink out of the root")


def _check_still_beneath(fd: int, real_root: str) -> None:
    """Where the kernel says the opened file is, when it can say: under the root (a folder on
    the way moved out of the root while it was walked is caught here)."""
    try:
        where = os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:
        return  # no /proc (macOS): the component walk alone confines
    if not where.startswith(real_root.rstrip("/") + "/"):
        raise Escape("the file was moved out of the root while it was opened")


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def read_from(fd: int, length: int, chunk: int = 64 << 20) -> bytes | bytearray:
    """Up to ``length`` bytes from the start of ``fd``, never more: one ``pread`` for up to
    ``chunk`` bytes, else chunks read into one buffer (returned as is, not copied again). A
    file that shrank gives fewer bytes; one that grew gives no more."""
    if length <= chunk:
        return os.pread(fd, length, 0)
    buffer = bytearray(length)
    done = 0
    with memoryview(buffer) as view:
        while done < length:
            n = os.preadv(fd, [view[done:done + chunk]], done)
            if n == 0:
                break
            done += n
    if done < length:
        del buffer[done:]
    return buffer


# ---------------------------------------------------------------------- listings


def list_beneath(root: str, *, allow_hard_links: bool = False) -> Iterator[tuple[str, os.stat_result]]:
    """``(relative path, stat)`` of every file a read beneath ``root`` would open: regular
    files with one link (or any, when allowed), and symlinks leading to such a file beneath the
    root. Folders reached through a symlink are not entered (``os.fwalk`` checks each folder it
    opens is the one it listed)."""
    for folder, _, files, folder_fd in os.fwalk(root, follow_symlinks=False):
        inner = os.path.relpath(folder, root)
        for name in files:
            relative = name if inner == "." else f"{inner}/{name}"
            info = _listed(root, relative, name, folder_fd, allow_hard_links)
            if info is not None:
                yield relative, info


def _listed(root: str, relative: str, name: str, folder_fd: int,
            allow_hard_links: bool) -> os.stat_result | None:
    with contextlib.suppress(OSError, Escape):
        info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):
            return info if info.st_nlink == 1 or allow_hard_links else None
        if stat.S_ISLNK(info.st_mode):
            fd = open_beneath(root, relative, allow_hard_links=allow_hard_links)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
    return None
