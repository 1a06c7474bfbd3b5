"""How far two answers to "which files are duplicates, dark, blurry" agree (for bench/profile.py).

Duplicates are compared as *pairs*: every unordered pair of files in the same set. For two
systems with pair sets A and B: agreement F1 = 2|A∩B| / (|A| + |B|) (Dice), Jaccard =
|A∩B| / |A∪B|. Near-duplicate pairs include the exact-duplicate pairs on both sides (an exact
copy is also a near one; cleanvision lists them apart, fedquery by phash distance sees them as
near too). Flags are compared with the manifest's truth (the planted dark and blurred copies)
as precision and recall.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations


def pairs(sets: list[list[str]], keep: set[str]) -> set[frozenset[str]]:
    """The unordered pairs of files of `keep` that share a set."""
    found = set()
    for members in sets:
        inside = sorted(set(members) & keep)
        found.update(frozenset(p) for p in combinations(inside, 2))
    return found


def sets_of(labels: dict[str, str | None]) -> list[list[str]]:
    """Files grouped by their set label (None: in no set)."""
    grouped = defaultdict(list)
    for uri, label in labels.items():
        if label is not None:
            grouped[label].append(uri)
    return list(grouped.values())


def compare(a: set, b: set) -> dict:
    both = len(a & b)
    union = len(a | b)
    return {"a": len(a), "b": len(b), "both": both,
            "f1": 2 * both / (len(a) + len(b)) if a or b else 1.0,
            "jaccard": both / union if union else 1.0}


def precision_recall(flagged: set[str], truth: set[str], kinds: dict[str, str]) -> dict:
    hit = len(flagged & truth)
    wrong = defaultdict(int)
    for uri in flagged - truth:
        wrong[kinds[uri]] += 1
    return {"flagged": len(flagged), "true": len(truth), "hit": hit, "false": dict(wrong),
            "precision": hit / len(flagged) if flagged else 1.0,
            "recall": hit / len(truth) if truth else 1.0}


def truth_sets(manifest: dict) -> tuple[list[list[str]], list[list[str]]]:
    """(exact sets, near sets) as planted: a base with its byte copies; with every readable copy."""
    exact, near = defaultdict(list), defaultdict(list)
    for row in manifest["files"]:
        base = row["of"] or row["uri"]
        if row["kind"] in ("base", "exact"):
            exact[base].append(row["uri"])
        if row["kind"] not in ("truncated", "random"):
            near[base].append(row["uri"])
    return list(exact.values()), list(near.values())


def fedquery_sets(per_file: dict) -> tuple[list[list[str]], list[list[str]]]:
    """(exact sets, near sets) from fedquery's per-file [status, dark, blurry, exact, near]."""
    return (sets_of({u: v[3] for u, v in per_file.items()}),
            sets_of({u: v[4] for u, v in per_file.items()}))


def _pairs(exact: list[list[str]], near: list[list[str]], keep: set[str]) -> tuple[set, set]:
    """(exact pairs, near pairs with the exact ones)."""
    same = pairs(exact, keep)
    return same, pairs(near, keep) | same


def report(manifest: dict, fedquery: dict[str, dict], cleanvision: dict | None) -> dict:
    """Every comparison of the bench: duplicates (pairs) and flags, over the files that are
    not corrupt (cleanvision is only given those: it stops at the first corrupt file).
    `fedquery`: name -> a run's result with `per_file`."""
    keep = {r["uri"] for r in manifest["files"] if r["kind"] not in ("truncated", "random")}
    sides = {"truth": _pairs(*truth_sets(manifest), keep)}
    for name, run in fedquery.items():
        sides[name] = _pairs(*fedquery_sets(run["per_file"]), keep)
    if cleanvision is not None:
        sides["cleanvision"] = _pairs(cleanvision["sets"]["exact_duplicates"],
                                      cleanvision["sets"]["near_duplicates"], keep)
    out = {"duplicates": {}, "flags": {}}
    names = list(sides)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out["duplicates"][f"{a} vs {b}"] = {"exact": compare(sides[a][0], sides[b][0]),
                                                "near": compare(sides[a][1], sides[b][1])}
    kinds = {r["uri"]: r["kind"] for r in manifest["files"]}
    for flag, column in (("dark", 1), ("blurry", 2)):
        truth = {r["uri"] for r in manifest["files"] if r["kind"] == flag}
        out["flags"][flag] = {name: precision_recall(
            {u for u, v in run["per_file"].items() if v[column] and u in keep}, truth, kinds)
            for name, run in fedquery.items()}
        if cleanvision is not None:
            out["flags"][flag]["cleanvision"] = precision_recall(
                set(cleanvision["flags"].get(flag, [])) & keep, truth, kinds)
    return out
