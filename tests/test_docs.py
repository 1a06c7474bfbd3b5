"""Every fenced block of README.md and docs/*.md is run or checked, so none can drift.

One test per document section (a # or ## heading); its blocks run in order in one namespace
holding ``fedquery`` and ``con`` (one connection to the sample data set per document), so a
block may build on the ones before it. ``/tmp/x`` (where the docs build the sample) is the
sample's folder and ``~/.cache/fedquery/sample`` leads there too. How each language is checked
and how a block is marked: tests/docs_blocks.py. A failure names the block's file and line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import sqlglot
import yaml

import fedquery
from fedquery.catalog import load_catalog
from fedquery.functions.embedding import REGISTRY
from tests.docs_blocks import DOCUMENTS, LANGUAGES, ROOT, Block, matches, read_blocks, run_session, sections

# Blocks left out, each marked in its document with the reason: a CLIP checkpoint on disk
# (sql.md: register_clip), files the sample does not hold (sql.md: a FIFO and a 300 MB file).
MAX_SKIPPED = 2
CASES = [(doc, title) for doc in DOCUMENTS for title in sections(doc)]
CATALOG_SECTIONS = ("sources", "tables", "blobs", "entities", "settings")
SKIPPED_COMMANDS = ("make ", "pip ", "python ", "PYTHONPATH=")
LOADED: set[str] = set()  # PostgreSQL databases holding the sample's warehouse


class DocsEnv:
    """The sample data set, one connection per document, and what a section's blocks share."""

    def __init__(self, sample: Path) -> None:
        self.sample = sample
        self.folder = sample.parent
        self.connections: dict[str, fedquery.Connection] = {}
        self.replacements = {"http://127.0.0.1:9000": None}

    def connection(self, document: str) -> fedquery.Connection:
        if document not in self.connections:
            self.connections[document] = fedquery.connect(self.sample)
        return self.connections[document]

    def text(self, block: Block, endpoint: str | None = None) -> str:
        """The block with ``/tmp/x`` made the sample's folder (and the S3 endpoint the test's)."""
        text = re.sub(r"/tmp/x(?![\w.])", str(self.folder), block.text)
        return text.replace("http://127.0.0.1:9000", endpoint) if endpoint else text

    def copy(self, folder: Path) -> DocsEnv:
        """The same, over a copy of the sample, for a section that writes (an index)."""
        shutil.copytree(self.folder, folder, symlinks=True)
        return DocsEnv(folder / self.sample.name)

    def close(self) -> None:
        for con in self.connections.values():
            con.close()


@pytest.fixture(scope="module")
def docs_env(sample: Path):
    env = DocsEnv(sample)
    yield env
    env.close()


@pytest.mark.parametrize(("document", "title"), CASES, ids=[f"{d}::{t}" for d, t in CASES])
def test_section(document: str, title: str, docs_env: DocsEnv, request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The section's blocks run (or load, or parse) as written, their outputs as shown."""
    blocks = sections(document)[title]
    marks = " ".join(block.mark for block in blocks)
    env = docs_env.copy(tmp_path / "sample") if "copy" in marks else docs_env
    home = tmp_path / "home"
    (home / ".cache" / "fedquery").mkdir(parents=True)
    (home / ".cache" / "fedquery" / "sample").symlink_to(env.folder)
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    section = Section(env, request, monkeypatch, document)
    if "needs" in marks:
        section.on_services(marks)
    environ, embedders = dict(os.environ), (dict(REGISTRY._embedders), dict(REGISTRY._defaults))
    try:
        failures = [f"{block.where} ({block.lang}):\n{problem}" for block in blocks
                    if not block.skipped and (problem := section.check(block))]
    finally:  # what the blocks registered or set is put back, for the tests after
        os.environ.clear()
        os.environ.update(environ)
        REGISTRY._embedders, REGISTRY._defaults = embedders
        REGISTRY.generation += 1
        if env is not docs_env:
            env.close()
    assert not failures, "\n\n".join(failures)


class Section:
    """Runs the blocks of one section in order, in one namespace."""

    def __init__(self, env: DocsEnv, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                 document: str) -> None:
        self.env, self.request, self.monkeypatch = env, request, monkeypatch
        self.namespace = {"fedquery": fedquery, "con": env.connection(document)}
        self.endpoint: str | None = None

    def check(self, block: Block) -> str:
        """'' when the block runs as written, else what went wrong."""
        runner = getattr(self, f"_{block.lang}", None)
        if runner is None:
            return f"no check for language {block.lang!r}"
        try:
            return runner(block, self.env.text(block, self.endpoint)) or ""
        except Exception as exc:
            return _described(exc, block)

    def _python(self, block: Block, text: str) -> str:
        excerpt = re.search(r"excerpt (\S+)", block.mark)
        if excerpt:
            return _excerpt_differences(text, ROOT / excerpt[1])
        if re.search(r"^>>> ", text, re.M):
            return run_session(_with_text(block, text), self.namespace)
        exec(compile(text, block.where, "exec"), self.namespace)  # noqa: S102 - the docs' own code
        return ""

    def _sql(self, block: Block, text: str) -> str:
        if "parse" in block.mark:  # the rewritten SQL a rule produces: names like lake.main.frames
            for statement in _sql_statements(text):
                sqlglot.parse_one(statement, read="duckdb")
            return ""
        for statement in _sql_statements(text):
            self.namespace["con"].explain(statement)
        return ""

    def _yaml(self, block: Block, text: str) -> str:
        for name in re.findall(r"\$\{(\w+)\}", text):
            if name not in os.environ:
                self.monkeypatch.setenv(name, f"docs-{name.lower()}")
        catalog = _as_catalog(yaml.safe_load(text), self.env.sample)
        path = Path(f"catalog-{block.line}.yaml")
        path.write_text(yaml.safe_dump(catalog))
        load_catalog(path)
        saved = re.search(r"save (\S+)", block.mark)
        if saved:
            Path(saved[1]).write_text(text)
        return ""

    def _sh(self, block: Block, text: str) -> str:
        problems = []
        for line in text.splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith("fedquery "):
                done = _cli(command)
                if done.returncode:
                    problems.append(f"$ {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}")
            elif command and not command.startswith(SKIPPED_COMMANDS):
                problems.append(f"not a fedquery command: {command}")
        return "\n".join(problems)

    def _console(self, block: Block, text: str) -> str:
        problems = []
        for command, want in _console_commands(text):
            done = _cli(command)
            got = done.stdout + done.stderr
            if not matches(want, got) or (done.returncode != 0) != want.startswith("error:"):
                problems.append(f"$ {command}\nexpected:\n{want}got (exit {done.returncode}):\n{got}")
        return "\n".join(problems)

    def _ipython(self, block: Block, text: str) -> str:
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance(colors="nocolor")
        shell.user_ns.update(self.namespace)
        result = shell.run_cell(text)
        self.namespace.update({k: v for k, v in shell.user_ns.items() if k in self.namespace
                               or not (k.startswith("_") or k in shell.user_ns_hidden)})
        if not result.success:
            error = result.error_in_exec or result.error_before_exec
            return "".join(traceback.format_exception(error, limit=-3))
        return ""

    def _text(self, block: Block, text: str) -> str:
        return ""

    def on_services(self, mark: str) -> None:
        """The sample's warehouse in the test PostgreSQL (FLEET_PG_DSN) and its lake in the S3
        bucket fleet-lake under lake/, for a section that shows them."""
        if "postgres" in mark:
            db = self.request.getfixturevalue("postgres_database")  # one for this module
            if db.name not in LOADED:
                _load_warehouse(db, self.env.folder / "warehouse.duckdb")
                LOADED.add(db.name)
            self.monkeypatch.setenv("FLEET_PG_DSN", db.dsn)
        if "s3" in mark:
            from tests.services.s3 import upload_tree

            self.endpoint = self.request.getfixturevalue("s3_endpoint")
            self.request.getfixturevalue("s3_credentials")
            upload_tree(self.env.folder / "lake", "fleet-lake", "lake", endpoint=self.endpoint)


def _described(exc: BaseException, block: Block) -> str:
    """The exception, with the block's own lines that raised it (not the test's or fedquery's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == block.where]
    where = "".join(f"  line {block.line + f.lineno} of the document\n" for f in frames)
    return where + "".join(traceback.format_exception_only(exc))


def _excerpt_differences(text: str, path: Path) -> str:
    """The code lines of an excerpt (a class's fields and method signatures, comments and
    defaults left out) that ``path`` does not hold."""
    def code(line: str) -> str:
        line = line.split("  #")[0].split(" # ")[0].strip().removesuffix(" ...")
        return line.split(" = ")[0] if not line.startswith(("def ", "class ", "@")) else line
    held = {code(line) for line in path.read_text().splitlines()}
    missing = [line for line in map(code, text.splitlines()) if line and not line.startswith("#")
               and line not in held]
    return "".join(f"not in {path.relative_to(ROOT)}: {line}\n" for line in missing)


def _with_text(block: Block, text: str) -> Block:
    return Block(block.document, block.line, block.section, block.lang, text, block.mark)


def _sql_statements(text: str) -> list[str]:
    """The statements of a block: split at semicolons and at comment lines (-- before ...)."""
    code = "\n".join(";" if line.lstrip().startswith("--") else line for line in text.splitlines())
    return [s for s in (part.strip() for part in code.split(";")) if s]


def _as_catalog(data: dict, sample: Path) -> dict:
    """A whole catalog as is; a fragment (a source entry, or catalog sections) placed into
    the sample catalog, whose paths are made absolute."""
    if "sources" in data:
        return data
    catalog = yaml.safe_load(sample.read_text())
    for source in catalog["sources"].values():
        for key in ("path", "root", "uri"):
            if key in source:
                source[key] = str(sample.parent / source[key])
    if not set(data) <= set(CATALOG_SECTIONS):
        data = {"sources": data}
    for key, value in data.items():
        catalog[key] = {**catalog.get(key, {}), **value}
    return catalog


def _cli(command: str) -> subprocess.CompletedProcess:
    args = shlex.split(command.replace("\\$", "$"))
    assert args[0] == "fedquery", command
    return subprocess.run([sys.executable, "-m", "fedquery.cli", *args[1:]], capture_output=True,
                          text=True, timeout=120, cwd=os.getcwd(),
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _console_commands(text: str) -> list[tuple[str, str]]:
    """``$ command`` lines, each with the output shown under it."""
    commands: list[tuple[str, str]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("$ "):
            commands.append((line[2:].strip(), ""))
        elif commands:
            commands[-1] = (commands[-1][0], commands[-1][1] + line)
    return commands


def _load_warehouse(db, path: Path) -> None:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as warehouse:
        for (name,) in warehouse.sql("SELECT table_name FROM duckdb_tables()").fetchall():
            db.load(f"public.{name}", warehouse.sql(f'SELECT * FROM "{name}"').to_arrow_table())
    db.execute("ANALYZE")


# ---------------------------------------------------------------------- the blocks themselves


def test_every_block_says_how_it_is_checked() -> None:
    unknown = [f"{b.where}: {b.lang or '(no language)'}" for doc in DOCUMENTS
               for b in read_blocks(doc) if b.lang not in LANGUAGES]
    assert not unknown, f"fence languages must be one of {LANGUAGES}:\n" + "\n".join(unknown)


def test_skipped_blocks_are_few_and_say_why() -> None:
    skipped = [b for doc in DOCUMENTS for b in read_blocks(doc) if b.skipped]
    listing = "\n".join(f"{b.where}: {b.mark}" for b in skipped)
    print(f"{len(skipped)} blocks skipped:\n{listing}")
    assert all(re.fullmatch(r"skip \(.+\)", b.mark) for b in skipped), listing
    assert len(skipped) <= MAX_SKIPPED, listing


def test_cli_synopses_name_the_parser_s_commands_and_flags() -> None:
    """A synopsis's flags exist; a full one (it lists ``fedquery sql``) lists every command and
    flag."""
    from fedquery.cli import _parser

    options = _subcommand_options(_parser())
    synopses = [b for doc in DOCUMENTS for b in read_blocks(doc)
                if b.lang == "text" and b.text.startswith("fedquery ")]
    assert synopses
    for block in synopses:
        shown = _synopsis(block.text)
        for command, flags in shown.items():
            assert command in options, f"{block.where}: no command {command!r}"
            assert flags <= options[command], f"{block.where}: {command}: {flags - options[command]}"
        if "sql" in shown:
            missing = {c: options[c] - shown.get(c, set()) for c in options}
            assert not any(missing.values()), f"{block.where}: not shown: {missing}"


def _subcommand_options(parser) -> dict[str, set[str]]:
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    options = {name: {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
               - {"--help"} for name, sub in commands.choices.items()}
    options["--version"] = set()
    return options


def _synopsis(text: str) -> dict[str, set[str]]:
    shown: dict[str, set[str]] = {}
    command = ""
    for line in text.splitlines():
        if line.startswith("fedquery "):
            command = line.split()[1]
            shown.setdefault(command, set())
        shown[command] |= set(re.findall(r"(--[a-z][a-z-]*)", line)) - {command}
    return shown
