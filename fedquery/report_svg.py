"""Inline SVG charts for the profile report: histograms split by group and a 2-D scatter.

Plain SVG text, no script and no external font or stylesheet, so a page that holds them
renders with no network. Every label is user data somewhere (a group value, a URI) and is
escaped. Numbers are laid out in SVG user units; the page's CSS sizes the ``<svg>``.

    histogram_svg("brightness", [Series("rain", "#4e79a7", values)])
    scatter_svg(points, colours, titles, ("PC1 (41%)", "PC2 (22%)"))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

# Tableau 10 (minus grey, kept for "other"): distinct, and readable on white.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7")
OTHER_COLOUR = "#9c9c9c"
BINS = 24
LOG_SPAN = 100.0  # values spanning more than this factor (all > 0) get logarithmic bins
WIDTH, HEIGHT = 280, 160
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 22, 30


@dataclass(frozen=True)
class Series:
    """One group's values of one measure, and the colour it is drawn in."""

    label: str
    colour: str
    values: np.ndarray


def histogram_svg(name: str, series: Sequence[Series], *, unit: str = "") -> str:
    """A histogram of ``name`` over shared bins: bars of counts for one series, outlined steps
    of each group's share of its files for several (so groups of any size compare)."""
    series = [s for s in series if s.values.size]
    if not series:
        return ""
    everything = np.concatenate([s.values for s in series])
    log = _use_log(everything)
    edges = _edges(everything, log)
    shared = len(series) > 1
    heights = [_heights(s.values, edges, log, shared) for s in series]
    top = max(float(h.max()) for h in heights) or 1.0
    body = [_bars(series[0], heights[0], top)] if not shared else [
        _steps(s, h, top) for s, h in zip(series, heights, strict=True)]
    title = name + (" (log scale)" if log else "")
    return _frame(title, body, _x_axis(edges, log, unit), _y_axis(top, shared),
                  cls="fq-hist", data=name)


def scatter_svg(points: np.ndarray, colours: Sequence[str], titles: Sequence[str],
                axes: tuple[str, str], *, size: int = 420) -> str:
    """A scatter of ``points`` (n×2), one circle per point, each with its own tooltip."""
    if len(points) == 0:
        return ""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    inner = size - 2 * 24
    xy = 24 + (points - lo) / span * inner
    circles = [f'<circle cx="{x:.1f}" cy="{size - y:.1f}" r="3" fill="{c}" fill-opacity="0.75">'
               f"<title>{escape(t)}</title></circle>"
               for (x, y), c, t in zip(xy.tolist(), colours, titles, strict=True)]
    labels = (f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">{escape(axes[0])}</text>'
              f'<text x="12" y="{size / 2}" text-anchor="middle" '
              f'transform="rotate(-90 12 {size / 2})">{escape(axes[1])}</text>')
    return (f'<svg class="fq-map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
            f'role="img" aria-label="embedding map"><rect x="0.5" y="0.5" width="{size - 1}" '
            f'height="{size - 1}" fill="none" stroke="#ddd"/>{"".join(circles)}{labels}</svg>')


def _use_log(values: np.ndarray) -> bool:
    low, high = float(values.min()), float(values.max())
    return low > 0 and high / low > LOG_SPAN


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    data = np.log10(values) if log else values
    low, high = float(data.min()), float(data.max())
    if high <= low:  # every value equal: one bin around it
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    return np.linspace(low, high, BINS + 1)


def _heights(values: np.ndarray, edges: np.ndarray, log: bool, share: bool) -> np.ndarray:
    counts, _ = np.histogram(np.log10(values) if log else values, bins=edges)
    return counts / values.size if share else counts.astype(float)


def _x(i: float) -> float:
    return LEFT + i * (WIDTH - LEFT - RIGHT) / BINS


def _y(h: float, top: float) -> float:
    return HEIGHT - BOTTOM - h / top * (HEIGHT - TOP - BOTTOM)


def _bars(series: Series, heights: np.ndarray, top: float) -> str:
    bars = [f'<rect x="{_x(i):.1f}" y="{_y(h, top):.1f}" width="{_x(1) - _x(0) - 1:.1f}" '
            f'height="{_y(0, top) - _y(h, top):.1f}"/>' for i, h in enumerate(heights.tolist()) if h]
    return (f'<g fill="{series.colour}"><title>{escape(series.label)}: '
            f"{series.values.size:,} files</title>{''.join(bars)}</g>")


def _steps(series: Series, heights: np.ndarray, top: float) -> str:
    points = [f"{_x(0):.1f},{_y(0, top):.1f}"]
    for i, h in enumerate(heights.tolist()):
        points += [f"{_x(i):.1f},{_y(h, top):.1f}", f"{_x(i + 1):.1f},{_y(h, top):.1f}"]
    points.append(f"{_x(BINS):.1f},{_y(0, top):.1f}")
    return (f'<polyline fill="{series.colour}" fill-opacity="0.12" stroke="{series.colour}" '
            f'stroke-width="1.5" points="{" ".join(points)}"><title>{escape(series.label)}: '
            f"{series.values.size:,} files</title></polyline>")


def _x_axis(edges: np.ndarray, log: bool, unit: str) -> str:
    base = HEIGHT - BOTTOM
    ticks = []
    for i, anchor in ((0, "start"), (BINS // 2, "middle"), (BINS, "end")):
        value = 10 ** edges[i] if log else edges[i]
        ticks.append(f'<text x="{_x(i):.1f}" y="{base + 13}" text-anchor="{anchor}">'
                     f"{escape(number(value, unit))}</text>")
    return f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#888"/>' + "".join(ticks)


def _y_axis(top: float, share: bool) -> str:
    label = f"{top:.0%}" if share else f"{top:,.0f}"
    return (f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>'
            f'<text x="{LEFT - 3}" y="{TOP + 8}" text-anchor="end">{label}</text>'
            f'<text x="{LEFT - 3}" y="{HEIGHT - BOTTOM}" text-anchor="end">0</text>')


def _frame(title: str, body: list[str], x_axis: str, y_axis: str, *, cls: str, data: str) -> str:
    return (f'<svg class="{cls}" data-measure="{escape(data)}" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
            f'<text x="{LEFT}" y="14" font-weight="bold">{escape(title)}</text>'
            f"{''.join(body)}{x_axis}{y_axis}</svg>")


def number(value: float, unit: str = "") -> str:
    """A short label for an axis tick: 3 significant digits, bytes as KB/MB/GB."""
    if unit == "bytes":
        for scale, suffix in ((1 << 30, " GB"), (1 << 20, " MB"), (1 << 10, " KB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.0f} B"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        exponent = math.floor(math.log10(abs(value)))
        return f"{value / 10 ** exponent:.2g}e{exponent}"
    return f"{value:.3g}"
