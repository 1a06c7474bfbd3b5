"""Pillow's modules, imported when first used rather than by ``import fedquery``.

Every connection registers the image functions, whose modules name ``Image`` at their top;
importing Pillow there would load it for a catalog that never reads an image. ``Image`` and
``ImageOps`` here stand for ``PIL.Image`` and ``PIL.ImageOps`` and import them on their first
attribute access (``Image.open``, ``Image.Resampling.BOX``, ``except Image.DecompressionBombError``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A module imported on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


Image = LazyModule("PIL.Image")
ImageOps = LazyModule("PIL.ImageOps")
