"""The EXIF fields a profile shows: camera make and model, capture time, GPS presence, orientation.

Read from the metadata Pillow's lazy open already parsed (no pixel is decoded). A damaged or
odd EXIF block gives None fields, never an exception: EXIF is written by thousands of
cameras and apps, and a bad tag must not hide the pixel statistics of a good image.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fedquery.functions.lazy_pil import Image

MAKE, MODEL, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
EXIF_IFD, GPS_IFD, DATETIME_ORIGINAL = 0x8769, 0x8825, 0x9003
MAX_TEXT = 200  # characters kept of a make or model (a crafted tag may hold megabytes)
EXIF_FIELDS = ("camera_make", "camera_model", "captured_at", "has_gps", "orientation")


def exif_fields(img: Image.Image) -> dict[str, Any]:
    """camera_make, camera_model, captured_at (EXIF DateTimeOriginal, else DateTime; a naive
    local time as cameras write it), has_gps (a non-empty GPS IFD), orientation (1..8).

    An image without EXIF gives None fields and has_gps False.
    """
    try:
        exif = img.getexif()
        fields = {"camera_make": _text(exif.get(MAKE)), "camera_model": _text(exif.get(MODEL)),
                  "captured_at": _captured_at(exif), "has_gps": _has_gps(exif),
                  "orientation": _orientation(exif.get(ORIENTATION))}
    except Exception:  # noqa: BLE001 - a damaged EXIF block raises anything from the parser
        return no_exif()
    return fields


def no_exif(has_gps: bool | None = False) -> dict[str, Any]:
    """The fields of an image without EXIF (has_gps None: not known, the file did not open)."""
    return {"camera_make": None, "camera_model": None, "captured_at": None, "has_gps": has_gps,
            "orientation": None}


def parse_exif_time(value: Any) -> datetime | None:
    """"YYYY:MM:DD HH:MM:SS" (EXIF's form; '-' between date parts accepted) as a datetime, None
    if absent, blank ("0000:00:00 ...") or not a real date."""
    text = _text(value)
    if text is None or len(text) < 19:
        return None
    text = text[:19].replace("-", ":", 2)
    try:
        return datetime.strptime(text, "%Y:%m:%d %H:%M:%S")  # noqa: DTZ007 - EXIF has no zone
    except ValueError:
        return None


def _captured_at(exif: Image.Exif) -> datetime | None:
    original = exif.get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL)
    return parse_exif_time(original) or parse_exif_time(exif.get(DATETIME))


def _has_gps(exif: Image.Exif) -> bool:
    return GPS_IFD in exif and bool(exif.get_ifd(GPS_IFD))


def _orientation(value: Any) -> int | None:
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _text(value: Any) -> str | None:
    """A tag's text, NULs and spaces trimmed; None when empty or not text."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()[:MAX_TEXT]
    return value or None
