"""Image and point-cloud functions over bytes, checked on real files.

Images: those that ship inside scikit-image (`skimage/data`) and scikit-learn
(`sklearn/datasets/images`) when installed, and files written here with Pillow in many formats
and modes. Point clouds: LAS/LAZ files from laspy's own test data (`tests/data/laspy`, BSD
licence beside them), LAS/LAZ written with laspy, and KITTI `.bin`, `.npy` and `.pcd` files
written here per their specs. Every answer is compared with Pillow's, laspy's or numpy's.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import struct
import zlib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from fedquery.functions.images import (
    IMAGE_INFO_ARROW,
    IMAGE_INFO_TYPE,
    IMAGE_PREFIX_BYTES,
    NeedMoreBytes,
    image_error,
    image_info_array,
    image_info_from,
    thumbnail_png,
)
from fedquery.functions.pointclouds import (
    LAS_HEADER_BYTES,
    POINTCLOUD_INFO_ARROW,
    POINTCLOUD_INFO_TYPE,
    POINTS_ARROW,
    POINTS_TYPE,
    pointcloud_error,
    pointcloud_info_array,
    pointcloud_info_from,
    pointcloud_prefix_bytes,
    points_array,
    read_pointcloud_from,
)

DATA = Path(__file__).parent / "data"
LASPY_FILES = sorted((DATA / "laspy").glob("*.la[sz]"))
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp"}
IMAGE_FIELDS = ("format", "width", "height", "mode")
BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns on damaged TIFF tags


# ------------------------------------------------------------------ images: the files


def _package_dir(package: str, *parts: str) -> Path | None:
    """A data folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)), *parts)
    return folder if folder.is_dir() else None


def _package_images() -> list:
    """scikit-image's and scikit-learn's sample images, or one skipped param per missing package."""
    params = []
    for package, parts in (("skimage", ("data",)), ("sklearn", ("datasets", "images"))):
        folder = _package_dir(package, *parts)
        if folder is None:
            params.append(pytest.param(None, marks=pytest.mark.skip(reason=f"{package} not installed")))
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        params += [pytest.param(p, id=f"{package}-{p.name}") for p in files]
    return params


PACKAGE_IMAGES = _package_images()


def _picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB array: smooth gradients, a disc and some noise (so JPEGs are realistic)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((xx - width / 3) ** 2 + (yy - height / 2) ** 2) < (min(width, height) / 4) ** 2
    rgb = np.stack([xx * 255 / width, yy * 255 / height, 128 + 100 * disc], axis=-1)
    return np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)


def _rgba(width: int, height: int) -> Image.Image:
    """RGB picture with a real alpha ramp."""
    alpha = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    return Image.fromarray(np.dstack([_picture(width, height), alpha]))


def _deep(width: int, height: int) -> Image.Image:
    """16-bit greyscale (a depth-map-like ramp over 0..60000)."""
    ramp = np.linspace(0, 60000, width * height).reshape(height, width).astype(np.uint16)
    return Image.fromarray(ramp)


def _paletted(width: int, height: int) -> Image.Image:
    """A 64-colour palette image with one transparent index."""
    img = Image.fromarray(_picture(width, height)).quantize(64)
    img.info["transparency"] = 0
    return img


def _RGB(width: int, height: int) -> Image.Image:  # noqa: N802 - reads like the mode it makes
    return Image.fromarray(_picture(width, height))

WRITTEN = {  # name: (image maker, Pillow format, save options)
    "rgb.jpg": (_RGB, "JPEG", {"quality": 90}),
    "progressive.jpg": (_RGB, "JPEG", {"progressive": True, "exif": Image.Exif()}),
    "grey.jpg": (lambda w, h: _RGB(w, h).convert("L"), "JPEG", {}),
    "cmyk.jpg": (lambda w, h: _RGB(w, h).convert("CMYK"), "JPEG", {}),
    "rgb.png": (_RGB, "PNG", {}),
    "rgba.png": (_rgba, "PNG", {}),
    "palette.png": (_paletted, "PNG", {}),
    "deep16.png": (_deep, "PNG", {}),
    "bilevel.png": (lambda w, h: _RGB(w, h).convert("1"), "PNG", {}),
    "grey_alpha.png": (lambda w, h: _rgba(w, h).convert("LA"), "PNG", {}),
    "frames.gif": (_RGB, "GIF", {"save_all": True, "append_images": [Image.new("RGB", (8, 8))]}),
    "lossy.webp": (_RGB, "WEBP", {"quality": 80}),
    "lossless_alpha.webp": (_rgba, "WEBP", {"lossless": True}),
    "lossy_alpha.webp": (_rgba, "WEBP", {}),
    "animated.webp": (_rgba, "WEBP", {"save_all": True, "append_images": [_rgba(333, 217)]}),
    "plain.tif": (_RGB, "TIFF", {}),
    "lzw_rgba.tif": (_rgba, "TIFF", {"compression": "tiff_lzw"}),
    "float.tif": (lambda w, h: Image.fromarray(_picture(w, h)[..., 0].astype(np.float32)), "TIFF", {}),
    "rgb.bmp": (_RGB, "BMP", {}),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each WRITTEN image saved at 333x217 (odd sizes catch rounding) into a temporary folder."""
    folder = tmp_path_factory.mktemp("images")
    for name, (make, fmt, options) in WRITTEN.items():
        make(333, 217).save(folder / name, fmt, **options)
    return {name: folder / name for name in WRITTEN}


def _info(data: bytes, first: int = IMAGE_PREFIX_BYTES) -> tuple[dict, list[int]]:
    """image_info_from driven the way the caller drives it: a prefix, grown on NeedMoreBytes."""
    reads = [min(first, len(data))]
    while True:
        try:
            return image_info_from(data[: reads[-1]], len(data)), reads
        except NeedMoreBytes as more:
            assert reads[-1] < more.n <= len(data), "NeedMoreBytes must ask for more, within the file"
            reads.append(more.n)


def _encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def _pillow_says(path: Path) -> dict:
    """Format, size and mode from Pillow's own open; all None if Pillow cannot open the file."""
    try:
        with Image.open(path) as img:
            return {"format": img.format, "width": img.width, "height": img.height, "mode": img.mode}
    except Image.UnidentifiedImageError:  # e.g. skimage's planar multipage_rgb.tif
        return dict.fromkeys(IMAGE_FIELDS)


def _check_matches_pillow(path: Path) -> list[int]:
    data = path.read_bytes()
    info, reads = _info(data)
    pillow = _pillow_says(path)
    assert {k: info[k] for k in IMAGE_FIELDS} == pillow
    assert info["bytes"] == path.stat().st_size
    if pillow["format"] is None:  # what Pillow cannot open is reported, with the reason
        assert info["error"].startswith("corrupt: unreadable"), info["error"]
    else:
        assert info["error"] is None
    return reads


# ------------------------------------------------------------------ images: image_info_from


@pytest.mark.parametrize("path", PACKAGE_IMAGES)
def test_image_info_matches_pillow_on_package_images(path: Path) -> None:
    reads = _check_matches_pillow(path)
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        assert reads == [min(IMAGE_PREFIX_BYTES, path.stat().st_size)], "typical JPEG/PNG fits in 64 KiB"


@pytest.mark.parametrize("name", WRITTEN)
def test_image_info_matches_pillow_on_written_images(written: dict[str, Path], name: str) -> None:
    _check_matches_pillow(written[name])


@pytest.mark.parametrize("name", WRITTEN)
def test_image_info_never_decodes_pixels(
    written: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("image_info_from decoded pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    assert _info(written[name].read_bytes())[0]["error"] is None


def test_big_jpeg_and_png_headers_fit_in_64_kib(tmp_path: Path) -> None:
    for name, fmt in (("big.jpg", "JPEG"), ("big.png", "PNG")):
        Image.fromarray(_picture(1600, 1200)).save(tmp_path / name, fmt, exif=Image.Exif())
        data = (tmp_path / name).read_bytes()
        assert len(data) > 4 * IMAGE_PREFIX_BYTES
        info = image_info_from(data[:IMAGE_PREFIX_BYTES], len(data))  # no NeedMoreBytes
        assert (info["width"], info["height"], info["bytes"], info["error"]) == (1600, 1200, len(data), None)


def test_short_prefix_asks_for_more_and_converges(written: dict[str, Path]) -> None:
    data = written["rgb.jpg"].read_bytes()
    with pytest.raises(NeedMoreBytes) as more:
        image_info_from(data[:100], len(data))
    assert 100 < more.value.n <= len(data)
    info, reads = _info(data, first=100)
    assert len(reads) == 2 and info["width"] == 333 and info["error"] is None
    with pytest.raises(NeedMoreBytes):
        image_info_from(b"", 5000)


def test_jpeg_whose_header_outgrows_64_kib(tmp_path: Path) -> None:
    icc = bytes(range(256)) * 600  # a 150 KiB ICC profile: three APP2 segments before the frame header
    Image.fromarray(_picture(640, 480)).save(tmp_path / "icc.jpg", icc_profile=icc)
    data = (tmp_path / "icc.jpg").read_bytes()
    with pytest.raises(NeedMoreBytes):
        image_info_from(data[:IMAGE_PREFIX_BYTES], len(data))
    info, reads = _info(data)
    assert reads == [IMAGE_PREFIX_BYTES, min(len(data), 4 * IMAGE_PREFIX_BYTES)]
    assert (info["format"], info["width"], info["height"], info["error"]) == ("JPEG", 640, 480, None)


def test_tiff_with_directory_at_the_end_needs_the_whole_file(written: dict[str, Path]) -> None:
    data = written["lzw_rgba.tif"].read_bytes()
    (ifd,) = struct.unpack_from("<I", data, 4)
    assert ifd > IMAGE_PREFIX_BYTES, "Pillow writes the LZW strips before the directory"
    info, reads = _info(data)
    assert reads[-1] == len(data) and info["mode"] == "RGBA" and info["error"] is None


def test_huge_dimensions_are_reported_from_the_header() -> None:
    data = bytearray(_encoded(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", 100_000, 90_000)  # IHDR width, height: 9e9 pixels
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    info = image_info_from(bytes(data))
    assert (info["width"], info["height"], info["error"]) == (100_000, 90_000, None)
    assert thumbnail_png(bytes(data), 64) is None  # decoding it is refused (decompression bomb)


def test_random_bytes_are_not_an_image_and_never_ask_for_more() -> None:
    noise = np.random.default_rng(1).bytes(100_000)
    for head, size in ((noise, None), (noise[:IMAGE_PREFIX_BYTES], len(noise))):
        info = image_info_from(head, size)
        assert info == image_error("not an image: cannot identify image file", len(noise))


def test_empty_file() -> None:
    assert image_info_from(b"", 0) == image_error("empty file", 0)
    assert image_info_from(b"") == image_error("empty file", 0)


def test_first_100_bytes_of_a_png_still_tell_its_size(written: dict[str, Path]) -> None:
    info = image_info_from(written["rgb.png"].read_bytes()[:100])  # the whole file is 100 bytes
    assert (info["format"], info["width"], info["height"], info["mode"]) == ("PNG", 333, 217, "RGB")
    assert info["bytes"] == 100 and info["error"].startswith("truncated")


def test_first_100_bytes_of_a_jpeg_cannot_tell_its_size(written: dict[str, Path]) -> None:
    info = image_info_from(written["rgb.jpg"].read_bytes()[:100])  # SOF lies past byte 100
    assert info == image_error("truncated: the file ends inside the JPEG header", 100)


@pytest.mark.parametrize("name", WRITTEN)
def test_half_a_file_is_reported_truncated(written: dict[str, Path], name: str) -> None:
    data = written[name].read_bytes()
    half = data[: len(data) // 2]
    info = image_info_from(half)
    assert info["error"].startswith("truncated"), info
    assert info["bytes"] == len(half)
    if info["width"] is not None:  # when the header survived, what it says is still right
        assert {k: info[k] for k in IMAGE_FIELDS} == _pillow_says(written[name])
    assert thumbnail_png(half, 64) is None


def test_half_a_jpeg_keeps_its_header_but_has_no_end(written: dict[str, Path]) -> None:
    data = written["rgb.jpg"].read_bytes()
    info = image_info_from(data[: len(data) // 2])
    assert (info["format"], info["width"], info["height"]) == ("JPEG", 333, 217)
    assert info["error"] == "truncated: JPEG has no end-of-image marker"


def test_image_info_array_and_its_duckdb_type() -> None:
    rows = [image_info_from(b""), None, {**image_error("x", 7), "format": "PNG", "width": 2}]
    array = image_info_array(rows)
    assert array.type == IMAGE_INFO_ARROW and array.to_pylist() == rows
    duck = duckdb.from_arrow(pa.table({"info": array}))
    assert duck.types[0] == duckdb.sql(f"SELECT NULL::{IMAGE_INFO_TYPE}").types[0]


# ------------------------------------------------------------------ images: thumbnails


def _longer_side_and_aspect_ok(png: bytes, width: int, height: int, max_px: int) -> Image.Image:
    thumb = Image.open(io.BytesIO(png))
    assert thumb.format == "PNG"
    thumb.load()  # a valid PNG decodes
    tw, th = thumb.size
    assert max(tw, th) == min(max_px, max(width, height))
    if width >= height:
        assert abs(th - tw * height / width) <= 1
    else:
        assert abs(tw - th * width / height) <= 1
    return thumb


@pytest.mark.parametrize("max_px", [1, 64, 200, 4096])
@pytest.mark.parametrize("name", WRITTEN)
def test_thumbnail_of_written_images(written: dict[str, Path], name: str, max_px: int) -> None:
    png = thumbnail_png(written[name].read_bytes(), max_px)
    thumb = _longer_side_and_aspect_ok(png, 333, 217, max_px)
    assert thumb.mode in ("L", "LA", "RGB", "RGBA")


@pytest.mark.parametrize("path", PACKAGE_IMAGES)
def test_thumbnail_of_package_images(path: Path) -> None:
    pillow = _pillow_says(path)
    png = thumbnail_png(path.read_bytes(), 96)
    if pillow["format"] is None:
        assert png is None
    else:
        _longer_side_and_aspect_ok(png, pillow["width"], pillow["height"], 96)


def test_thumbnail_of_16_bit_grey_is_stretched_to_8_bits(written: dict[str, Path]) -> None:
    thumb = Image.open(io.BytesIO(thumbnail_png(written["deep16.png"].read_bytes(), 64)))
    pixels = np.asarray(thumb)
    assert thumb.mode == "L" and pixels.min() <= 5 and pixels.max() >= 250


def test_thumbnail_follows_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(_picture(300, 100)).save(tmp_path / "turned.jpg", exif=exif)
    thumb = Image.open(io.BytesIO(thumbnail_png((tmp_path / "turned.jpg").read_bytes(), 60)))
    assert thumb.size == (20, 60)


@pytest.mark.parametrize("max_px", [0, -5, 4097, 1.5, True, "64", None])
def test_thumbnail_refuses_bad_sizes(written: dict[str, Path], max_px: object) -> None:
    with pytest.raises(ValueError, match="max_px"):
        thumbnail_png(written["rgb.png"].read_bytes(), max_px)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", np.random.default_rng(2).bytes(4096)])
def test_thumbnail_of_garbage_is_none(data: bytes) -> None:
    assert thumbnail_png(data, 64) is None


def test_thumbnail_of_a_big_jpeg_decodes_at_reduced_scale(tmp_path: Path) -> None:
    Image.fromarray(_picture(2400, 1600)).save(tmp_path / "big.jpg")
    drafted = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: Image.Image, mode: str | None, size: tuple[int, int] | None) -> object:
        result = original(self, mode, size)
        drafted.append(self.size)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
        png = thumbnail_png((tmp_path / "big.jpg").read_bytes(), 100)
    assert drafted and drafted[0][0] <= 2400 // 8, "the JPEG decoder was not asked to scale down"
    _longer_side_and_aspect_ok(png, 2400, 1600, 100)


# ------------------------------------------------------------------ point clouds: files


def _las_write(path: Path, point_format: int, version: str, n: int = 500, seed: int = 0) -> None:
    """A LAS/LAZ file (by the suffix) with scaled/offset coordinates and intensities."""
    import laspy

    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales = np.array([0.001, 0.001, 0.01])
    header.offsets = np.array([500_000.0, 4_000_000.0, 100.0])
    las = laspy.LasData(header)
    las.x = 500_000 + rng.uniform(-200, 200, n)
    las.y = 4_000_000 + rng.uniform(0, 50, n)
    las.z = rng.uniform(90, 140, n)
    las.intensity = rng.integers(0, 65535, n, dtype=np.uint16)
    las.write(path)


LAS_KINDS = [(0, "1.2"), (1, "1.2"), (3, "1.3"), (6, "1.4")]


@pytest.fixture(scope="module")
def las_written(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    pytest.importorskip("laspy")
    folder = tmp_path_factory.mktemp("las")
    paths = []
    for i, (point_format, version) in enumerate(LAS_KINDS):
        for suffix in (".las", ".laz"):
            path = folder / f"pf{point_format}_v{version}{suffix}"
            _las_write(path, point_format, version, seed=i)
            paths.append(path)
    return paths


def _xyzi(n: int, seed: int = 0) -> np.ndarray:
    """N×4 float32 points of a street-like scene: x, y, z, intensity."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal([10, -2, -1.5], [20, 8, 1], size=(n, 3))
    return np.column_stack([xyz, rng.uniform(0, 1, n)]).astype(np.float32)


def _pcd(records: np.ndarray, data: str, width: int | None = None, height: int = 1) -> bytes:
    """A PCD v0.7 file of a structured array per the PCL spec ('_...' fields are padding '_')."""
    kinds = {"f": "F", "i": "I", "u": "U"}
    dtype = records.dtype
    fields = [("_" if name.startswith("_") else name) for name in dtype.names]
    sizes = [dtype[name].base.itemsize for name in dtype.names]
    types = [kinds[dtype[name].base.kind] for name in dtype.names]
    counts = [int(np.prod(dtype[name].shape)) for name in dtype.names]
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\n"
        f"TYPE {' '.join(types)}\nCOUNT {' '.join(map(str, counts))}\n"
        f"WIDTH {width or len(records)}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {len(records)}\nDATA {data}\n"
    ).encode()
    if data == "binary":
        return header + records.astype(dtype.newbyteorder("<")).tobytes()
    rows = (" ".join(repr(float(v)) for v in _flat(record)) for record in records)
    return header + "\n".join(rows).encode() + b"\n"


def _flat(record: np.void) -> list:
    return [v for name in record.dtype.names for v in np.ravel(record[name])]


def _records(points: np.ndarray, *extra: tuple[str, str]) -> np.ndarray:
    """Structured x, y, z, intensity records (float32) plus zero-filled extra fields."""
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), *extra])
    out = np.zeros(len(points), dtype)
    for i, axis in enumerate(("x", "y", "z", "intensity")):
        out[axis] = points[:, i]
    return out


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


POINTS = _xyzi(700)
XYZ_ONLY = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])


def _xyz_records(points: np.ndarray) -> np.ndarray:
    out = np.zeros(len(points), XYZ_ONLY)
    out["x"], out["y"], out["z"] = points[:, 0], points[:, 1], points[:, 2]
    out["rgb"] = 0x00FF8800
    return out


def _mixed_records(points: np.ndarray) -> np.ndarray:
    """double x, y, z, uint16 intensity, two padding bytes, a 3-vector normal."""
    dtype = np.dtype(
        [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("intensity", "<u2"), ("_pad", "<u1", (2,)),
         ("normal", "<f4", (3,))]
    )
    out = np.zeros(len(points), dtype)
    for i, axis in enumerate(("x", "y", "z")):
        out[axis] = points[:, i]
    out["intensity"] = (points[:, 3] * 1000).astype(np.uint16)
    out["normal"] = [0.0, 0.0, 1.0]
    return out


# name: (bytes, expected xyz (float64), expected intensity or None)
CLOUDS = {
    "kitti.bin": (POINTS.tobytes(), POINTS[:, :3], POINTS[:, 3]),
    "xyz.npy": (_npy(POINTS[:, :3]), POINTS[:, :3], None),
    "xyzi.npy": (_npy(POINTS.astype(np.float64)), POINTS[:, :3], POINTS[:, 3]),
    "int_xyz.npy": (_npy(np.arange(30, dtype=np.int16).reshape(10, 3)), np.arange(30).reshape(10, 3), None),
    "fortran.npy": (_npy(np.asfortranarray(POINTS)), POINTS[:, :3], POINTS[:, 3]),
    "ascii.pcd": (_pcd(_records(POINTS), "ascii"), POINTS[:, :3], POINTS[:, 3]),
    "binary.pcd": (_pcd(_records(POINTS), "binary"), POINTS[:, :3], POINTS[:, 3]),
    "rgb_binary.pcd": (_pcd(_xyz_records(POINTS), "binary"), POINTS[:, :3], None),
    "rgb_ascii.pcd": (_pcd(_xyz_records(POINTS), "ascii"), POINTS[:, :3], None),
    "mixed_binary.pcd": (
        _pcd(_mixed_records(POINTS), "binary"),
        POINTS[:, :3],
        (POINTS[:, 3] * 1000).astype(np.uint16),
    ),
    "mixed_ascii.pcd": (
        _pcd(_mixed_records(POINTS), "ascii"),
        POINTS[:, :3],
        (POINTS[:, 3] * 1000).astype(np.uint16),
    ),
}


def _expected_info(fmt: str, xyz: np.ndarray) -> dict:
    xyz = np.asarray(xyz, dtype=np.float64)
    finite = xyz[np.isfinite(xyz).all(axis=1)]
    bounds = [*finite.min(axis=0), *finite.max(axis=0)] if len(finite) else [None] * 6
    return {"format": fmt, "points": len(xyz), **dict(zip(BOUNDS, bounds, strict=True)), "error": None}


# ------------------------------------------------------------------ point clouds: LAS / LAZ


def _laspy_truth(path: Path) -> tuple:
    import laspy

    las = laspy.read(path)
    xyz = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)])
    return las.header, xyz, np.asarray(las.intensity, dtype=np.float64)


def _check_las(path: Path, numpy_tolerance: float) -> None:
    data = path.read_bytes()
    header, xyz, intensity = _laspy_truth(path)
    info = pointcloud_info_from(data[:LAS_HEADER_BYTES], path.name, len(data))
    assert info["format"] == ("LAZ" if header.are_points_compressed else "LAS")
    assert info["points"] == header.point_count == len(xyz)
    assert [info[k] for k in BOUNDS] == [*header.mins, *header.maxs]  # laspy's header, exactly
    assert [info[k] for k in BOUNDS] == pytest.approx(
        [*xyz.min(axis=0), *xyz.max(axis=0)], abs=numpy_tolerance
    )
    assert info["error"] is None
    table = read_pointcloud_from(data, path.name)
    assert table.schema == pa.schema([(c, pa.float64()) for c in ("x", "y", "z", "intensity")])
    np.testing.assert_array_equal(np.column_stack([table[c].to_numpy() for c in "xyz"]), xyz)
    np.testing.assert_array_equal(table["intensity"].to_numpy(), intensity)


@pytest.mark.parametrize("path", LASPY_FILES, ids=lambda p: p.name)
def test_laspy_sample_files(path: Path) -> None:
    pytest.importorskip("laspy")
    _check_las(path, numpy_tolerance=1e-3)  # headers written by other tools round their bounds


def test_laspy_sample_files_are_there() -> None:
    assert len(LASPY_FILES) >= 3 and {p.suffix for p in LASPY_FILES} == {".las", ".laz"}


def test_las_files_written_with_laspy(las_written: list[Path]) -> None:
    assert len(las_written) == 2 * len(LAS_KINDS)
    for path in las_written:
        _check_las(path, numpy_tolerance=0.01)  # one quantum of the coarsest scale


def test_las_header_prefix_protocol(las_written: list[Path]) -> None:
    path = las_written[0]
    data = path.read_bytes()
    assert pointcloud_prefix_bytes(path.name) == LAS_HEADER_BYTES
    assert pointcloud_prefix_bytes("sweep.pcd") is None
    with pytest.raises(NeedMoreBytes) as more:
        pointcloud_info_from(data[:100], path.name, len(data))
    assert more.value.n == LAS_HEADER_BYTES
    info = pointcloud_info_from(data[:100], path.name)  # the whole file is 100 bytes
    assert info == pointcloud_error("truncated: the file ends inside the LAS header")


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_truncated_las_and_laz(las_written: list[Path], suffix: str) -> None:
    path = next(p for p in las_written if p.suffix == suffix)
    data = path.read_bytes()
    half = data[: len(data) // 2]
    info = pointcloud_info_from(half, path.name)
    assert info["error"].startswith("truncated") and info["points"] == 500
    assert read_pointcloud_from(half, path.name) is None


def test_las_without_points(tmp_path: Path) -> None:
    laspy = pytest.importorskip("laspy")

    laspy.LasData(laspy.LasHeader(point_format=3, version="1.2")).write(tmp_path / "empty.las")
    info = pointcloud_info_from((tmp_path / "empty.las").read_bytes(), "empty.las")
    assert info == {**pointcloud_error(None, "LAS"), "points": 0}
    assert read_pointcloud_from((tmp_path / "empty.las").read_bytes(), "empty.las").num_rows == 0


def test_not_a_las_file() -> None:
    info = pointcloud_info_from(b"PK\x03\x04" + bytes(400), "sweep.las")
    assert info == pointcloud_error("not a LAS file: no LASF signature")


# ------------------------------------------------------------------ point clouds: bin, npy, pcd


@pytest.mark.parametrize("name", CLOUDS)
def test_pointcloud_info_and_points_equal_numpy(name: str) -> None:
    data, xyz, intensity = CLOUDS[name]
    fmt = _format_for(name)
    if name.endswith("ascii.pcd"):  # ASCII holds the float32 values' exact decimal expansion
        xyz = np.asarray(xyz, dtype=np.float64)
    assert pointcloud_info_from(data, name) == _expected_info(fmt, xyz)
    table = read_pointcloud_from(data, name)
    np.testing.assert_array_equal(np.column_stack([table[c].to_numpy() for c in "xyz"]), xyz)
    if intensity is None:
        assert table["intensity"].null_count == len(xyz)
    else:
        np.testing.assert_array_equal(table["intensity"].to_numpy(), np.asarray(intensity, np.float64))


def test_organised_pcd_with_nan_points() -> None:
    points = _xyzi(32, seed=3).astype(np.float32)
    points[::5, :3] = np.nan  # invalid returns of an organised cloud
    data = _pcd(_records(points), "binary", width=8, height=4)
    info = pointcloud_info_from(data, "organised.pcd")
    assert info == _expected_info("PCD", points[:, :3])
    assert info["points"] == 32
    assert read_pointcloud_from(data, "organised.pcd").num_rows == 32


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("odd.bin", POINTS.tobytes()[:-3], "corrupt: 11197 bytes is not a whole number of 16-byte KITTI"),
        ("flat.npy", _npy(POINTS.ravel()), "unsupported: NPY array float32 (2800,)"),
        ("wide.npy", _npy(np.zeros((4, 5))), "unsupported: NPY array float64 (4, 5)"),
        ("bools.npy", _npy(np.zeros((4, 3), bool)), "unsupported: NPY array bool (4, 3)"),
        ("objects.npy", _npy(np.array([[{"x": 1}, 2, 3]], dtype=object), True), "unsupported: NPY holds"),
        ("pickle.npy", pickle.dumps(POINTS), "not a NPY file"),
        ("cut.npy", _npy(POINTS)[:-100],
         "truncated: the NPY header claims 700 points but the file holds at most 693"),
        ("huge.npy", _npy(POINTS).replace(b"(700, 4)", b"(10**15,4)"), "corrupt"),
        ("huger.npy", _npy(POINTS).replace(b"(700, 4)", b"(999999999999, 4)"),
         "truncated: the NPY header claims 999999999999"),
        ("zipped.pcd", _pcd(_records(POINTS), "binary").replace(b"DATA binary", b"DATA binary_compressed"),
         "unsupported: PCD DATA binary_compressed"),
        ("cut.pcd", _pcd(_records(POINTS), "binary")[:-1],
         "truncated: the PCD header claims 700 points but the file holds at most 699"),
        ("cut_ascii.pcd", _pcd(_records(POINTS), "ascii")[:-40], "truncated: PCD header says 700 points"),
        ("noxyz.pcd", b"VERSION 0.7\nFIELDS a b\nSIZE 4 4\nTYPE F F\nCOUNT 1 1\nPOINTS 0\nDATA ascii\n",
         "unsupported: PCD fields a b have no x, y, z"),
        ("lines.pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4\nTYPE F F F\nDATA ascii\n", "corrupt: PCD"),
        ("nodata.pcd", b"VERSION 0.7\nFIELDS x y z\n", "corrupt: PCD header has no DATA line"),
        ("text.pcd", b"ply\nformat ascii 1.0\n", "not a PCD file"),
        ("bad_ascii.pcd", _pcd(_records(POINTS[:2]), "ascii").replace(b"\n", b" oops\n", 12)[:-1] + b"x\n",
         "corrupt"),
        ("sweep.ply", b"ply\n", "unsupported: 'sweep.ply' is not one of .las, .laz, .bin, .npy, .pcd"),
        ("empty.bin", b"", "empty file"),
        ("empty.pcd", b"", "empty file"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v and len(v) < 20 else "",
)
def test_bad_point_clouds_are_reported_not_raised(name: str, data: bytes, error: str) -> None:
    info = pointcloud_info_from(data, name)
    assert info["error"].startswith(error), info["error"]
    assert all(info[k] is None for k in BOUNDS)
    assert read_pointcloud_from(data, name) is None


def _damaged(data: bytes, seed: int) -> list[bytes]:
    """Cuts at many lengths and a few random byte flips."""
    rng = np.random.default_rng(seed)
    cuts = [data[:n] for n in (1, 4, 10, 100, 227, 374, len(data) // 3, len(data) - 1)]
    flips = []
    for _ in range(6):
        mangled = np.frombuffer(data, np.uint8).copy()
        mangled[rng.integers(0, len(data), 8)] = rng.integers(0, 256, 8, dtype=np.uint8)
        flips.append(mangled.tobytes())
    return cuts + flips


def test_damaged_files_never_raise(las_written: list[Path]) -> None:
    files = {name: data for name, (data, _, _) in CLOUDS.items()}
    files |= {p.name: p.read_bytes() for p in [*las_written, *LASPY_FILES]}
    for seed, (name, data) in enumerate(files.items()):
        for damaged in _damaged(data, seed):
            info = pointcloud_info_from(damaged, name)
            assert set(info) == {"format", "points", *BOUNDS, "error"}
            table = read_pointcloud_from(damaged, name)
            assert table is None or table.column_names == ["x", "y", "z", "intensity"]


def test_truncated_cuts_are_errors(las_written: list[Path]) -> None:
    files = {name: data for name, (data, _, _) in CLOUDS.items()}
    files |= {p.name: p.read_bytes() for p in las_written}
    for name, data in files.items():
        info = pointcloud_info_from(data[: len(data) // 3], name)
        assert info["error"] is not None, name


def test_whole_file_formats_ask_for_the_whole_file() -> None:
    data = CLOUDS["binary.pcd"][0]
    assert pointcloud_prefix_bytes("x.pcd") is None
    with pytest.raises(NeedMoreBytes) as more:
        pointcloud_info_from(data[:1000], "x.pcd", len(data))
    assert more.value.n == len(data)


def test_extension_decides_case_insensitively() -> None:
    data = CLOUDS["kitti.bin"][0]
    assert pointcloud_info_from(data, "s3://lake/lidar/000001.BIN")["format"] == "KITTI"


# ------------------------------------------------------------------ Arrow / DuckDB types


def test_pointcloud_arrays_and_their_duckdb_types() -> None:
    good = read_pointcloud_from(CLOUDS["kitti.bin"][0], "a.bin")
    no_intensity = read_pointcloud_from(CLOUDS["xyz.npy"][0], "b.npy")
    empty = read_pointcloud_from(_npy(np.zeros((0, 3))), "c.npy")
    lists = points_array([good, None, empty, no_intensity])
    assert lists.type == POINTS_ARROW and len(lists) == 4
    assert lists.is_null().to_pylist() == [False, True, False, False]
    assert [len(v) if v is not None else None for v in lists.to_pylist()] == [700, None, 0, 700]
    assert lists[3].values.field("intensity").null_count == 700
    infos = pointcloud_info_array(
        [pointcloud_info_from(CLOUDS["kitti.bin"][0], "a.bin"), None, pointcloud_error("x"), None]
    )
    assert infos.type == POINTCLOUD_INFO_ARROW
    con = duckdb.connect()
    con.register("tbl", pa.table({"pts": lists, "info": infos}))
    expect = con.sql(f"SELECT NULL::{POINTS_TYPE}, NULL::{POINTCLOUD_INFO_TYPE}")
    assert con.sql("SELECT pts, info FROM tbl").types == expect.types
    assert con.sql("SELECT len(pts) FROM tbl").fetchall() == [(700,), (None,), (0,), (700,)]
    assert points_array([]).type == POINTS_ARROW


# ------------------------------------------------------------------ committed sample blobs

BLOBS = DATA / "blobs"


@pytest.mark.parametrize("name", ["frame.jpg", "frame.png", "frame.webp"])
def test_sample_blob_images(name: str) -> None:
    _check_matches_pillow(BLOBS / name)


def test_sample_blob_damaged_images() -> None:
    def info(name: str) -> dict:
        return image_info_from((BLOBS / name).read_bytes(), (BLOBS / name).stat().st_size)

    assert info("truncated.png")["width"] == 128 and info("truncated.png")["error"].startswith("truncated")
    assert info("truncated.jpg")["error"] == "truncated: JPEG has no end-of-image marker"
    assert info("corrupt.jpg") == image_error("not an image: cannot identify image file", 2048)
    assert info("empty.png") == image_error("empty file", 0)


def test_sample_blob_point_clouds_agree() -> None:
    sweep = np.frombuffer((BLOBS / "sweep.bin").read_bytes(), "<f4").reshape(-1, 4).astype(np.float64)
    for name in ("sweep.bin", "sweep.npy", "sweep_ascii.pcd", "sweep_binary.pcd"):
        data = (BLOBS / name).read_bytes()
        assert pointcloud_info_from(data, name) == _expected_info(_format_for(name), sweep[:, :3])
        table = read_pointcloud_from(data, name)
        np.testing.assert_array_equal(np.column_stack([table[c].to_numpy() for c in "xyz"]), sweep[:, :3])
    info = pointcloud_info_from((BLOBS / "truncated.bin").read_bytes(), "truncated.bin")
    assert info["error"].startswith("corrupt: 1000 bytes")


def _format_for(name: str) -> str:
    return {".bin": "KITTI", ".npy": "NPY", ".pcd": "PCD"}[Path(name).suffix]
