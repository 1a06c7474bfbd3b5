"""What ``pip install fedquery`` installs: one top-level package, complete on its own.

The wheel is built from this checkout (hatchling, no network), its names are read from the
archive, and it is imported from the archive alone (a pure-Python wheel is a zip Python can
import), in a process whose path holds neither the checkout nor the installed editable copy.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out), str(REPO)], check=True, timeout=300)
    (found,) = out.glob("fedquery-*.whl")
    return found


def test_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"fedquery"}
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["fedquery"]


def test_the_wheel_carries_connectors_sample_data_and_the_conformance_suite(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("fedquery/connectors/base.py", "fedquery/connectors/conformance.py",
                   "fedquery/connectors/postgres.py", "fedquery/sample_data/catalog.yaml",
                   "fedquery/sample_data/generate.py", "fedquery/functions/__init__.py"):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)


def test_imports_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    """Every module of the package imports from the archive: no import reaches a top-level
    ``connectors`` or ``sample_data`` (names of other projects on the package index)."""
    script = (
        "import importlib, pkgutil, sys\n"
        "import fedquery\n"
        "assert fedquery.__file__.startswith(sys.argv[1]), fedquery.__file__\n"
        "skip = ('fedquery.connectors.conformance', 'fedquery.magic')\n"
        "for info in pkgutil.walk_packages(fedquery.__path__, 'fedquery.'):\n"
        "    if info.name.startswith(skip):\n"
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(info.name)\n"
        "    except ImportError as exc:\n"
        "        if exc.name and exc.name.split('.')[0] in ('connectors', 'sample_data'):\n"
        "            raise\n"
        "for name in ('connectors', 'sample_data'):\n"
        "    assert name not in sys.modules, name\n"
        "print('ok')\n")
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {"PYTHONPATH": ":".join([str(wheel), *site]), "PATH": "/usr/bin:/bin",
           "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", script, str(wheel)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
