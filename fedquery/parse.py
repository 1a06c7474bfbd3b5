"""SQL text to a sqlglot tree, in DuckDB's dialect (the residual runs in DuckDB).

sqlglot's parser, its generator and the planner's passes recurse into the tree, so a query
nested too deeply would exhaust Python's stack (``RecursionError``) somewhere inside them.
It is refused here instead, with the line and column: brackets, ``CASE`` and runs of prefix
operators are counted on the tokens before the parser recurses (``MAX_NESTING``), and the
depth of the parsed tree is measured before anything else walks it (``MAX_DEPTH``; a chain
of ``AND`` or ``OR`` counts once, as sqlglot walks those without recursing).
"""

from __future__ import annotations

import difflib
import logging
import re

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, TokenError
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.tokens import Token, TokenType

from fedquery.errors import ParseError

DIALECT = "duckdb"
MAX_NESTING = 100   # brackets, CASE and prefix operators open at once, counted on the tokens
MAX_DEPTH = 200     # levels of the parsed tree
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # refusals are ours to report

_OPEN = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
_CLOSE = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
_PREFIX = {TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE}
_FLAT = (exp.And, exp.Or)


def require_text(sql: object) -> str:
    """The query itself, which must be a ``str`` (not bytes, None or a number)."""
    if not isinstance(sql, str):
        raise ParseError(f"expected the query as a string (str), got {type(sql).__name__}")
    return sql


def first_keyword(sql: str) -> str:
    """The statement's first word, upper-case, after whitespace, ``(``, ``;`` and comments."""
    text = require_text(sql)
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
    """Parse one or more statements (at least one), each no deeper than ``MAX_DEPTH``."""
    dialect = Dialect.get_or_raise(DIALECT)
    parser = dialect.parser(error_level=ErrorLevel.RAISE)
    tokens: list[Token] = []
    try:
        tokens = as_duckdb_reads(dialect.tokenize(require_text(sql)))
        _check_nesting(tokens, sql)
        statements = [balanced(s) for s in parser.parse(tokens, sql) if s is not None]
    except RecursionError:
        raise ParseError(f"the query is nested too deeply to parse (at most {MAX_NESTING} "
                         "levels); simplify it, or split it with WITH", sql=sql) from None
    except SqlglotParseError as exc:
        unknown = _unknown_statement(tokens)
        if unknown is not None:
            raise unknown_statement_error(unknown, sql) from None
        first = exc.errors[0] if exc.errors else {}
        description = first.get("description") or str(exc)
        if "VectorSearch" in description:  # sqlglot's own name for it, and its argument names
            description = ("vector_search takes ('table', query_vector, k [, metric := 'cosine'] "
                           "[, column := 'name'])")
        raise ParseError(f"syntax error: {readable(description)}", sql=sql,
                         line=first.get("line"), col=first.get("col")) from None
    except TokenError as exc:
        line, col = _position_of_unclosed(sql)
        raise ParseError(f"syntax error: {exc}", sql=sql, line=line, col=col) from None
    except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
        # sqlglot's own builders on malformed input ('x ->> FROM' gives a builder None)
        token = getattr(parser, "_prev", None) or getattr(parser, "_curr", None)
        raise ParseError(f"syntax error near {token.text!r}" if token else "syntax error",
                         sql=sql, line=getattr(token, "line", None),
                         col=getattr(token, "col", None)) from exc
    if not statements:
        raise ParseError("empty query: expected one SELECT statement", sql=sql)
    for statement in statements:
        _check_depth(statement, sql)
        bracket_negations(statement)
    return statements


def bracket_negations(tree: exp.Expr) -> exp.Expr:
    """A NOT that is an operand of another operator gets its brackets: sqlglot writes
    ``(t NOT IN (1, 2)) <= TRUE`` as ``NOT t IN (1, 2) <= TRUE``, which DuckDB reads as
    ``NOT (t IN (1, 2) <= TRUE)``, so every SQL text made from the tree would mean another
    query."""
    for node in list(tree.find_all(exp.Not)):
        parent = node.parent
        if isinstance(parent, exp.Binary) and not isinstance(parent, exp.Connector):
            node.replace(exp.Paren(this=node.copy()))
    return tree


def as_duckdb_reads(tokens: list[Token]) -> list[Token]:
    """Tokens where sqlglot's reading of DuckDB SQL differs from DuckDB's own, mended."""
    return whole_interval_strings(placeholder_casts(tokens))


def placeholder_casts(tokens: list[Token]) -> list[Token]:
    """``?::INT`` is a placeholder cast in DuckDB; sqlglot reads ``?::`` as one operator."""
    out: list[Token] = []
    for token in tokens:
        if token.token_type == TokenType.QDCOLON and token.text == "?::":
            out.append(Token(TokenType.PLACEHOLDER, "?", token.line, token.col, token.start,
                             token.start))
            out.append(Token(TokenType.DCOLON, "::", token.line, token.col, token.start + 1,
                             token.end))
        else:
            out.append(token)
    return out


def whole_interval_strings(tokens: list[Token]) -> list[Token]:
    """``INTERVAL '1 day 02:03:04'`` read as DuckDB reads it: sqlglot keeps the first number
    and unit of such a string and drops the rest (``INTERVAL '1' DAY``; ``'1 day ago'`` loses
    its sign), so a string of one number and unit with anything more becomes
    ``CAST('...' AS INTERVAL)``, which DuckDB parses whole."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        string = tokens[i + 1] if i + 1 < len(tokens) else None
        if (token.token_type == TokenType.INTERVAL and string is not None
                and string.token_type == TokenType.STRING and _mangled_interval(string.text)
                and not _unit_follows(tokens, i + 2)):
            def like(kind: TokenType, text: str, at: Token = token) -> Token:
                return Token(kind, text, at.line, at.col, at.start, at.end)
            out += [like(TokenType.VAR, "CAST"), like(TokenType.L_PAREN, "("), string,
                    like(TokenType.ALIAS, "AS", string), like(TokenType.INTERVAL, "INTERVAL", string),
                    like(TokenType.R_PAREN, ")", string)]
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _mangled_interval(text: str) -> bool:
    parts = exp.INTERVAL_STRING_RE.findall(text)
    return len(parts) == 1 and bool(exp.INTERVAL_STRING_RE.sub("", text, count=1).strip())


def _unit_follows(tokens: list[Token], i: int) -> bool:
    return i < len(tokens) and (tokens[i].token_type == TokenType.VAR
                                or tokens[i].text.upper() in INTERVAL_UNITS)


INTERVAL_UNITS = {"YEAR", "YEARS", "MONTH", "MONTHS", "DAY", "DAYS", "HOUR", "HOURS", "MINUTE",
                  "MINUTES", "SECOND", "SECONDS", "WEEK", "WEEKS", "MILLISECOND", "MILLISECONDS",
                  "MICROSECOND", "MICROSECONDS", "QUARTER", "QUARTERS", "DECADE", "CENTURY",
                  "MILLENNIUM"}
STATEMENT_WORDS = ("SELECT", "WITH", "VALUES", "FROM", "DESCRIBE", "SHOW", "SUMMARIZE", "TABLE")
_CLASS = re.compile(r"<class '(?:\w+\.)*(\w+)'>")
_TOKEN = re.compile(r"<Token token_type: TokenType\.(\w+), text: (.*?), line: \d+.*?>")
_MISSING = re.compile(r"Required keyword: '(\w+)' missing for (\w+)")
_OPERATORS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Mod": "%", "EQ": "=",
              "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "And": "AND",
              "Or": "OR", "Like": "LIKE", "ILike": "ILIKE", "Is": "IS", "DPipe": "||"}
_CLAUSES = {"Where": "WHERE", "Having": "HAVING", "Qualify": "QUALIFY", "Limit": "LIMIT",
            "Offset": "OFFSET", "Order": "ORDER BY", "Group": "GROUP BY", "Join": "JOIN",
            "From": "FROM"}


def readable(description: str) -> str:
    """sqlglot's error text in SQL words: no Python class or token reprs."""
    description = _TOKEN.sub(lambda m: "the end of the query" if m.group(1) == "SENTINEL"
                             else repr(m.group(2)), description)
    description = _CLASS.sub(lambda m: m.group(1), description)
    missing = _MISSING.fullmatch(description)
    if missing:
        part, kind = missing.groups()
        if kind in _OPERATORS:
            side = "left" if part == "this" else "right"
            return f"the {side}-hand side of {_OPERATORS[kind]!r} is missing"
        if kind in _CLAUSES:
            return f"{_CLAUSES[kind]} is not followed by what it needs"
        return f"an incomplete {kind.lower()} expression"
    return description


def _unknown_statement(tokens: list[Token]) -> Token | None:
    """The first token when it is a plain word where a statement keyword must stand."""
    first = next((t for t in tokens if t.token_type not in _OPEN | {TokenType.SEMICOLON}), None)
    return first if first is not None and first.token_type == TokenType.VAR else None


def unknown_statement_error(token: Token, sql: str) -> ParseError:
    """``SELEC * FROM t``: what a statement starts with, and the nearest keyword."""
    close = difflib.get_close_matches(token.text.upper(), STATEMENT_WORDS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ParseError(f"syntax error at or near {token.text!r}: a query starts with SELECT, "
                      f"WITH, VALUES, FROM, DESCRIBE or SHOW{hint}", sql=sql, line=token.line,
                      col=token.col - len(token.text) + 1)


def _check_nesting(tokens: list[Token], sql: str) -> None:
    """Refuse brackets, CASE and prefix operators (NOT, -, +, ~) open more than
    ``MAX_NESTING`` deep, at the token that goes past it, before the parser recurses."""
    depth = run = 0
    for token in tokens:
        kind = token.token_type
        run = run + 1 if kind in _PREFIX else 0
        if kind in _OPEN:
            depth += 1
        elif kind in _CLOSE:
            depth = max(depth - 1, 0)
        if depth + run > MAX_NESTING:
            raise ParseError(f"the query nests brackets, CASE or operators more than "
                             f"{MAX_NESTING} deep; simplify it, or split it with WITH",
                             sql=sql, line=token.line, col=token.col)


def _check_depth(tree: exp.Expr, sql: str) -> None:
    """Refuse a parsed tree more than ``MAX_DEPTH`` levels deep (long ``+`` or ``UNION``
    chains, nested subqueries), pointing at its deepest part, before anything recurses in it."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            line, col = _position(node)
            raise ParseError(f"the query is nested more than {MAX_DEPTH} levels deep (subqueries, "
                             "operators, function calls); simplify it, or split it with WITH",
                             sql=sql, line=line, col=col)
        for child in node.iter_expressions():
            flat = isinstance(child, _FLAT) and type(child) is type(node)
            stack.append((child, depth if flat else depth + 1))


def _position(node: exp.Expr) -> tuple[int | None, int | None]:
    """Line and column of the nearest token under ``node`` or its ancestors that has them."""
    while node is not None:
        for inner in node.walk():
            if "line" in inner.meta:
                return inner.meta["line"], inner.meta.get("col")
        node = node.parent
    return None, None


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


BALANCE_FROM = 8  # AND/OR chains of this many terms or more are rebalanced


def balanced(tree: exp.Expr) -> exp.Expr:
    """The tree with each long chain of ``AND`` (or of ``OR``) rebuilt as a balanced tree.

    The parser nests ``a OR b OR c ...`` to the left, one level per term: 5,000 terms are
    5,000 levels, which every walk pays for with its depth (qualifying columns went quadratic:
    3.6 s for 4,000 ORs, 0.09 s balanced) or overflows Python's stack in. AND and OR are
    associative and SQL fixes no order of evaluation, so the balanced tree means the same.
    """
    for kind in (exp.Or, exp.And):
        for node in list(tree.find_all(kind)):
            if isinstance(node.parent, kind):
                continue  # inside a chain whose top is rebuilt
            terms, stack = [], [node]
            while stack:
                part = stack.pop()
                if isinstance(part, kind):
                    stack += [part.expression, part.this]
                else:
                    terms.append(part)
            if len(terms) >= BALANCE_FROM:
                rebuilt = _join(kind, terms)
                if node is tree:
                    tree = rebuilt
                else:
                    node.replace(rebuilt)
    return tree


def _join(kind: type[exp.Connector], terms: list[exp.Expr]) -> exp.Expr:
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return kind(this=_join(kind, terms[:middle]), expression=_join(kind, terms[middle:]))
