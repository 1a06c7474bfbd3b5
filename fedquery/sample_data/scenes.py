"""Pictures and point clouds for the sample data set: what a car would see in given weather.

Camera frames are small road scenes whose sky, light and texture follow the weather and the
time of day, so an image embedder can tell them apart; LIDAR sweeps are a ground plane with
a few car-sized boxes.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = (160, 96)
LIDAR_POINTS = 2048

# ---------------------------------------------------------------- camera images

PALETTES = {  # daylight colours: sky at the top, sky at the horizon, roadside, road
    "clear": ((70, 130, 220), (165, 205, 245), (85, 140, 60), (100, 100, 105)),
    "rain": ((75, 82, 95), (115, 122, 135), (55, 85, 55), (55, 58, 66)),
    "fog": ((170, 172, 175), (195, 197, 200), (140, 150, 140), (130, 130, 135)),
    "snow": ((185, 190, 200), (225, 228, 235), (238, 240, 245), (165, 165, 172)),
}
LIGHT = {"day": (1.0, 1.0, 1.0), "dusk": (0.8, 0.6, 0.5), "night": (0.15, 0.16, 0.24)}
CAR_COLOURS = ((180, 30, 30), (230, 230, 230), (30, 30, 35), (40, 70, 160), (150, 150, 155))
VANISHING_X = {"front": 80, "left": 112, "right": 48}
Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def render_frame(rng: np.random.Generator, weather: str, light: str, camera: str) -> bytes:
    """A small JPEG of a road scene whose colours follow the weather and time of day."""
    width, height = IMAGE_SIZE
    tint = rng.normal(1.0, 0.05) * rng.normal(1.0, 0.015, 3)  # exposure, white balance
    top, horizon, verge, road = (np.array(c) * tint for c in PALETTES[weather])
    hy = int(height * 0.42) + int(rng.integers(-3, 4))
    vx = VANISHING_X[camera] + int(rng.integers(-4, 5))
    img = Image.fromarray(_background(top, horizon, verge, hy))
    draw = ImageDraw.Draw(img)
    _draw_road(draw, _rgb(road), vx, hy)
    cars = _draw_cars(draw, rng, vx, hy)
    _draw_weather(draw, rng, weather)
    img = Image.fromarray(_lighting(np.asarray(img, dtype=np.float32), rng, weather, light))
    if light == "night":
        _draw_tail_lights(ImageDraw.Draw(img), cars)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    """A colour as the int triple that ImageDraw takes."""
    r, g, b = (int(c) for c in np.clip(colour, 0, 255))
    return r, g, b


def _background(top: np.ndarray, horizon: np.ndarray, ground: np.ndarray, hy: int) -> np.ndarray:
    """Sky graded from `top` to `horizon` above row `hy`, plain `ground` below."""
    width, height = IMAGE_SIZE
    t = np.linspace(0.0, 1.0, hy)[:, None]
    rows = np.concatenate([(1 - t) * top + t * horizon, np.repeat(ground[None], height - hy, 0)])
    return np.repeat(rows[:, None, :], width, axis=1).clip(0, 255).astype(np.uint8)


def _road_point(vx: int, hy: int, t: float, side: float) -> tuple[float, float]:
    """Point at depth `t` (0 horizon, 1 bottom) and `side` (-1 left edge .. 1 right edge)."""
    width, height = IMAGE_SIZE
    centre = vx + t * (width - vx - vx)  # the road ends at the mirror of its vanishing point
    return centre + side * (2 + 93 * t), hy + t * (height - hy)


def _draw_road(draw: ImageDraw.ImageDraw, colour: tuple[int, int, int], vx: int, hy: int) -> None:
    """The road as a trapezoid to the vanishing point, with a dashed centre line."""
    corners = [_road_point(vx, hy, t, s) for t, s in ((0, -1), (0, 1), (1, 1), (1, -1))]
    draw.polygon(corners, fill=colour)
    for start, end in ((0.05, 0.12), (0.22, 0.34), (0.48, 0.66), (0.82, 1.0)):
        a, b = _road_point(vx, hy, start, 0), _road_point(vx, hy, end, 0)
        draw.line([a, b], fill=(235, 235, 225), width=1 + int(3 * end))


def _draw_cars(draw: ImageDraw.ImageDraw, rng: np.random.Generator, vx: int, hy: int) -> list[Box]:
    """One to three coloured boxes on the road, far ones first; returns their boxes."""
    boxes = []
    for t in np.sort(rng.uniform(0.1, 0.7, int(rng.integers(1, 4)))):
        x, y = _road_point(vx, hy, t, float(rng.choice([-0.5, 0.5])))
        w = 4 + 36 * t
        box = (x - w / 2, y - 0.65 * w, x + w / 2, y)
        draw.rectangle(box, fill=CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))])
        draw.rectangle(
            (box[0] + w * 0.15, box[1] + 1, box[2] - w * 0.15, box[1] + w * 0.25), fill=(40, 45, 55)
        )
        boxes.append(box)
    return boxes


def _draw_weather(draw: ImageDraw.ImageDraw, rng: np.random.Generator, weather: str) -> None:
    """Rain streaks or snowflakes over the whole picture."""
    if weather not in ("rain", "snow"):
        return
    width, height = IMAGE_SIZE
    for x, y in zip(rng.uniform(0, width, 70), rng.uniform(0, height, 70), strict=True):
        if weather == "rain":
            draw.line([(x, y), (x - 2, y + 7)], fill=(170, 175, 185))
        else:
            draw.ellipse((x, y, x + 1.5, y + 1.5), fill=(248, 248, 250))


def _lighting(px: np.ndarray, rng: np.random.Generator, weather: str, light: str) -> np.ndarray:
    """Fog haze, the light of the time of day, headlight glow at night, sensor noise."""
    if weather == "fog":
        px = px * 0.45 + 195.0 * 0.55
    px = px * np.array(LIGHT[light], dtype=np.float32)
    if light == "night":
        px = px + _headlight_glow()
    px = px + rng.normal(0.0, 3.0, px.shape)
    return px.clip(0, 255).astype(np.uint8)


def _headlight_glow() -> np.ndarray:
    """Warm light from the car's own headlights at the bottom centre, (H, W, 3)."""
    width, height = IMAGE_SIZE
    y, x = np.mgrid[0:height, 0:width]
    fall = np.exp(-(((x - width / 2) / 40.0) ** 2) - ((y - height) / 22.0) ** 2)
    return fall[..., None] * np.array([95.0, 85.0, 55.0])


def _draw_tail_lights(draw: ImageDraw.ImageDraw, boxes: list[Box]) -> None:
    """Bright red tail lights at the bottom corners of each car, for night scenes."""
    for x0, _, x1, y1 in boxes:
        for x in (x0, x1 - 2):
            draw.rectangle((x, y1 - 3, x + 2, y1 - 1), fill=(255, 45, 30))


# ---------------------------------------------------------------- LIDAR point clouds


def pointcloud(rng: np.random.Generator, weather: str) -> np.ndarray:
    """LIDAR_POINTS float32 rows (x, y, z, intensity): ground, boxy cars, rain/snow clutter."""
    n_ground = int(LIDAR_POINTS * 0.7)
    n_clutter = int(LIDAR_POINTS * 0.03) if weather in ("rain", "snow") else 0
    ground = np.column_stack(
        [
            rng.uniform(-40.0, 40.0, (n_ground, 2)),
            rng.normal(-1.73, 0.02, n_ground),
            rng.uniform(0.05, 0.3, n_ground),
        ]
    )
    clutter = np.column_stack([rng.normal(0.0, 3.0, (n_clutter, 3)), np.full(n_clutter, 0.02)])
    boxes = _box_points(rng, LIDAR_POINTS - n_ground - n_clutter)
    return np.vstack([ground, boxes, clutter]).astype(np.float32)


def _box_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` points on the surfaces of three to six car-sized boxes standing on the ground."""
    k = int(rng.integers(3, 7))
    centres = np.column_stack([rng.uniform(-30, 30, k), rng.uniform(-15, 15, k), np.full(k, -0.9)])
    local = rng.uniform(-0.5, 0.5, (n, 3))
    face = rng.integers(0, 3, n)
    rows = np.arange(n)
    local[rows, face] = np.copysign(0.5, local[rows, face])
    xyz = local * np.array([4.5, 1.9, 1.6]) + centres[rng.integers(0, k, n)]
    return np.column_stack([xyz, rng.uniform(0.4, 0.9, n)])


def write_las(path: Path, points: np.ndarray) -> None:
    """A LAS 1.2 file (point format 0) with millimetre precision and a fixed date."""
    import laspy

    las = laspy.create(point_format=0, file_version="1.2")
    las.header.scales = np.array([0.001, 0.001, 0.001])
    las.header.offsets = np.zeros(3)
    las.header.creation_date = date(2024, 3, 4)
    las.x, las.y, las.z = points[:, 0], points[:, 1], points[:, 2]
    las.intensity = (points[:, 3] * 65535).astype(np.uint16)
    las.write(str(path))
