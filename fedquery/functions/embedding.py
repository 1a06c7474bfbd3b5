"""The embedder registry behind ``embed_image`` and ``embed_text``.

An embedder is a name, a function from a list of inputs (encoded image bytes, or strings) to a
2-D float array, its output width and the kind of input it takes. SQL names it by its name:
``embed_image(uri, 'numpy-colorhist-64')``; without a name the default of that kind is used.
Two small numpy embedders are built in so everything works offline; a sentence-transformers
model is registered as the text default when the package and the model's files are installed
locally (``FEDQUERY_TEXT_MODEL`` names a model directory or a model in the Hugging Face cache).
Nothing is ever downloaded.

>>> fedquery.register_embedder("gray-mean", lambda images: ..., dim=8)   # doctest: +SKIP
>>> con.sql("SELECT embed_image(image_uri, 'gray-mean') FROM frames")     # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedquery.errors import PlanError, SourceError
from fedquery.functions import embedders

Kind = Literal["image", "text"]
KINDS: tuple[Kind, ...] = ("image", "text")
FUNCTION_KIND: dict[str, Kind] = {"embed_image": "image", "embed_text": "text"}
TEXT_MODEL_ENV = "FEDQUERY_TEXT_MODEL"
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_DIM = 65_535

logger = logging.getLogger("fedquery")
_serials = itertools.count(1)


@dataclass(frozen=True)
class Embedder:
    """One registered embedder. ``serial`` tells registrations of the same name apart."""

    name: str
    fn: Callable[[list], Any] = field(repr=False)
    dim: int
    kind: Kind
    serial: int = field(default_factory=lambda: next(_serials))

    def __deepcopy__(self, memo: dict) -> Embedder:
        """Itself: a plan tree's copy keeps the registration its calls resolved to (and never
        copies a model behind ``fn``, such as a bound method of a loaded torch model)."""
        return self

    @property
    def function_name(self) -> str:
        """The executor function that runs it: ``__fq_embed_<kind>__<name>_<serial>``."""
        slug = re.sub(r"\W+", "_", self.name).strip("_").lower()
        return f"__fq_embed_{self.kind}__{slug}_{self.serial}"

    @property
    def sql_type(self) -> str:
        return f"FLOAT[{self.dim}]"

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """``fn`` over ``items`` as an (n, dim) float32 array, its shape checked."""
        try:
            out = np.asarray(self.fn(list(items)), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - a user's embedder may raise anything
            raise SourceError(f"embedder {self.name!r} failed: {type(exc).__name__}: {exc}",
                              source=f"embedder {self.name}") from exc
        if out.shape != (len(items), self.dim):
            raise SourceError(f"embedder {self.name!r} returned an array of shape {out.shape} for "
                              f"{len(items)} inputs; expected ({len(items)}, {self.dim})",
                              source=f"embedder {self.name}")
        return out


class Registry:
    """Embedders by kind and name, the default of each kind and a generation that moves on every
    change (plans that name embedder functions are cached by it).

    A name may hold one embedder of each kind: a joint text-image model (CLIP) registers its
    image and its text embedder under one name, and ``embed_image(uri, 'clip')`` and
    ``embed_text(text, 'clip')`` then give vectors of one space."""

    def __init__(self) -> None:
        self._embedders: dict[tuple[Kind, str], Embedder] = {}
        self._defaults: dict[Kind, str] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def register(self, name: str, fn: Callable[[list], Any], dim: int, *, kind: Kind = "image",
                 default: bool = False) -> Embedder:
        check_arguments(name, fn, dim, kind, default)
        embedder = Embedder(name, fn, dim, kind)
        with self._lock:
            self._embedders[kind, name] = embedder
            if default or kind not in self._defaults:
                self._defaults[kind] = name
            self.generation += 1
        return embedder

    def get(self, kind: Kind, model: str | None = None) -> Embedder:
        """The embedder a call names (``model``) or the default of its kind."""
        function = f"embed_{kind}"
        with self._lock:
            name = model if model is not None else self._defaults.get(kind)
            embedder = self._embedders.get((kind, name)) if name is not None else None
            other = [k for k, n in self._embedders if n == name and k != kind]
            names = sorted(n for k, n in self._embedders if k == kind)
        if name is None:
            raise PlanError(f"{function}: no {kind} embedder is registered; add one with "
                            "fedquery.register_embedder(name, fn, dim, kind=...)")
        if embedder is None and other:
            raise PlanError(f"{function}: model {name!r} embeds {other[0]}s, not {kind}s (registered "
                            f"{kind} embedders: {', '.join(names) or 'none'})")
        if embedder is None:
            lowered = {n.lower(): n for n in names}
            hint = [lowered[h] for h in difflib.get_close_matches(name.lower(), lowered, n=1)]
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise PlanError(f"{function}: unknown model {name!r}{did}; registered {kind} embedders: "
                            f"{', '.join(names) or 'none'}")
        return embedder

    def names(self) -> dict[str, tuple[Kind, ...]]:
        """Each registered name and the kinds it embeds (both for a joint model)."""
        found: dict[str, tuple[Kind, ...]] = {}
        for embedder in self.embedders():
            found[embedder.name] = (*found.get(embedder.name, ()), embedder.kind)
        return found

    def embedders(self) -> list[Embedder]:
        """Every registered embedder, by name and then kind."""
        with self._lock:
            return sorted(self._embedders.values(), key=lambda e: (e.name, KINDS.index(e.kind)))


REGISTRY = Registry()


def check_arguments(name: Any, fn: Any, dim: Any, kind: Any, default: Any) -> None:
    """``PlanError`` naming the first argument of ``register_embedder`` that is wrong."""
    where = "register_embedder"
    if not isinstance(name, str) or not name.strip():
        raise PlanError(f"{where}: name must be a non-empty string, got {_shown(name)}")
    where = f"register_embedder({name!r})"
    if not callable(fn):
        raise PlanError(f"{where}: fn must be a function of a list of inputs, got "
                        f"{_shown(fn)}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= MAX_DIM:
        raise PlanError(f"{where}: dim must be an integer from 1 to {MAX_DIM}, got {_shown(dim)}")
    if kind not in KINDS:
        raise PlanError(f"{where}: kind must be 'image' or 'text', got {_shown(kind)}")
    if not isinstance(default, bool):
        raise PlanError(f"{where}: default must be True or False, got {_shown(default)}")


def _shown(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def register_embedder(name: str, fn: Callable[[list], Any], dim: int, *, kind: Kind = "image",
                      default: bool = False) -> None:
    """Make ``fn`` callable from SQL as ``embed_image(uri, name)`` (``kind="image"``: it gets a
    list of encoded image bytes) or ``embed_text(text, name)`` (``kind="text"``: a list of str).

    ``fn`` returns a 2-D array of ``len(inputs)`` rows and ``dim`` columns; a row of NaN marks an
    input it could not embed (that row gives NULL). Registering a name again for the same kind
    replaces it; ``default=True`` makes it the model used when SQL names none. One name may hold
    an image and a text embedder whose vectors share one space (a joint model: register both,
    or load a CLIP checkpoint with ``fedquery.register_clip``).

    >>> fedquery.register_embedder("ones", lambda xs: np.ones((len(xs), 4)), 4)  # doctest: +SKIP
    """
    from fedquery.boundary import boundary

    with boundary():
        REGISTRY.register(name, fn, dim, kind=kind, default=default)


def sentence_transformer_model(env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The name and directory of a local sentence-transformers text model, if the package is
    installed and the model's files are on disk (``FEDQUERY_TEXT_MODEL``: a directory or a model
    id; else all-MiniLM-L6-v2 in the Hugging Face cache); None otherwise. Never downloads."""
    env = os.environ if env is None else env
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    wanted = env.get(TEXT_MODEL_ENV) or DEFAULT_TEXT_MODEL
    directory = Path(wanted).expanduser()
    if directory.is_dir():
        return directory.name, str(directory)
    found = cached_model_dir(wanted, ("modules.json",), env)
    return (wanted.rsplit("/", 1)[-1], str(found)) if found else None


def cached_model_dir(repo_id: str, markers: Sequence[str],
                     env: Mapping[str, str] | None = None) -> Path | None:
    """The snapshot folder of model ``repo_id`` (``org/name``) in the Hugging Face cache that
    holds one of ``markers``, or None: the cache's layout read directly (``HF_HUB_CACHE``,
    ``HF_HOME`` or ``~/.cache/huggingface``; ``refs/main`` names the snapshot), so nothing is
    imported, asked or downloaded, and any other string is simply not found."""
    env = os.environ if env is None else env
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id) or ".." in repo_id:
        return None
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not cache:
        home = env.get("HF_HOME") or str(Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
        cache = str(Path(home) / "hub")
    repo = Path(cache).expanduser() / ("models--" + repo_id.replace("/", "--"))
    try:
        revision = (repo / "refs" / "main").read_text().strip()
        snapshots = [repo / "snapshots" / revision]
    except OSError:
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime,
                           reverse=True) if (repo / "snapshots").is_dir() else []
    return next((s for s in snapshots for m in markers if (s / m).is_file()), None)


def _sentence_transformer_dim(path: str) -> int | None:
    """The output width from the model's pooling (or dense) config, without loading it."""
    for config in sorted(Path(path).glob("*/config.json")):
        try:
            values = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        dim = values.get("out_features") or values.get("word_embedding_dimension")
        if isinstance(dim, int):
            return dim
    return None


def _register_sentence_transformer() -> None:
    """The local sentence-transformers model, loaded on first use, as the default text model."""
    found = sentence_transformer_model()
    dim = _sentence_transformer_dim(found[1]) if found else None
    if found is None or dim is None:
        return
    name, path = found
    model: list = []

    def embed(texts: list[str]) -> np.ndarray:
        if not model:
            from sentence_transformers import SentenceTransformer

            model.append(SentenceTransformer(path, local_files_only=True))
        return model[0].encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)

    REGISTRY.register(name, embed, dim, kind="text", default=True)
    logger.info("text embedder %r registered from %s", name, path)


REGISTRY.register(embedders.NUMPY_IMAGE_MODEL, embedders.embed_images_numpy,
                  embedders.NUMPY_IMAGE_DIM, kind="image")
REGISTRY.register(embedders.NUMPY_TEXT_MODEL, embedders.embed_texts_numpy,
                  embedders.NUMPY_TEXT_DIM, kind="text")
_register_sentence_transformer()
