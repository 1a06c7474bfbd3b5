"""Joint text-image models: a CLIP checkpoint on disk as two embedders that share one space.

``fedquery.register_clip("clip", "/models/clip-vit-b-32")`` loads an open_clip or a
sentence-transformers CLIP model from this machine and registers ``clip`` as an image embedder
and as a text embedder. ``embed_image(uri, 'clip')`` and ``embed_text(text, 'clip')`` then give
L2-normalised vectors of one space, so a text ranks the pictures of an embedding column made with
``embed_image(..., 'clip')``::

    ORDER BY array_cosine_distance(e.embedding, embed_text('rainy street at night', 'clip'))

What ``path`` may be, in the order it is looked at:

- a folder with ``open_clip_config.json`` and its weights (``open_clip_model.safetensors``,
  ``open_clip_pytorch_model.bin``, ...): what open_clip saves, and what the Hugging Face cache
  holds for an open_clip model;
- an open_clip weights file (a state dict: ``.pt``, ``.pth``, ``.bin``, ``.safetensors``) with
  ``architecture`` an open_clip model name (``"ViT-B-32"``) or a model config JSON file; a file
  named after its architecture (``ViT-B-32.pt``) needs none;
- a folder with ``modules.json`` (a saved sentence-transformers CLIP model) or a transformers
  CLIP folder (``config.json``), loaded with sentence-transformers;
- ``org/name`` (or ``hf-hub:org/name``): that model's snapshot in the Hugging Face cache.

Nothing is downloaded: a URL, or a model that is not in the cache, is an error that says so, and
the libraries load with the hub switched offline. torch is imported when a model loads, never by
``import fedquery``. The model runs on the GPU when ``torch.cuda.is_available()`` (unless
``device`` says otherwise). Images are decoded with Pillow from their bytes and embedded in
batches; a file that does not decode gives NULL.

``FEDQUERY_CLIP_MODEL`` names one such folder, file or cached model: it is registered when
fedquery is imported, under the folder's (or file's) name, and loaded on first use. That is how
the ``fedquery`` command gets a CLIP model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedquery.errors import PlanError, SourceError
from fedquery.functions.embedding import REGISTRY, cached_model_dir

Library = Literal["open_clip", "sentence-transformers"]
LIBRARIES: tuple[Library, ...] = ("open_clip", "sentence-transformers")
CLIP_MODEL_ENV = "FEDQUERY_CLIP_MODEL"
OPEN_CLIP_CONFIG = "open_clip_config.json"
ST_MODULES = "modules.json"
HF_CONFIG = "config.json"
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
IMAGE_BATCH = 32  # images per forward pass (a call of embed_image brings at most embed_udfs.CHUNK)
TEXT_BATCH = 64  # texts per forward pass
INSTALL = "pip install 'fedquery[clip]'"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

logger = logging.getLogger("fedquery")


def register_clip(name: str, path: str | os.PathLike, *, architecture: str | None = None,
                  library: Library | None = None, device: str | None = None,
                  default: bool = False) -> JointModel:
    """Load the joint text-image model at ``path`` and register it as ``name`` for images and
    for texts: ``embed_image(uri, name)`` and ``embed_text(text, name)`` embed into one space.

    ``path``: a local folder or weights file, or a model id in the Hugging Face cache (see the
    module's doc); ``architecture``: the open_clip model name or config JSON of a bare weights
    file; ``library``: ``"open_clip"`` or ``"sentence-transformers"`` when a folder could be read
    by both; ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: the GPU when there is
    one); ``default=True`` makes it the model ``embed_image(uri)`` and ``embed_text(text)`` use.
    Returns the loaded model (``embed_images``, ``embed_texts``, ``dim``, ``device``).

    >>> fedquery.register_clip("clip", "/models/open_clip/ViT-B-32")              # doctest: +SKIP
    >>> con.sql("SELECT frame_id FROM shots s ORDER BY array_cosine_distance(s.embedding, "
    ...         "embed_text('rainy street at night', 'clip')) LIMIT 5")        # doctest: +SKIP
    """
    from fedquery.boundary import boundary

    with boundary():
        if not isinstance(name, str) or not name.strip():
            raise PlanError(f"register_clip: name must be a non-empty string, got {name!r}")
        where = f"register_clip({name!r})"
        if not isinstance(default, bool):
            raise PlanError(f"{where}: default must be True or False, got {default!r}")
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise PlanError(f"{where}: path must be a folder, a file or a cached model id, got "
                            f"{path!r}")
        if library is not None and library not in LIBRARIES:
            raise PlanError(f"{where}: library must be 'open_clip' or 'sentence-transformers', "
                            f"got {library!r}")
        if device is not None and not isinstance(device, str):
            raise PlanError(f"{where}: device must be a string such as 'cpu' or 'cuda', got {device!r}")
        spec = locate(name, str(path), architecture=architecture, library=library)
        model = JointModel(name, spec, device).load()
        model.register(default=default)
        return model


@dataclass(frozen=True)
class Spec:
    """Where a joint model is and how to read it, known without importing torch."""

    path: Path  # the folder, or the weights file
    library: Library
    architecture: str | None = None  # open_clip: the model name or config JSON of a weights file
    dim: int | None = None  # from the config files, when they say


class JointModel:
    """A joint text-image model: ``embed_images`` (encoded image bytes) and ``embed_texts``
    give L2-normalised float32 rows of ``dim`` values in one space, NaN where an input could not
    be embedded. Loaded by ``load`` (on first use, for one registered from the environment)."""

    def __init__(self, name: str, spec: Spec, device: str | None = None) -> None:
        self.name = name
        self.spec = spec
        self.dim = spec.dim
        self.device = device
        self._backend: _OpenClip | _SentenceTransformers | None = None
        self._loading = threading.Lock()
        self._running = threading.Lock()  # one forward pass at a time: the model uses every core

    def __repr__(self) -> str:
        return (f"JointModel({self.name!r}, {str(self.spec.path)!r}, library={self.spec.library!r}, "
                f"dim={self.dim}, device={self.device!r})")

    def load(self) -> JointModel:
        """Load the weights (once), check that both towers embed and set ``dim`` and ``device``."""
        with self._loading:
            if self._backend is not None:
                return self
            device = self.device or _default_device()
            try:
                with _offline():
                    backend = (_OpenClip if self.spec.library == "open_clip"
                               else _SentenceTransformers)(self.spec, device)
                    probe = backend.images([_probe_image()]), backend.texts(["a photo"])
            except (PlanError, SourceError):
                raise
            except Exception as exc:  # noqa: BLE001 - torch, open_clip and transformers raise anything
                raise SourceError(f"could not load {self.spec.library} model {str(self.spec.path)!r}: "
                                  f"{type(exc).__name__}: {_first_line(exc)}",
                                  source=f"model {self.name}") from exc
            (image,), (text,) = probe
            if image.shape != text.shape:
                raise SourceError(f"{str(self.spec.path)!r} embeds images in {image.shape[-1]} "
                                  f"dimensions and texts in {text.shape[-1]}: not a joint model",
                                  source=f"model {self.name}")
            if self.dim is not None and self.dim != image.shape[-1]:
                raise SourceError(f"{str(self.spec.path)!r} embeds in {image.shape[-1]} dimensions, "
                                  f"its config says {self.dim}", source=f"model {self.name}")
            self.dim, self.device, self._backend = int(image.shape[-1]), device, backend
            logger.info("joint model %r loaded from %s on %s (%d dims)", self.name, self.spec.path,
                        device, self.dim)
        return self

    def register(self, *, default: bool = False) -> None:
        """Register ``embed_images`` and ``embed_texts`` under the model's name."""
        if self.dim is None:
            raise PlanError(f"register_clip({self.name!r}): the width of {str(self.spec.path)!r} is "
                            "not known before it loads")
        REGISTRY.register(self.name, self.embed_images, self.dim, kind="image", default=default)
        REGISTRY.register(self.name, self.embed_texts, self.dim, kind="text", default=default)

    def embed_images(self, images: Sequence[bytes | None]) -> np.ndarray:
        """Encoded images (JPEG, PNG, ...; see ``images.DECODED_FORMATS``) as unit vectors; a
        row of NaN for None or bytes that do not decode."""
        backend = self.load()._backend
        out = np.full((len(images), self.dim), np.nan, dtype=np.float32)
        decoded = [_decode(data, backend.side) for data in images]
        ok = [i for i, image in enumerate(decoded) if image is not None]
        for start in range(0, len(ok), IMAGE_BATCH):
            rows = ok[start:start + IMAGE_BATCH]
            with self._running:
                out[rows] = backend.images([decoded[i] for i in rows])
        return out

    def embed_texts(self, texts: Sequence[str | None]) -> np.ndarray:
        """Texts as unit vectors; a row of NaN for None or blank text."""
        backend = self.load()._backend
        out = np.full((len(texts), self.dim), np.nan, dtype=np.float32)
        ok = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
        for start in range(0, len(ok), TEXT_BATCH):
            rows = ok[start:start + TEXT_BATCH]
            with self._running:
                out[rows] = backend.texts([texts[i] for i in rows])
        return out


# --- where a model is (no torch) ---------------------------------------------------------------


def locate(name: str, path: str, *, architecture: str | None = None,
           library: Library | None = None) -> Spec:
    """The ``Spec`` of the model ``path`` names; ``PlanError`` saying what to do when it is not
    on this machine or not a model this module reads."""
    where = f"register_clip({name!r})"
    if re.match(r"^[a-zA-Z][\w+.-]*://", path):
        raise PlanError(f"{where}: {path!r} is not on this machine, and nothing is downloaded at run "
                        "time: copy the model to a local folder (or into the Hugging Face cache) and "
                        "give its path")
    wanted = Path(path.removeprefix("hf-hub:")).expanduser()
    if not wanted.exists():
        cached = cached_model_dir(path.removeprefix("hf-hub:"), (OPEN_CLIP_CONFIG, ST_MODULES, HF_CONFIG))
        if cached is None:
            raise PlanError(f"{where}: no folder or file {path!r}, and no model {path!r} in the Hugging "
                            "Face cache; nothing is downloaded at run time: give the local folder of "
                            "an open_clip or sentence-transformers CLIP model (or its weights file "
                            "with architecture=...), or download the model once beforehand")
        wanted = cached
    if wanted.is_file():
        return _weights_file(where, wanted, architecture, library)
    found = {"open_clip": (wanted / OPEN_CLIP_CONFIG).is_file(),
             "sentence-transformers": (wanted / ST_MODULES).is_file() or (wanted / HF_CONFIG).is_file()}
    chosen = library or next((lib for lib in LIBRARIES if found[lib]), None)
    if chosen is None or not found[chosen]:
        what = {"open_clip": OPEN_CLIP_CONFIG, "sentence-transformers": f"{ST_MODULES} or {HF_CONFIG}",
                None: f"{OPEN_CLIP_CONFIG} (open_clip), {ST_MODULES} or {HF_CONFIG} (sentence-transformers)"}
        raise PlanError(f"{where}: the folder {str(wanted)!r} has no {what[library]}; give a model "
                        "folder, or a weights file with architecture=... (an open_clip model name)")
    if chosen == "open_clip":
        if not any(p.suffix in WEIGHTS for p in wanted.iterdir() if p.is_file()):
            raise PlanError(f"{where}: the folder {str(wanted)!r} has {OPEN_CLIP_CONFIG} but no weights "
                            f"file ({', '.join(WEIGHTS)})")
        config = _json(wanted / OPEN_CLIP_CONFIG)
        return Spec(wanted, "open_clip", None, _embed_dim(config.get("model_cfg")))
    return Spec(wanted, "sentence-transformers", None, _sentence_transformers_dim(wanted))


def _weights_file(where: str, path: Path, architecture: str | None, library: Library | None) -> Spec:
    """An open_clip weights file and the architecture it needs."""
    if library not in (None, "open_clip") or path.suffix not in WEIGHTS:
        raise PlanError(f"{where}: {str(path)!r} is a file; give an open_clip weights file "
                        f"({', '.join(WEIGHTS)}) or a model folder")
    architecture = architecture or path.stem
    if Path(architecture).suffix == ".json":
        config_file = Path(architecture).expanduser()
        if not config_file.is_file():
            raise PlanError(f"{where}: no model config file {architecture!r}")
        return Spec(path, "open_clip", str(config_file), _embed_dim(_json(config_file)))
    config = _builtin_config(architecture)
    if config is None:
        raise PlanError(f"{where}: {architecture!r} is not an open_clip model name: pass "
                        "architecture='ViT-B-32' (the model the weights are for) or the path of "
                        "its model config JSON")
    return Spec(path, "open_clip", architecture, _embed_dim(config))


def _builtin_config(architecture: str) -> dict | None:
    """open_clip's own config of a model name, read from the installed package's files."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        raise PlanError(f"open_clip is not installed: {INSTALL}")
    for location in spec.submodule_search_locations or ():
        config = Path(location) / "model_configs" / f"{architecture.replace('/', '-')}.json"
        if config.is_file():
            return _json(config)
    return None


def _sentence_transformers_dim(folder: Path) -> int | None:
    """The output width from a Dense module's or the CLIP config's projection, if it says."""
    for config in sorted(folder.glob("*/config.json")):
        dim = _json(config).get("out_features")
        if isinstance(dim, int):
            return dim
    dim = _json(folder / HF_CONFIG).get("projection_dim") if (folder / HF_CONFIG).is_file() else None
    return dim if isinstance(dim, int) else None


def _embed_dim(config: Any) -> int | None:
    dim = config.get("embed_dim") if isinstance(config, dict) else None
    return dim if isinstance(dim, int) else None


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"could not read {str(path)!r}: {exc}") from None
    return value if isinstance(value, dict) else {}


# --- loading and running (torch) ---------------------------------------------------------------


class _OpenClip:
    """An open_clip model, its evaluation transform and its tokenizer."""

    def __init__(self, spec: Spec, device: str) -> None:
        import torch

        open_clip = import_open_clip()
        if spec.path.is_dir():
            source, pretrained = f"local-dir:{spec.path}", None
        else:
            source, pretrained = spec.architecture, str(spec.path)
            if Path(source).suffix == ".json":
                open_clip.add_model_config(source)
                source = Path(source).stem
        model, _, preprocess = open_clip.create_model_and_transforms(
            source, pretrained=pretrained, device=device, load_weights=True)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(source)
        self.device = device
        size = getattr(model.visual, "image_size", 224)
        self.side = max(size) if isinstance(size, tuple | list) else int(size)
        self._torch = torch

    def images(self, images: list) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device)
            return _unit(self.model.encode_image(pixels))

    def texts(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return _unit(self.model.encode_text(self.tokenizer(texts).to(self.device)))


class _SentenceTransformers:
    """A sentence-transformers model that embeds images and texts (CLIP)."""

    side = 448  # JPEGs are decoded at no less than twice this: the processor sizes them

    def __init__(self, spec: Spec, device: str) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise PlanError(f"sentence-transformers is not installed: {INSTALL}")
        prepare_torchvision()
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(spec.path), device=device, local_files_only=True)
        self.model.eval()

    def images(self, images: list) -> np.ndarray:
        return self._encode(images, IMAGE_BATCH)

    def texts(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, TEXT_BATCH)

    def _encode(self, items: list, batch: int) -> np.ndarray:
        out = self.model.encode(items, batch_size=batch, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(items), -1)


def import_open_clip():
    """The open_clip module (``prepare_torchvision`` first); ``PlanError`` when it is not
    installed."""
    if importlib.util.find_spec("open_clip") is None:
        raise PlanError(f"open_clip is not installed: {INSTALL}")
    prepare_torchvision()
    import open_clip

    return open_clip


def prepare_torchvision() -> None:
    """Import torchvision, when it is installed, so that open_clip and transformers (which
    import it) import.

    A torchvision wheel built for another torch (PyPI's CUDA torchvision beside a CPU-only torch,
    as on this project's machines) cannot load its compiled operators, and its import then fails
    registering fake kernels for two of them ("operator torchvision::nms does not exist"), and so
    does every import of transformers. Those operators are then declared without kernels and
    torchvision imported again: its Python transforms work, and a call of a compiled operator
    (``nms``) still fails, with torch's own message."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    import torch

    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as exc:
        if not re.search(r"operator torchvision::\w+ does not exist", str(exc)):
            raise
        reason = _first_line(exc)
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]
    spec = importlib.util.find_spec("torchvision")
    source = Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"
    for op in dict.fromkeys(re.findall(r'register_fake\("torchvision::(\w+)"', source.read_text())):
        if not _has_schema(torch, op):
            torch.library.define(f"torchvision::{op}",
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401, F811

    logger.info("torchvision's compiled operators did not load (%s); its transforms are used "
                "without them", reason)


def _has_schema(torch, op: str) -> bool:
    try:
        getattr(torch.ops.torchvision, op)
        return True
    except (AttributeError, RuntimeError):
        return False


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """The Hugging Face hub switched offline while a model loads (variables for the libraries
    imported meanwhile, the hub's flag for one imported before), then put back."""
    saved = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    hub = sys.modules.get("huggingface_hub.constants")
    before = getattr(hub, "HF_HUB_OFFLINE", None)
    os.environ.update(dict.fromkeys(OFFLINE_VARIABLES, "1"))
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:
            was = (saved["HF_HUB_OFFLINE"] or "").upper() in {"1", "ON", "YES", "TRUE"}
            hub.HF_HUB_OFFLINE = before if before is not None else was


def _unit(vectors) -> np.ndarray:
    """Torch rows as L2-normalised float32 numpy rows."""
    out = vectors.float().cpu().numpy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _decode(data: bytes | None, side: int):
    """An RGB Pillow image of encoded bytes (a JPEG decoded at no less than twice ``side``), its
    EXIF orientation applied; None for None or bytes that do not decode."""
    from PIL import ImageOps

    from fedquery.functions.images import open_image

    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    try:
        with open_image(bytes(data)) as img:
            img.draft("RGB", (2 * side, 2 * side))
            return ImageOps.exif_transpose(img).convert("RGB")
    except Exception:  # noqa: BLE001 - broken files raise almost anything from the decoders
        return None


def _probe_image():
    from PIL import Image

    return Image.new("RGB", (8, 8), (128, 128, 128))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- from the environment ----------------------------------------------------------------------


def register_from_environment(env: dict[str, str] | None = None) -> JointModel | None:
    """The model ``FEDQUERY_CLIP_MODEL`` names, registered under its folder's or file's name and
    loaded on first use; None (with a warning) when it is not there or its width is unknown."""
    env = os.environ if env is None else env
    wanted = (env.get(CLIP_MODEL_ENV) or "").strip()
    if not wanted:
        return None
    name = Path(wanted.rstrip("/")).stem if Path(wanted).suffix in WEIGHTS else Path(wanted.rstrip("/")).name
    try:
        spec = locate(name, wanted)
        if spec.dim is None:
            raise PlanError(f"the config files of {str(spec.path)!r} do not say its width; register it "
                            "in Python with fedquery.register_clip, which loads it")
        model = JointModel(name, spec)
        model.register()
    except PlanError as exc:
        logger.warning("%s=%r is not registered: %s", CLIP_MODEL_ENV, wanted, exc)
        return None
    logger.info("joint model %r registered from %s (loaded on first use)", name, spec.path)
    return model


register_from_environment()
