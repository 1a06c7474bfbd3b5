"""Peak memory of ``con.profile`` at 1x and 10x the files: it should stay flat.

    python bench/profile_memory.py                 # 2,000 and 20,000 small JPEGs
    python bench/profile_memory.py --files 500 5000 --dir /tmp/pm

Each count gets a folder of small generated JPEGs (a files source) and is profiled in a fresh
child process, which reports its resident memory after connecting (the baseline), its peak
(``ru_maxrss``) and the files per second.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedquery


def make_images(folder: Path, n: int) -> None:
    """``n`` distinct 96x64 JPEGs (noise over a gradient), made once."""
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    ramp = np.linspace(0, 200, 96)[None, :, None]
    for i in range(n):
        pixels = np.clip(ramp + rng.integers(0, 56, (64, 96, 3)), 0, 255).astype(np.uint8)
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(sub / f"{i:06d}.jpg", quality=80)
    (folder / "done").write_text(str(n))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(folder: Path) -> None:
    import fedquery

    with fedquery.connect({"sources": {"pics": {"kind": "files", "root": str(folder)}}}) as con:
        baseline = _rss_kib()
        started = time.perf_counter()
        profile = con.profile("pics")
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"files": profile.summary["total"], "ok": profile.summary["ok"],
                      "baseline_mib": baseline / 1024, "peak_mib": peak / 1024,
                      "seconds": seconds, "files_per_s": profile.summary["total"] / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--dir", default="/tmp/fedquery-profile-memory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child))
        return
    results = []
    for n in args.files:
        folder = Path(args.dir) / str(n)
        make_images(folder, n)
        out = subprocess.run([sys.executable, __file__, "--child", str(folder)], check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{r['files']:>7,} files: baseline {r['baseline_mib']:.0f} MiB, peak "
              f"{r['peak_mib']:.0f} MiB (+{r['peak_mib'] - r['baseline_mib']:.0f}), "
              f"{r['files_per_s']:,.0f} files/s")
    if len(results) > 1:
        print(f"peak at {results[-1]['files']:,} / at {results[0]['files']:,}: "
              f"{results[-1]['peak_mib'] / results[0]['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
