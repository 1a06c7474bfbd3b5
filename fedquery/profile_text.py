"""A profile's summary as lines of text, for ``fedquery profile`` on a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedquery.functions.limits import size_text
from fedquery.profile_summary import FLAGS, IMAGE_MEASURES

if TYPE_CHECKING:
    from fedquery.profile import Profile


def summary_text(profile: Profile) -> str:
    """Counts, kinds, formats, sizes, measures, flags, duplicates and errors, one topic a line."""
    s = profile.summary
    lines = [repr(profile), _line("files", f"{s['total']:,} (from {s['rows']:,} rows): "
                                          f"{s['ok']:,} ok, {s['missing']:,} missing, "
                                          f"{s['corrupt']:,} corrupt, {s['forbidden']:,} forbidden")]
    lines.append(_line("kinds", _counts(s["kinds"])))
    lines.append(_line("formats", _counts(s["formats"])))
    b = s["bytes"]
    if b["total"] is not None:
        lines.append(_line("bytes", f"{size_text(b['total'])} in all; {size_text(b['min'])} to "
                                    f"{size_text(b['max'])}, mean {size_text(round(b['mean']))}"))
    images = s["images"]
    if images["count"]:
        w, h = images["width"], images["height"]
        lines.append(_line("images", f"{images['count']:,} read: {w['min']}x{h['min']} to "
                                     f"{w['max']}x{h['max']} px; modes {_counts(images['modes'])}"))
        lines += [_line(name, _range(images[name])) for name in IMAGE_MEASURES]
    clouds = s["pointclouds"]
    if clouds["count"]:
        lines.append(_line("pointclouds", f"{clouds['count']:,} read: {clouds['points']['total']:,} "
                                          f"points; {_range(clouds['points'])} per file"))
        lines.append(_line("density", _range(clouds["density"]) + " points per square unit"))
    lines.append(_line("flags", ", ".join(f"{flag} {s['flags'][flag]:,}" for flag in FLAGS)))
    lines.append(_line("duplicates", _sets(s["duplicates"]) + "; near duplicates "
                                     + _sets(s["near_duplicates"])))
    lines += [_line("errors" if i == 0 else "", f"{n:,} x {error}")
              for i, (error, n) in enumerate(s["errors"].items())]
    return "\n".join(lines)


def _line(topic: str, text: str) -> str:
    return f"  {topic:<14} {text}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items()) or "none"


def _range(values: dict[str, Any]) -> str:
    if values["min"] is None:
        return "none"
    return f"{_number(values['min'])} to {_number(values['max'])}, mean {_number(values['mean'])}"


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _sets(sets: dict[str, int]) -> str:
    return f"{sets['sets']:,} sets of {sets['files']:,} files"
