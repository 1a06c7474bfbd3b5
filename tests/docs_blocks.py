"""The fenced code blocks of README.md and docs/*.md, read for tests/test_docs.py.

A block is what sits between two fences; its language (the fence's info string) says how it
is checked. An HTML comment on the line just before the opening fence marks it:
``<!-- docs-test: skip (why) -->`` leaves it out (counted by the test, so skipping stays rare),
``<!-- docs-test: parse -->`` only parses SQL that names tables the way the planner's rewrites
write them, ``<!-- docs-test: save NAME -->`` writes a YAML block to NAME in the working folder
for later blocks, ``<!-- docs-test: needs postgres s3 -->`` runs the section against the sample
data copied onto the test PostgreSQL and S3 servers.
"""

from __future__ import annotations

import doctest
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
# python: exec, or doctest when written as a >>> session; sql: planned; yaml: loaded as a
# catalog; sh/console: fedquery commands run; ipython: run in an IPython shell; text: output,
# diagrams and syntax, not run (a CLI synopsis is checked against the argument parser).
LANGUAGES = ("python", "sql", "yaml", "sh", "console", "ipython", "text")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<lang>[^`\s]*)\s*$")
HEADING = re.compile(r"^#{1,2} (?P<title>.+)$")
MARK = re.compile(r"^\s*<!-- docs-test: (?P<mark>.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text (dedented) and its mark."""

    document: str
    line: int  # of the opening fence, 1-based
    section: str
    lang: str
    text: str
    mark: str = ""

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def skipped(self) -> bool:
        return self.mark.startswith("skip")


def read_blocks(document: str) -> list[Block]:
    """Every fenced block of ``document`` (a path relative to the repository), in order."""
    lines = (ROOT / document).read_text().splitlines()
    blocks, section, i = [], "(top)", 0
    while i < len(lines):
        heading, fence = HEADING.match(lines[i]), FENCE.match(lines[i])
        if heading:
            section = heading["title"]
        if not fence:
            i += 1
            continue
        end = _closing(lines, i, fence)
        body = [line.removeprefix(fence["indent"]) for line in lines[i + 1:end]]
        mark = MARK.match(lines[i - 1]) if i else None
        blocks.append(Block(document, i + 1, section, fence["lang"], "\n".join(body) + "\n",
                            mark["mark"] if mark else ""))
        i = end + 1
    return blocks


def _closing(lines: list[str], start: int, fence: re.Match) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip() == fence["fence"]:
            return j
    raise AssertionError(f"unclosed fence at line {start + 1}")


def sections(document: str) -> dict[str, list[Block]]:
    """The blocks of ``document`` by section (a # or ## heading), sections in order."""
    grouped: dict[str, list[Block]] = {}
    for block in read_blocks(document):
        grouped.setdefault(block.section, []).append(block)
    return grouped


# ---------------------------------------------------------------------- doctest sessions

EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?P<name>[A-Z]\w*(?:Error|Cancelled|Timeout|Exception)):")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


class _Checker(doctest.OutputChecker):
    """doctest's checker; an exception matches ``ClassName: message`` without its module."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        got = EXCEPTION.sub(lambda m: m["name"] + ":", got)
        return super().check_output(want, got, optionflags)


def run_session(block: Block, namespace: dict) -> str:
    """Run a ``>>>`` session in ``namespace``; return doctest's report ('' when it passed).

    An expected output that reads ``SomeError: message`` (no traceback header, as the docs
    write errors) is an expected exception with that message.
    """
    test = doctest.DocTestParser().get_doctest(_blank_lines_marked(block.text), namespace, block.where,
                                               block.document, block.line)
    for example in test.examples:
        if example.exc_msg is None and EXCEPTION.match(example.want):
            example.exc_msg = example.want
    report: list[str] = []
    runner = doctest.DocTestRunner(checker=_Checker(), optionflags=FLAGS)
    runner.run(test, out=report.append, clear_globs=False)
    return "".join(report)


def matches(want: str, got: str) -> bool:
    """``got`` is ``want`` up to ``...`` and whitespace, as in a doctest."""
    return _Checker().check_output(want, got, FLAGS)


def _blank_lines_marked(text: str) -> str:
    """A blank line inside an expected output (more output follows it) as doctest's
    ``<BLANKLINE>``, so the docs can show a multi-line error as it prints."""
    lines = text.split("\n")
    for i in range(1, len(lines) - 1):
        inside = not lines[i - 1].startswith((">>>", "...")) and lines[i - 1].strip()
        if not lines[i].strip() and inside and lines[i + 1].strip() and not lines[i + 1].startswith(">>>"):
            lines[i] = "<BLANKLINE>"
    return "\n".join(lines)
