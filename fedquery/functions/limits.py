"""The settings of a ``files`` source that bound its reads: size caps, hard links, retries,
a deadline per read.

```yaml
camera:
  kind: files
  root: blobs/camera/
  limits: {read_blob: 64MiB, thumbnail_pixels: 50000000}   # each key optional
  allow_hard_links: false
  read_attempts: 5
  read_timeout: 120    # seconds one read of one file may take in all
```

Sizes are a number of bytes or a number with a unit (``256MiB``, ``1.5 GiB``, ``500MB``:
KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000). The source owns and checks
these settings: a bad value is a ``CatalogError`` naming the key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedquery.errors import CatalogError

MIB, GIB = 1 << 20, 1 << 30
SIZE_LIMITS = {
    "image_info": 16 * MIB,        # how far image_info may read looking for the end of a header
    "thumbnail": 256 * MIB,        # bytes of an image read whole to make a thumbnail
    "read_blob": 256 * MIB,        # bytes of a file read_blob returns
    "pointcloud_info": 512 * MIB,  # bytes of a KITTI/NPY/PCD file read whole for its bounds
    "read_pointcloud": 512 * MIB,  # bytes of a point-cloud file read whole for its points
    "embed_image": 32 * MIB,       # bytes of an image read whole to embed it
    "image_stats": 64 * MIB,       # bytes of an image read whole for image_stats (and profile)
    "pointcloud_stats": 512 * MIB,  # bytes of a point cloud read whole for pointcloud_stats
    "decode_memory": 1 * GIB,      # memory the source's decodes running at once may take
    "batch_memory": 2 * GIB,       # memory the results of its calls running at once may hold
}
COUNT_LIMITS = {
    "thumbnail_pixels": 100_000_000,  # width x height of an image decoded for a thumbnail
    "pointcloud_points": 50_000_000,  # points of one cloud read_pointcloud returns
}
DEFAULTS = {**SIZE_LIMITS, **COUNT_LIMITS}
DEFAULT_READ_ATTEMPTS = 5
MAX_READ_ATTEMPTS = 100
DEFAULT_READ_TIMEOUT = 120.0  # seconds: a 256 MiB file at 2.5 MB/s, with room for retries
SETTINGS = ("root", "options", "limits", "allow_hard_links", "read_attempts", "read_timeout")

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.I)
_COUNT = re.compile(r"\s*\d[\d_]*\s*")


@dataclass(frozen=True)
class FilesSettings:
    """What a files source allows: caps per function (``limits``), hard links, read attempts,
    the seconds one read of one file may take (``read_timeout``)."""

    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULTS))
    allow_hard_links: bool = False
    read_attempts: int = DEFAULT_READ_ATTEMPTS
    read_timeout: float = DEFAULT_READ_TIMEOUT

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str) -> FilesSettings:
        """The checked settings of a files source (``CatalogError`` naming the key under
        ``where``, ``catalog.yaml: sources.<name>``)."""
        def fail(key: str, message: str) -> CatalogError:
            return CatalogError(f"{where}.{key}: {message}")

        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise fail(unknown[0], f"unknown setting of a files source; expected one of: "
                                   f"{', '.join(SETTINGS)}")
        hard_links = settings.get("allow_hard_links", False)
        if not isinstance(hard_links, bool):
            raise fail("allow_hard_links", f"expected true or false, got {hard_links!r}")
        attempts = settings.get("read_attempts", DEFAULT_READ_ATTEMPTS)
        try:
            attempts = _count(attempts)
        except ValueError:
            attempts = 0
        if not 1 <= attempts <= MAX_READ_ATTEMPTS:
            raise fail("read_attempts", f"expected a number of attempts from 1 to "
                                        f"{MAX_READ_ATTEMPTS}, got {settings['read_attempts']!r}")
        timeout = settings.get("read_timeout", DEFAULT_READ_TIMEOUT)
        if not _seconds(timeout):
            raise fail("read_timeout", f"expected a positive number of seconds, got {timeout!r}")
        return cls(_limits(settings.get("limits"), fail), hard_links, attempts, float(timeout))


def _seconds(value: Any) -> bool:
    """Whether ``value`` is a finite, positive number of seconds (not a bool, not a string)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and 0 < value < float("inf"))


def _limits(raw: Any, fail) -> dict[str, int]:
    """Every cap: the defaults, overridden by the source's ``limits`` mapping."""
    if raw is None:
        return dict(DEFAULTS)
    if not isinstance(raw, Mapping):
        raise fail("limits", f"expected a mapping of caps such as {{read_blob: 256MiB}}, "
                             f"got {raw!r}")
    limits = dict(DEFAULTS)
    for key, value in raw.items():
        if key not in DEFAULTS:
            raise fail(f"limits.{key}", f"unknown limit; expected one of: {', '.join(DEFAULTS)}")
        try:
            limits[key] = parse_size(value) if key in SIZE_LIMITS else _count(value)
        except ValueError as exc:
            raise fail(f"limits.{key}", str(exc)) from None
    return limits


def parse_size(value: Any) -> int:
    """Bytes in ``value``: an integer, or a number and a unit (``"256MiB"``, ``"1.5 GB"``).

    >>> parse_size("256MiB"), parse_size("1.5KiB"), parse_size(4096)
    (268435456, 1536, 4096)
    """
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match and match.group(2).lower() in _UNITS:
        size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"expected a size such as 256MiB, 1GB or a number of bytes, got {value!r}")
    if size != int(size) or size < 1:
        raise ValueError(f"expected a positive whole number of bytes, got {value!r}")
    return int(size)


def _count(value: Any) -> int:
    """A positive count: an integer, or digits with ``_`` separators (``"50_000_000"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and _COUNT.fullmatch(value):
        count = int(value.replace("_", ""))
    else:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    if count < 1:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return count


def size_text(size: int) -> str:
    """A byte count as people read it: ``256 MiB``, ``1.5 GiB``, ``512 bytes``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"
