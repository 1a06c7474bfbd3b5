"""Reading a catalog file: safe YAML, with limits on what a small file may expand to.

YAML aliases let a file of a few hundred bytes stand for billions of values (the "billion
laughs"): each ``*alias`` repeats a whole subtree. So the file is read in three steps, each
bounded before the next one runs: its size; its events (nesting depth and count), from
PyYAML's iterative parser; then the composed node graph, whose size with every alias
expanded is counted with a budget (each node once, memoised), before any Python object is
built. Only then are the values constructed, by the safe constructor (no Python tags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedquery.errors import CatalogError

MAX_BYTES = 1 << 20        # a catalog is a few kilobytes; 1 MiB is far more than any needs
MAX_DEPTH = 64             # mappings and lists nested in one another
MAX_NODES = 100_000        # values once every alias is expanded


def read_yaml(path: Path) -> Any:
    """The document in ``path`` as Python values; ``CatalogError`` naming the file when it is
    too big, nested too deeply, expands to too many values, or is not valid YAML."""
    import yaml

    text = _read_text(path)
    try:
        _check_events(path, text)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_node(path, node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise CatalogError(f"{path}: nested too deeply to read") from None


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CatalogError(f"{path}: the file has {size} bytes; a catalog may have at most "
                               f"{MAX_BYTES} (is this the right file?)")
        data = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:  # it grew since stat (or is not a regular file)
        raise CatalogError(f"{path}: a catalog may have at most {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (byte {exc.start}); a catalog is a YAML "
                           "text file") from None


def _check_events(path: Path, text: str) -> None:
    """Nesting depth and number of events, from the parser (a state machine, no recursion)."""
    import yaml

    depth = 0
    for count, event in enumerate(yaml.parse(text, Loader=yaml.SafeLoader), 1):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise CatalogError(f"{path}: line {event.start_mark.line + 1}: mappings and lists "
                                   f"nested more than {MAX_DEPTH} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if count > MAX_NODES:
            raise CatalogError(f"{path}: more than {MAX_NODES} values")


def _check_node(path: Path, root: Any) -> None:
    """The number of values with every alias expanded, counted over the node graph (each
    node's expanded size computed once), stopping at the budget; also refuses an alias that
    contains itself and a key written twice in one mapping."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_NODES:
                raise CatalogError(f"{path}: line {node.start_mark.line + 1}: expands to more "
                                   f"than {MAX_NODES} values (YAML aliases repeat what they "
                                   "name; write the values out or use fewer aliases)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise CatalogError(f"{path}: line {node.start_mark.line + 1}: an alias refers to a "
                               "value that contains it")
        on_path.add(key)
        _check_duplicate_keys(path, node)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(path: Path, node: Any) -> None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                raise CatalogError(f"{path}: line {key.start_mark.line + 1}: key {key.value!r} "
                                   "is written twice in one mapping")
            seen.add(key.value)
