"""Seeded fuzzing of every format the blob functions read (``tests/blob_fuzz.py``).

For LAS, LAZ, KITTI, NPY, ASCII and binary PCD, PNG, JPEG, GIF, WebP, TIFF and BMP, a small
valid file and 300 seeded mutants of it (truncated, bytes changed, huge or negative numbers
over header fields and counts) go through ``image_info``, ``thumbnail``, ``embed_image``,
``pointcloud_info``, ``read_pointcloud`` and ``con.profile``: every query answers, with an error
in the rows of the files that are bad and values that agree with each other; with
``strict=True`` a bad file raises only a ``SourceError`` naming it. The run happens in a child
process under the source's size caps, so its peak memory is its own: it must stay under
``MEMORY``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKTREE = Path(__file__).parent.parent
MUTANTS, SEED = 300, 139  # this seed draws, among others, a LAZ file that makes lazrs panic
MEMORY = 1 << 30  # peak resident memory of the whole run (measured: about 0.3 GiB)
FORMATS = 12


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("laspy")
    folder = tmp_path_factory.mktemp("fuzz")
    done = subprocess.run([sys.executable, "-m", "tests.blob_fuzz", str(folder),
                           "--count", str(MUTANTS), "--seed", str(SEED)],
                          cwd=WORKTREE, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_mutant_is_a_row_value_or_a_row_error(report: dict) -> None:
    assert report["problems"] == []


def test_the_mutants_reach_both_outcomes(report: dict) -> None:
    """Not vacuous: many files are read, many are refused, in both families, and strict runs
    raised SourceErrors."""
    seen, files = report["seen"], FORMATS * (MUTANTS + 1)
    assert seen["images ok"] + seen["images with an error"] == files // 2
    assert seen["clouds ok"] + seen["clouds with an error"] == files // 2
    for key in ("images ok", "images with an error", "clouds ok", "clouds with an error"):
        assert seen[key] > files // 10, seen
    assert seen["profile corrupt"] > files // 5 and seen["strict errors"] > 50, seen


def test_the_run_stays_within_its_memory(report: dict) -> None:
    assert report["peak_rss_bytes"] < MEMORY, report["peak_rss_bytes"]
