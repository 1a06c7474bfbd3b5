"""Reading ``explain`` text in tests: fragment blocks, their lines, the rows they moved."""

from __future__ import annotations

import re


def fragments(text: str) -> list[str]:
    """The blocks of an explain text, one per fragment (a keys plan stays inside its block)."""
    return re.split(r"\n(?=\[__f\d+\])", text.split("\nresidual (DuckDB):")[0])[1:]


def fragment(text: str, table: str) -> str:
    """The block of the one scan of ``table``."""
    found = [f for f in fragments(text) if re.search(rf"^\s+table:\s+\S*\b{table}$", f, re.M)]
    assert len(found) == 1, f"expected one scan of {table} in:\n{text}"
    return found[0]


def source_fragment(text: str, source: str) -> str:
    """The block of the first fragment of ``source``."""
    found = [f for f in fragments(text) if re.match(rf"\[__f\d+\] {source} \(", f)]
    assert found, f"no fragment of {source} in:\n{text}"
    return found[0]


def line(block: str, key: str) -> str:
    """The value of a block's ``key:`` line."""
    match = re.search(rf"^\s+{key}:\s+(.*)$", block, re.M)
    assert match, f"no {key}: line in\n{block}"
    return match.group(1)


def rows(block: str) -> int:
    """The rows a fragment gave, from its ``analyze:`` line (``explain(analyze=True)``)."""
    return int(line(block, "analyze").split(" rows", 1)[0].replace(",", ""))
