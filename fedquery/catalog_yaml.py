"""Reading a catalog file: safe YAML, with limits on what a small file may expand to.

YAML aliases let a file of a few hundred bytes stand for billions of values (the "billion
laughs"): each ``*alias`` repeats a whole subtree. So the file is read in three steps, each
bounded before the next one runs: its size; its events (nesting depth and count), from
PyYAML's iterative parser; then the composed node graph, whose size with every alias
expanded is counted with a budget (each node once, memoised), before any Python object is
built. Only then are the values constructed, by the safe constructor (no Python tags).

An error names the file, the line and column and what is wrong, never the text of the line
(PyYAML's own messages quote it, and a catalog line may hold a password); a value that cannot
be built (``2024-02-30``, ``!!int "abc"``) also names its key path.
"""

from __future__ import annotations

import functools
import re
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
        loader = _loader_class()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_node(path, node)
            return _construct(path, loader, node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: {syntax_error(exc, text)}") from None
    except RecursionError:
        raise CatalogError(f"{path}: nested too deeply to read") from None


def syntax_error(exc: Exception, text: str) -> str:
    """Where and what is wrong, in PyYAML's words with anything quoted from the file left
    out: ``line 5, column 63: not valid YAML: expected the node content, but found '}'``."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem_mark or exc.context_mark):
        mark = exc.problem_mark or exc.context_mark
        if exc.problem == "second occurrence" and exc.context_mark is not None:
            return (f"{_where(mark)}: not valid YAML: an anchor (&name) is defined a second "
                    f"time, first at {_where(exc.context_mark)}")
        what = _unquoted(exc.problem or exc.context or "")
        message = f"{_where(mark)}: not valid YAML: {what}"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({_unquoted(exc.context)}, which starts at {_where(exc.context_mark)})"
        return message + _hint(exc.problem or "")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return (f"line {line}, column {column}: not valid YAML: control character "
                f"#x{ord(exc.character) if isinstance(exc.character, str) else exc.character:04x} "
                "(write it as an escape in a double-quoted string)")
    return f"not valid YAML ({type(exc).__name__})"


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


# PyYAML quotes one character it did not expect ('}'), or a name taken from the file: a tag,
# an alias, an anchor, a tag handle. A name is left out: an unquoted password that starts
# with * or ! is read as an alias or a tag, and the message would show it.
_QUOTED = re.compile(r"'((?:[^'\\]|\\.){2,})'" + r'|"((?:[^"\\]|\\.){2,})"')
_STANDARD_TAG = re.compile(r"tag:yaml\.org,2002:[a-z]+")
_HINTS = {
    "undefined alias": "a value that starts with * is read as an alias: quote it",
    "constructor for the tag": "a value that starts with ! is read as a tag: quote it "
                               "(Python tags are never read)",
    "anchor": "a value that starts with & is read as an anchor: quote it",
}


def _unquoted(message: str) -> str:
    def keep(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return match.group(0) if _STANDARD_TAG.fullmatch(name) or name.startswith("<") \
            else "(not shown)"
    return _QUOTED.sub(keep, message)


def _hint(problem: str) -> str:
    hint = next((h for words, h in _HINTS.items() if words in problem), None)
    return f"; {hint}" if hint else ""


class _ValueProblem(Exception):
    """A scalar the safe constructor could not build (a date that does not exist, a number
    too long or not a number): the node, and the constructor's own error."""

    def __init__(self, node: Any, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.node, self.error = node, error


@functools.cache
def _loader_class() -> type:
    """PyYAML's safe loader whose constructor reports the node it could not build (made on
    first use: PyYAML is imported lazily)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_object(self, node, deep=False):
            try:
                return super().construct_object(node, deep)
            except (ValueError, TypeError, OverflowError) as exc:
                raise _ValueProblem(node, exc) from None

    return Loader


def _construct(path: Path, loader: Any, root: Any) -> Any:
    """The document's values; a scalar that cannot be built is a ``CatalogError`` naming its
    key path, line and column (never its text, which may be a secret)."""
    try:
        return loader.construct_document(root)
    except _ValueProblem as problem:
        node, error = problem.node, problem.error
        keypath = key_path(root, node) or "(top level)"
        raise CatalogError(f"{path}: {keypath}: {_where(node.start_mark)}: "
                           f"{_value_problem(loader, node, error)}") from None


def _value_problem(loader: Any, node: Any, error: Exception) -> str:
    kind = node.tag.rsplit(":", 1)[-1]
    what = {"int": "an integer", "float": "a number", "timestamp": "a date or timestamp"}.get(
        kind, f"a value of type {kind}" if _STANDARD_TAG.fullmatch(node.tag) else "a value")
    reason = str(error).split("\n")[0]
    value = str(node.value).strip()
    if "Exceeds the limit" in reason:
        reason = "too many digits"
    elif not reason or (value and value in reason):
        reason = ""
    text = f"cannot be read as {what}" + (f" ({reason})" if reason else "")
    import yaml

    if node.style is None and loader.resolve(yaml.ScalarNode, node.value, (True, False)) == node.tag:
        # a plain scalar whose type YAML guessed from its text, not from a tag
        text += "; quote it to keep it as text"
    return text


def key_path(root: Any, target: Any) -> str | None:
    """The dotted key path from ``root`` to the node ``target`` (list items as ``[i]``, a
    mapping's key as ``<path> (a key)``), found without recursion."""
    import yaml

    stack: list[tuple[Any, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        if node is target:
            return where
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                child = f"{where}.{name}" if where else name
                stack += [(value, child), (key, f"{child} (a key)")]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
    return None


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
