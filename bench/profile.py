"""Profiling photos joined to a warehouse: fedquery against Pillow loops and cleanvision.

    PYTHONPATH=. python bench/profile.py [--files 3000] [--data DIR] [--repeat 3]
        [--memory-scale 10] [--no-cleanvision] [--memory-only]

Data (`bench/profile_data.py`, made once under DIR, default ~/.cache/fedquery/profile-bench):
N distinct photos of 1280x720..1920x1080 (JPEG and PNG) with planted exact and near
duplicates, dark and blurred copies and corrupt files, a warehouse linking each file to a shoot
and its weather, and a catalog. The systems, each run in a fresh process (`profile_cases.py`):

- fedquery content: `con.profile(SELECT p.uri, s.weather FROM photos p JOIN shoots s ...,
  by='weather')` (said and skipped when this fedquery's profile cannot take a SELECT);
- fedquery layer: the content layer the profile is built on, driven directly: the same SELECT
  run by fedquery, `image_stats_from` over confined blob reads in a pool of one thread per
  core, then exact and near-duplicate sets;
- fedquery header: `image_info(p.uri)` in the same SELECT;
- Pillow full decode (one thread): the statistics at full resolution with numpy, md5, phash;
- Pillow header (one thread): `Image.open` and `size`;
- cleanvision: `Imagelab(filepaths=...).find_issues(n_jobs=cores)` in its own venv
  (`profile_cleanvision.py`), given only the files that are not corrupt: it stops at the first
  one it cannot load.

The runs alternate between the systems, `--repeat` rounds; the best time of each is kept.
Peak memory is each fresh process's RSS high-water mark: on these files (1x) and on a second
set of `--memory-scale` times as many *smaller* photos (480x270..640x360, to keep making it
within minutes), profiled whole (10x) and by its first N files (1x), so the two differ only in
the number of files. Results go to DIR/results-<N>.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).parent))
import profile_agreement  # noqa: E402
import profile_cleanvision  # noqa: E402
import profile_data  # noqa: E402

HERE = Path(__file__).parent
CASES = ("fedquery_content", "pillow_full", "fedquery_layer", "cleanvision", "fedquery_header",
         "pillow_header")
MEMORY_CASES = ("fedquery_content", "fedquery_layer", "fedquery_header")
CONTENT = ("fedquery_content", "fedquery_layer")


def run_case(case: str, data: Path, limit: int | None, work: Path) -> dict:
    """One run of `case` in a fresh process; its JSON result."""
    out = work / f"{case}-{data.name}-{limit}.json"
    if case == "cleanvision":
        rows = json.loads((data / "manifest.json").read_text())["files"]
        uris = [r["uri"] for r in rows if r["kind"] not in ("truncated", "random")
                and (limit is None or r["file_id"] < limit)]
        return profile_cleanvision.run(data / "files", uris, out, os.cpu_count() or 1)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    command = [sys.executable, str(HERE / "profile_cases.py"), case, str(data), str(out)]
    command += ["--limit", str(limit)] if limit is not None else []
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed: {done.stderr[-2000:]}")
    return json.loads(out.read_text())


def timed(cases: list[str], data: Path, repeat: int, work: Path) -> dict[str, dict]:
    """Best of `repeat` runs of each case, the order rotated each round; peak RSS the highest.
    A case this fedquery cannot run (`unavailable`) is said once and dropped."""
    best: dict[str, dict] = {}
    for round_ in range(repeat):
        for case in cases[round_ % len(cases):] + cases[:round_ % len(cases)]:
            if case in UNAVAILABLE:
                continue
            result = run_case(case, data, None, work)
            if "unavailable" in result:
                UNAVAILABLE[case] = result["unavailable"]
                print(f"  {case}: not run, {result['unavailable']}", flush=True)
                continue
            print(f"  round {round_ + 1} {case}: {result['files'] / result['seconds']:.1f} files/s",
                  flush=True)
            kept = best.get(case)
            if kept is None or result["seconds"] < kept["seconds"]:
                result["rss_peak_mb"] = max(result["rss_peak_mb"], (kept or result)["rss_peak_mb"])
                best[case] = result
            else:
                kept["rss_peak_mb"] = max(result["rss_peak_mb"], kept["rss_peak_mb"])
    return best


UNAVAILABLE: dict[str, str] = {}


def memory(data: Path, n: int, scale: int, work: Path) -> dict[str, dict]:
    """Peak RSS of each memory case on the first `n` files of `data` and on all `n * scale`."""
    found = {}
    for case in MEMORY_CASES:
        one = run_case(case, data, n, work)
        if "unavailable" not in one:
            found[case] = {"1x": one, f"{scale}x": run_case(case, data, None, work)}
    return found


def truth_groups(data: Path) -> dict[str, int]:
    """Files per weather, read from the warehouse by DuckDB directly (not through fedquery)."""
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    rows = con.execute("SELECT s.weather, count(*) FROM photos p JOIN shoots s "
                       "USING (shoot_id) GROUP BY ALL").fetchall()
    con.close()
    return dict(rows)


# --- printing -------------------------------------------------------------------------------


def print_speed(best: dict[str, dict]) -> None:
    print("\nSpeed (best run; cleanvision is given only the non-corrupt files)")
    print(f"  {'system':<18}{'files':>7}{'best s':>9}{'files/s':>9}{'CPU s':>8}"
          f"{'files/CPU-s':>12}{'peak RSS MB':>13}")
    for case, r in best.items():
        rss = r["rss_peak_mb"] + (r.get("rss_child_peak_mb", 0) * (os.cpu_count() or 1))
        note = " (+workers)" if "rss_child_peak_mb" in r else ""
        print(f"  {case:<18}{r['files']:>7}{r['seconds']:>9.1f}{r['files'] / r['seconds']:>9.1f}"
              f"{r['cpu_seconds']:>8.1f}{r['files'] / r['cpu_seconds']:>12.1f}{rss:>13.0f}{note}")
    if "phases" in best.get("fedquery_content", {}):
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in best["fedquery_content"]["phases"].items())
        print(f"  fedquery_content's passes over the files (best run): {phases}")
    rate = {case: r["files"] / r["seconds"] for case, r in best.items()}
    for a, b, target in (("fedquery_content", "pillow_full", 3.0),
                         ("fedquery_content", "cleanvision", 2.0),
                         ("fedquery_layer", "pillow_full", 3.0),
                         ("fedquery_layer", "cleanvision", 2.0),
                         ("fedquery_header", "pillow_header", None)):
        if a in rate and b in rate:
            ratio = rate[a] / rate[b]
            met = "met" if target is not None and ratio >= target else "MISSED"
            verdict = "" if target is None else f" (target >= {target:g}x: {met})"
            cpu = (best[a]["files"] / best[a]["cpu_seconds"]) / (best[b]["files"] / best[b]["cpu_seconds"])
            print(f"  {a} / {b}: {ratio:.2f}x files/s, {cpu:.2f}x files per CPU-second{verdict}")


def print_agreement(agreement: dict) -> None:
    print("\nDuplicates: pairs of files in the same set (F1 = 2|A∩B|/(|A|+|B|), "
          "Jaccard = |A∩B|/|A∪B|; near includes exact)")
    for sides, kinds in agreement["duplicates"].items():
        for kind, c in kinds.items():
            print(f"  {sides:<36} {kind:<6} pairs {c['a']:>5} / {c['b']:>5}, both {c['both']:>5}: "
                  f"F1 {c['f1']:.3f}, Jaccard {c['jaccard']:.3f}")
    print("\nFlags against the planted copies (manifest truth)")
    for flag, systems in agreement["flags"].items():
        for system, c in systems.items():
            print(f"  {flag:<7}{system:<18} flagged {c['flagged']:>4}, planted {c['true']:>4}, "
                  f"hit {c['hit']:>4}: precision {c['precision']:.3f}, recall {c['recall']:.3f}"
                  + (f"; false positives by kind {c['false']}" if c["false"] else ""))


def print_memory(mem: dict, n: int) -> None:
    print(f"\nPeak RSS of a fresh process, small photos (480x270..640x360): first {n} files vs all")
    for case, runs in mem.items():
        (k1, one), (k10, ten) = runs.items()
        print(f"  {case:<18} {k1} {one['rss_peak_mb']:.0f} MB ({one['files']} files, "
              f"{one['files'] / one['seconds']:.0f} files/s), {k10} {ten['rss_peak_mb']:.0f} MB "
              f"({ten['files']} files, {ten['files'] / ten['seconds']:.0f} files/s): "
              f"{ten['rss_peak_mb'] / one['rss_peak_mb']:.2f}x (target <= 1.5x: "
              f"{'met' if ten['rss_peak_mb'] <= 1.5 * one['rss_peak_mb'] else 'MISSED'})")


def speed(args: argparse.Namespace, data: Path, manifest: dict, work: Path) -> tuple[dict, dict]:
    """The timed runs, the group counts, the agreement: printed; (best runs, agreement)."""
    cases = [c for c in CASES if not (args.no_cleanvision and c == "cleanvision")]
    best = timed(cases, data, args.repeat, work)
    truth = truth_groups(data)
    for case in (*CONTENT, "fedquery_header"):
        if case in best:
            groups = best[case]["groups"]
            print(f"files per weather, {case}: {dict(sorted(groups.items()))} "
                  f"({'equal to' if groups == truth else 'DIFFERENT from'} DuckDB on the warehouse)")
    print_speed(best)
    content = {case: best[case] for case in CONTENT if case in best}
    agreement = profile_agreement.report(manifest, content, best.get("cleanvision"))
    print_agreement(agreement)
    return best, agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache" / "fedquery" / "profile-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-scale", type=int, default=10, help="0: no memory series")
    parser.add_argument("--no-cleanvision", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the memory series")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()}")
    started = time.perf_counter()
    data = args.data / f"files-{args.files}"
    manifest = profile_data.build(data, args.files)
    small = args.data / f"small-{args.files * args.memory_scale}"
    if args.memory_scale:
        profile_data.build(small, args.files * args.memory_scale, small=True)
    print(f"data ready in {time.perf_counter() - started:.0f} s: {data}")
    work = args.data / "runs"
    work.mkdir(parents=True, exist_ok=True)
    best, agreement = ({}, {}) if args.memory_only else speed(args, data, manifest, work)
    mem = memory(small, args.files, args.memory_scale, work) if args.memory_scale else {}
    if mem:
        print_memory(mem, args.files)
    print(f"\nload average after {os.getloadavg()}, {time.perf_counter() - started:.0f} s in all")
    results = {"best": {c: {k: v for k, v in r.items() if k not in ("per_file", "flags", "sets")}
                        for c, r in best.items()},
               "agreement": agreement, "memory": {c: {k: {x: y for x, y in r.items() if x != "per_file"}
                                                      for k, r in runs.items()} for c, runs in mem.items()}}
    (args.data / f"results-{args.files}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
