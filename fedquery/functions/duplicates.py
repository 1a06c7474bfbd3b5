"""Exact and near-duplicate sets among many files, from their hashes.

`duplicate_sets` groups equal content hashes; `near_duplicate_sets` groups 64-bit perceptual
hashes within a Hamming distance, linking chains (a~b, b~c: one set) as a union-find does. Both
give one set id per file (the position of the set's first file), None for a file in no set:

    duplicate_sets(["ab", "cd", "ab", None])        # [0, None, 0, None]
    near_duplicate_sets([h1, h2, h3], 6)             # [0, 0, None] when only h1 ~ h2

Near duplicates are found without comparing every pair: the 64 bits are cut into
`max_distance + 1` bands, and two hashes within `max_distance` bits agree on at least one whole
band (pigeonhole), so only hashes sharing a band value are compared, in numpy. Equal hashes
are joined first and compared once. With 50,000 unrelated hashes and a distance of 8 (nine
bands of about 7 bits) a band value is shared by ~400 hashes: 7% of all pairs are compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

MASK = (1 << 64) - 1
MAX_DISTANCE = 32  # more than that is not "near": a band would be under two bits
PAIRS_AT_ONCE = 1 << 20  # hash pairs compared in one numpy step (8 MiB of XORs)


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
    present = [i for i, h in enumerate(hashes) if h is not None]
    values = np.array([hashes[i] & MASK for i in present], dtype=np.uint64)
    unique, first, which = np.unique(values, return_index=True, return_inverse=True)
    for k, u in enumerate(which.tolist()):  # equal hashes: one set, compared once below
        _union(parent, present[first[u]], present[k])
    for a, b in _near_pairs(unique, max_distance):
        _union(parent, present[first[a]], present[first[b]])
    roots = [_root(parent, i) for i in range(len(hashes))]
    size: dict[int, int] = defaultdict(int)
    for i in present:
        size[roots[i]] += 1
    return [roots[i] if h is not None and size[roots[i]] > 1 else None
            for i, h in enumerate(hashes)]


def _near_pairs(unique: np.ndarray, max_distance: int) -> Iterator[tuple[int, int]]:
    """Pairs of positions in `unique` (distinct uint64 hashes) within `max_distance` bits:
    every such pair shares a band, and is compared there (a pair may come more than once)."""
    for shift, width in _bands(max_distance + 1):
        keys = (unique >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        _, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
        for start, count in zip(starts[counts > 1].tolist(), counts[counts > 1].tolist(), strict=True):
            yield from _close(order[start:start + count], unique, max_distance)


def _close(members: np.ndarray, unique: np.ndarray, max_distance: int) -> Iterator[tuple[int, int]]:
    """Pairs (i < j) of `members` within `max_distance` bits, compared a block of rows at a time
    so a large bucket never needs its whole distance matrix."""
    values = unique[members]
    rows = max(1, PAIRS_AT_ONCE // len(members))
    for top in range(0, len(members), rows):
        near = np.bitwise_count(values[top:top + rows, None] ^ values[None, :]) <= max_distance
        for a, b in zip(*np.nonzero(near), strict=True):
            if top + a < b:
                yield int(members[top + a]), int(members[b])


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
