"""Exact and near-duplicate sets among many files, from their hashes.

`duplicate_sets` groups equal content hashes; `near_duplicate_sets` groups 64-bit perceptual
hashes within a Hamming distance, linking chains (a~b, b~c: one set) as a union-find does. Both
give one set id per file (the position of the set's first file), None for a file in no set:

    duplicate_sets(["ab", "cd", "ab", None])        # [0, None, 0, None]
    near_duplicate_sets([h1, h2, h3], 6)             # [0, 0, None] when only h1 ~ h2

Near duplicates are found without comparing every pair: the 64 bits are cut into
`max_distance + 1` bands, and two hashes within `max_distance` bits agree on at least one whole
band (pigeonhole), so only hashes sharing a band value are compared. With 50,000 unrelated
hashes and a distance of 8 (nine bands of about 7 bits) a band value is shared by ~400 hashes,
about 2% of all pairs instead of all of them.
"""

from __future__ import annotations

from collections import defaultdict

MASK = (1 << 64) - 1
MAX_DISTANCE = 32  # more than that is not "near": a band would be under two bits


def hamming(a: int, b: int) -> int:
    """Bits in which two 64-bit hashes differ (signed BIGINTs taken as their 64 bits)."""
    return ((a ^ b) & MASK).bit_count()


def duplicate_sets(hashes: list[str | None]) -> list[int | None]:
    """A set id per file whose hash another file shares (the first such file's position)."""
    first: dict[str, int] = {}
    count: dict[str, int] = defaultdict(int)
    for i, h in enumerate(hashes):
        if h is not None:
            first.setdefault(h, i)
            count[h] += 1
    return [first[h] if h is not None and count[h] > 1 else None for h in hashes]


def near_duplicate_sets(hashes: list[int | None], max_distance: int) -> list[int | None]:
    """A set id per file within `max_distance` bits of another file's hash, chains joined (the
    set's first file's position); None for files near no other. Raises ValueError for a
    distance outside 0..MAX_DISTANCE."""
    if isinstance(max_distance, bool) or not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be 0 to {MAX_DISTANCE} bits, got {max_distance!r}")
    parent = list(range(len(hashes)))
    for i, j in _near_pairs(hashes, max_distance):
        _union(parent, i, j)
    roots = [_root(parent, i) for i in range(len(hashes))]
    size: dict[int, int] = defaultdict(int)
    for i, h in enumerate(hashes):
        if h is not None:
            size[roots[i]] += 1
    return [roots[i] if h is not None and size[roots[i]] > 1 else None
            for i, h in enumerate(hashes)]


def _near_pairs(hashes: list[int | None], max_distance: int):
    """Every pair (i, j), i < j, within `max_distance` bits, each found through some band."""
    values = [(i, h & MASK) for i, h in enumerate(hashes) if h is not None]
    seen: set[tuple[int, int]] = set()
    for shift, width in _bands(max_distance + 1):
        buckets: dict[int, list[tuple[int, int]]] = defaultdict(list)
        band = (1 << width) - 1
        for i, h in values:
            buckets[(h >> shift) & band].append((i, h))
        for bucket in buckets.values():
            for a, (i, hi) in enumerate(bucket):
                for j, hj in bucket[a + 1:]:
                    if (i, j) not in seen and ((hi ^ hj).bit_count() <= max_distance):
                        seen.add((i, j))
                        yield i, j


def _bands(n: int) -> list[tuple[int, int]]:
    """(shift, width) of `n` bands covering 64 bits, widths differing by at most one."""
    widths = [64 // n + (1 if k < 64 % n else 0) for k in range(n)]
    shifts = [sum(widths[:k]) for k in range(n)]
    return list(zip(shifts, widths, strict=True))


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


def _union(parent: list[int], i: int, j: int) -> None:
    """Join two sets; the smaller position becomes the root, so a set's id is its first file."""
    a, b = _root(parent, i), _root(parent, j)
    if a != b:
        parent[max(a, b)] = min(a, b)
