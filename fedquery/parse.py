"""SQL text to a sqlglot tree, in DuckDB's dialect (the residual runs in DuckDB)."""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, TokenError
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.tokens import TokenType

from fedquery.errors import ParseError

DIALECT = "duckdb"
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # refusals are ours to report


def first_keyword(sql: str) -> str:
    """The statement's first word, upper-case, after whitespace, ``(``, ``;`` and comments."""
    text = sql
    while True:
        text = text.lstrip(" \t\r\n(;")
        if text.startswith("--"):
            text = text.partition("\n")[2]
        elif text.startswith("/*"):
            text = text.partition("*/")[2]
        else:
            break
    words = text.split(None, 1)
    return words[0].upper() if words else ""


def parse(sql: str) -> exp.Expr:
    """Parse exactly one statement; errors carry the line, column and a caret.

    >>> parse("SELECT 1").sql()
    'SELECT 1'
    """
    statements = parse_statements(sql)
    if len(statements) > 1:
        raise ParseError("expected one statement, got several (remove the ';' between them)",
                         sql=sql)
    return statements[0]


def parse_statements(sql: str) -> list[exp.Expr]:
    """Parse one or more statements (at least one)."""
    statements = _parse_statements(sql)
    numbered = number_placeholders(sql)
    return statements if numbered == sql else _parse_statements(numbered)


def number_placeholders(sql: str) -> str:
    """``?`` parameters written as ``$1``, ``$2``, ... in the order DuckDB numbers them (their
    order in the text), so each keeps its value wherever the planner moves it."""
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError:
        return sql
    marks = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    parts, last = [], 0
    for number, token in enumerate(marks, 1):
        parts += [sql[last:token.start], f"${number}"]
        last = token.end + 1
    return "".join(parts) + sql[last:]


def _parse_statements(sql: str) -> list[exp.Expr]:
    try:
        statements = [s for s in sqlglot.parse(sql, dialect=DIALECT,
                                               error_level=ErrorLevel.RAISE) if s is not None]
    except SqlglotParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        description = first.get("description") or str(exc)
        if "VectorSearch" in description:  # sqlglot's own name for it, and its argument names
            description = ("vector_search takes ('table', query_vector, k [, metric := 'cosine'] "
                           "[, column := 'name'])")
        raise ParseError(f"syntax error: {description}", sql=sql, line=first.get("line"),
                         col=first.get("col")) from None
    except TokenError as exc:
        line, col = _position_of_unclosed(sql)
        raise ParseError(f"syntax error: {exc}", sql=sql, line=line, col=col) from None
    if not statements:
        raise ParseError("empty query: expected one SELECT statement", sql=sql)
    return statements


def _position_of_unclosed(sql: str) -> tuple[int, int]:
    """Line and column of the last quote opened and never closed (tokenizer errors)."""
    quote, start = None, 0
    for i, ch in enumerate(sql):
        if quote is None and ch in "'\"":
            quote, start = ch, i
        elif ch == quote:
            quote = None
    before = sql[:start]
    return before.count("\n") + 1, start - (before.rfind("\n") + 1) + 1
