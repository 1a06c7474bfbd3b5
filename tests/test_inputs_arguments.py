"""Arguments of the public functions outside a connection's methods: a wrong one is a
PlanError naming it, never a raw ValueError or TypeError."""

from __future__ import annotations

import numpy as np
import pytest

import fedquery


def _ones(items: list) -> np.ndarray:
    return np.ones((len(items), 4))


BAD_EMBEDDERS = [
    # (id, args, kwargs, the message's end)
    ("name_int", (5, _ones, 4), {}, "register_embedder: name must be a non-empty string, got 5 (int)"),
    ("name_empty", ("", _ones, 4), {}, "register_embedder: name must be a non-empty string, got '' (str)"),
    ("name_blank", ("  ", _ones, 4), {}, "name must be a non-empty string, got '  ' (str)"),
    ("fn_none", ("e", None, 4), {}, "register_embedder('e'): fn must be a function of a list of "
                                    "inputs, got None (NoneType)"),
    ("dim_negative", ("e", _ones, -1), {}, "register_embedder('e'): dim must be an integer from 1 to "
                                           "65535, got -1 (int)"),
    ("dim_zero", ("e", _ones, 0), {}, "dim must be an integer from 1 to 65535, got 0 (int)"),
    ("dim_huge", ("e", _ones, 10**12), {}, "dim must be an integer from 1 to 65535, got 1000000000000 (int)"),
    ("dim_float", ("e", _ones, 3.5), {}, "dim must be an integer from 1 to 65535, got 3.5 (float)"),
    ("dim_text", ("e", _ones, "3"), {}, "dim must be an integer from 1 to 65535, got '3' (str)"),
    ("dim_bool", ("e", _ones, True), {}, "dim must be an integer from 1 to 65535, got True (bool)"),
    ("kind_audio", ("e", _ones, 4), {"kind": "audio"}, "register_embedder('e'): kind must be 'image' or "
                                                       "'text', got 'audio' (str)"),
    ("kind_list", ("e", _ones, 4), {"kind": ["text"]}, "kind must be 'image' or 'text', got ['text'] (list)"),
    ("default_text", ("e", _ones, 4), {"default": "yes"}, "register_embedder('e'): default must be True "
                                                          "or False, got 'yes' (str)"),
]


@pytest.mark.parametrize(("args", "kwargs", "message"), [(a, k, m) for _, a, k, m in BAD_EMBEDDERS],
                         ids=[i for i, _, _, _ in BAD_EMBEDDERS])
def test_register_embedder_names_the_wrong_argument(registry, args, kwargs, message: str) -> None:
    generation = registry.generation
    with pytest.raises(fedquery.PlanError) as info:
        fedquery.register_embedder(*args, **kwargs)
    assert str(info.value).endswith(message), str(info.value)
    assert registry.generation == generation  # nothing was registered


def test_register_embedder_with_good_arguments(registry) -> None:
    fedquery.register_embedder("ones-4", _ones, 4, kind="text")
    assert registry.get("text", "ones-4").dim == 4
