"""cleanvision's `Imagelab(filepaths=...).find_issues()` on the bench files, in its own venv.

cleanvision pins pandas, numpy and Pillow versions of its own, so it runs in a virtual
environment beside the data (`~/.cache/fedquery/cleanvision-venv`, `FEDQUERY_CLEANVISION_VENV`
moves it; made once with pip from the package index), as a subprocess: only `find_issues()` is
timed there, with `n_jobs` = the number of cores. It writes a JSON object: seconds,
cpu_seconds (its own and its pool's), rss_peak_mb (its own) and rss_child_peak_mb (the largest
pool worker's), the files flagged for each issue type, and the exact and near-duplicate sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

PACKAGE = "cleanvision==0.3.7"
ISSUES = ("dark", "light", "blurry", "odd_aspect_ratio", "low_information", "grayscale", "odd_size")

# Run by the venv's Python: argv = folder of the files, file listing (JSON), output, n_jobs.
SCRIPT = """
import json, os, resource, sys, time
from cleanvision import Imagelab
root, listing, out, n_jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
uris = json.load(open(listing))
paths = [os.path.join(root, u) for u in uris]
uri_of = dict(zip(paths, uris))
lab = Imagelab(filepaths=paths)
cpu = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
start = time.perf_counter()
lab.find_issues(n_jobs=n_jobs, verbose=False)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
used = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, cpu))
flags = {}
for issue in ISSUES:
    column = "is_" + issue + "_issue"
    if column in lab.issues.columns:
        flags[issue] = [uri_of[p] for p in lab.issues.index[lab.issues[column]]]
sets = {kind: [[uri_of[p] for p in s] for s in lab.info.get(kind, {}).get("sets", [])]
        for kind in ("exact_duplicates", "near_duplicates")}
json.dump({"seconds": seconds, "cpu_seconds": used, "files": len(uris),
           "ok": len(lab.issues), "rss_peak_mb": after[0].ru_maxrss / 1024,
           "rss_child_peak_mb": after[1].ru_maxrss / 1024, "flags": flags, "sets": sets},
          open(out, "w"))
"""


def venv_python() -> Path:
    """The Python of the cleanvision environment, made on first use."""
    home = Path(os.environ.get("FEDQUERY_CLEANVISION_VENV")
                or Path.home() / ".cache" / "fedquery" / "cleanvision-venv")
    python = home / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import cleanvision"],
                                          capture_output=True).returncode == 0:
        return python
    venv.create(home, with_pip=True, clear=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", PACKAGE],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"cannot install {PACKAGE} into {home}: {done.stderr[-500:]}")
    return python


def run(root: Path, uris: list[str], out: Path, n_jobs: int) -> dict:
    """find_issues() over `root/uri` for each uri; its JSON result (see the module doc)."""
    listing = out.with_suffix(".files.json")
    listing.write_text(json.dumps(uris))
    script = f"ISSUES = {ISSUES!r}\n{SCRIPT}"
    done = subprocess.run([str(venv_python()), "-c", script, str(root), str(listing), str(out),
                           str(n_jobs)], capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"cleanvision failed: {done.stderr[-2000:]}")
    return json.loads(out.read_text())
