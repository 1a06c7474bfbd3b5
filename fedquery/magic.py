"""``%%fq`` and ``%fq``: SQL cells in IPython and Jupyter, run by a fedquery connection.

``%load_ext fedquery`` registers them. ``%%fq con -o rainy`` runs the cell's SQL on the
connection named ``con`` in the notebook's namespace (without a name, on the one open
connection there is), stores the ``Result`` as ``rainy`` and returns it, so it displays.
``$name`` in the SQL is a parameter whose value is the variable ``name``: a value is bound,
never spliced into the SQL text (the magics turn off IPython's own ``$`` expansion). ``%fq``
does the same for one line: ``%fq con SELECT count(*) FROM frames``.

>>> %%fq con                                   # doctest: +SKIP
... SELECT city, count(*) FROM drives WHERE weather = $weather GROUP BY city
"""

from __future__ import annotations

import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from fedquery.connection import Connection

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_OUTPUT = re.compile(rf"\s*(?:-o|--out)\s+({_NAME})(?=\s|$)")
_WORD = re.compile(rf"\s*({_NAME})(?=\s|$)")
USAGE = "%%fq [CONNECTION] [-o NAME] (the SQL in the cell), or %fq [CONNECTION] [-o NAME] SQL"


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%fq`` and ``%%fq`` (``%load_ext fedquery``)."""
    ipython.register_magics(FedQueryMagics)


@magics_class
class FedQueryMagics(Magics):
    """The ``fq`` line and cell magic."""

    @no_var_expand
    @line_cell_magic
    def fq(self, line: str, cell: str | None = None) -> Any:
        """Run SQL on a fedquery connection: ``%%fq [CONNECTION] [-o NAME]`` over a cell,
        ``%fq [CONNECTION] [-o NAME] SQL`` on one line; ``$name`` binds the variable ``name``."""
        __tracebackhide__ = True  # IPython shows the error, not this frame
        namespace = self.shell.user_ns
        output, name, rest = _options(line, namespace)
        sql = cell if cell is not None else rest
        if cell is not None and rest.strip():
            raise UsageError(f"%%fq takes a connection and -o NAME on its line, not "
                             f"{rest.strip()!r}; the SQL goes in the cell. Usage: {USAGE}")
        if not sql or not sql.strip():
            raise UsageError(f"%fq: no SQL to run. Usage: {USAGE}")
        con = _connection(name, namespace)
        result = con.sql(sql, params=_parameters(sql, namespace))
        if output is not None:
            namespace[output] = result
        return result


def _options(line: str, namespace: dict) -> tuple[str | None, str | None, str]:
    """``-o NAME`` and a leading connection name taken off the line; the rest (the SQL of a
    line magic). A first word is a connection name if a variable of that name exists."""
    output = name = None
    rest = line
    while True:
        found = _OUTPUT.match(rest)
        if found:
            output, rest = found.group(1), rest[found.end():]
            continue
        found = _WORD.match(rest)
        if found and name is None and found.group(1) in namespace:
            name, rest = found.group(1), rest[found.end():]
            continue
        return output, name, rest


def _connection(name: str | None, namespace: dict) -> Connection:
    """The connection named, or the one open connection of the namespace."""
    if name is not None:
        con = namespace[name]
        if not isinstance(con, Connection):
            raise UsageError(f"%fq: {name} is a {type(con).__name__}, not a fedquery "
                             f"Connection (con = fedquery.connect('catalog.yaml'))")
        return con
    open_ones = {n: v for n, v in namespace.items()
                 if isinstance(v, Connection) and not n.startswith("_") and not v._closed}
    if len(open_ones) == 1:
        return next(iter(open_ones.values()))
    if not open_ones:
        raise UsageError("%fq: no open fedquery connection in the namespace; open one first "
                         "(con = fedquery.connect('catalog.yaml'))")
    raise UsageError(f"%fq: several connections are open ({', '.join(sorted(open_ones))}); "
                     f"name one: %%fq {sorted(open_ones)[0]}")


def _parameters(sql: str, namespace: dict) -> dict[str, Any] | None:
    """The values of the ``$name`` parameters the SQL uses, from the namespace."""
    names = parameter_names(sql)
    missing = [n for n in names if n not in namespace]
    if missing:
        raise UsageError(f"%fq: the SQL uses ${missing[0]} but no variable {missing[0]!r} is "
                         "defined; set it first")
    return {n: namespace[n] for n in names} or None


def parameter_names(sql: str) -> list[str]:
    """Names of the ``$name`` parameters of ``sql`` (not ``$1``; not in strings or comments).

    >>> parameter_names("SELECT $a, '$b', $1 -- $c\\n FROM t WHERE x = $a")
    ['a']
    """
    try:
        tokens = Dialect.get_or_raise("duckdb").tokenize(sql)
    except SqlglotError:
        return []  # the query's own error says where
    names = []
    for token, following in zip(tokens, tokens[1:], strict=False):
        if (token.token_type == TokenType.PARAMETER and following.start == token.end + 1
                and re.fullmatch(_NAME, following.text)):
            names.append(following.text)
    return list(dict.fromkeys(names))
