"""The dynamic-filter decision: which side's keys filter which, from estimates and filters."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from fedquery.connectors.base import Capabilities
from fedquery.fetch import key_predicate
from fedquery.plan import DynamicFilter, Fragment
from fedquery.rules import dynamic_filters
from fedquery.rules.dynamic_filters import DYNAMIC_FILTER, IN_LIST_MAX, MATERIALIZE

ROWS = {"pg.public.drives": 50, "lake.main.frames": 2_000_000, "wh.main.vehicles": 8}


class Catalog:
    """Estimates and capabilities as a source would report them."""

    def __init__(self, remote: set[str]) -> None:
        self.remote = remote

    def capabilities(self, source: str) -> Capabilities:
        sql = source in ("pg", "wh")
        return Capabilities(dialect="duckdb" if sql else None, native=source != "pg",
                            subtrees=sql, remote=source in self.remote)

    def columns(self, table: exp.Table) -> list[str]:
        raise AssertionError("not needed")

    def estimate_rows(self, table: exp.Table) -> int | None:
        return ROWS.get(".".join(p.name for p in table.parts))

    def estimate_query(self, source: str, sql: str) -> int | None:
        return None  # no source planner here: the rule's own estimates decide


def bound(sql: str) -> exp.Expr:
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    for table in tree.find_all(exp.Table):
        if table.catalog:
            table.meta["source"] = table.catalog
    return tree


def sides(tree: exp.Expr) -> dict[str, exp.Subquery]:
    return {s.alias: s for s in tree.find_all(exp.Subquery)}


JOIN = """SELECT d.drive_id AS drive_id, f.ts AS ts
FROM (SELECT d.drive_id FROM pg.public.drives AS d WHERE d.city = 'Austin') AS d
{join} (SELECT f.drive_id, f.ts FROM lake.main.frames AS f) AS f ON f.drive_id = d.drive_id"""


def test_selective_remote_side_filters_the_big_side() -> None:
    tree = dynamic_filters(bound(JOIN.format(join="JOIN")), catalog=Catalog({"pg"}))
    d, f = sides(tree)["d"], sides(tree)["f"]
    planned = f.meta[DYNAMIC_FILTER]
    assert (planned.column, planned.build, planned.build_column) == ("drive_id", d, "drive_id")
    assert planned.build_rows < planned.probe_rows
    assert d.meta[MATERIALIZE] and DYNAMIC_FILTER not in d.meta


@pytest.mark.parametrize("join", ["LEFT JOIN", "RIGHT JOIN", "FULL JOIN"])
def test_outer_joins_are_never_filtered(join: str) -> None:
    tree = dynamic_filters(bound(JOIN.format(join=join)), catalog=Catalog({"pg"}))
    assert not any(DYNAMIC_FILTER in s.meta for s in sides(tree).values())


def test_two_local_sides_are_left_to_duckdb() -> None:
    tree = dynamic_filters(bound(JOIN.format(join="JOIN")), catalog=Catalog(set()))
    assert not any(s.meta for s in sides(tree).values())


def test_direction_follows_the_estimates() -> None:
    """The lake side is filtered but still estimated at 100k rows: the 50 drives are the build."""
    sql = JOIN.format(join="JOIN").replace("pg.public.drives", "lake.main.frames").replace(
        "lake.main.frames AS f)", "pg.public.drives AS f)")
    tree = dynamic_filters(bound(sql), catalog=Catalog({"pg"}))
    d, f = sides(tree)["d"], sides(tree)["f"]
    assert DYNAMIC_FILTER not in f.meta and MATERIALIZE not in d.meta
    assert d.meta[DYNAMIC_FILTER].build is f and f.meta[MATERIALIZE]


def fragment(planned: DynamicFilter) -> Fragment:
    return Fragment("__f1", "lake", "scan", "", (), True, key_filter=planned)


def test_keys_become_an_in_list_then_a_range() -> None:
    planned = DynamicFilter("drive_id", "__f0", "id", 3, None, IN_LIST_MAX)
    few = {"__f0": pa.table({"id": [3, 1, 3, None]})}
    predicate = key_predicate(fragment(planned), few)
    assert isinstance(predicate, exp.In)
    assert sorted(int(e.this) for e in predicate.expressions) == [1, 3]
    many = {"__f0": pa.table({"id": list(range(10, 10 + IN_LIST_MAX + 1))})}
    assert key_predicate(fragment(planned), many).sql("duckdb") == (
        f"drive_id BETWEEN 10 AND {10 + IN_LIST_MAX}")
    none = {"__f0": pa.table({"id": pa.array([None], pa.int64())})}
    assert key_predicate(fragment(planned), none) == exp.false()


@pytest.mark.parametrize("special", [float("nan"), float("inf"), float("-inf")])
def test_float_keys_that_no_literal_or_range_holds_send_no_filter(special: float) -> None:
    """NaN joins NaN in DuckDB, but sqlglot writes it as NULL and min/max skip it; infinities
    have no literal in either dialect: such keys filter nothing (they lost rows before)."""
    planned = DynamicFilter("f", "__f0", "f", 3, None, IN_LIST_MAX)
    keys = {"__f0": pa.table({"f": [1.5, special, None]})}
    assert key_predicate(fragment(planned), keys) is None
    finite = {"__f0": pa.table({"f": [1.5, 2.5]})}
    assert isinstance(key_predicate(fragment(planned), finite), exp.In)


CHAIN = """SELECT x.label AS label
    FROM (SELECT d.drive_id FROM pg.public.drives AS d WHERE d.city = 'Austin') AS d
    JOIN (SELECT f.drive_id, f.frame_id FROM lake.main.frames AS f) AS f
      ON f.drive_id = d.drive_id
    JOIN (SELECT x.frame_id, x.label FROM lake.main.detections AS x) AS x
      ON x.frame_id = f.frame_id"""


def test_a_lake_probe_takes_no_long_key_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of one city's drives are estimated at 80,000 (2M frames, 2 of 50 drives): the
    detections, a lake DuckDB reads itself, are left to DuckDB's own join filters rather than
    wait for 80,000 keys; the frames still take the drives' keys."""
    monkeypatch.setitem(ROWS, "lake.main.detections", 20_000_000)
    tree = dynamic_filters(bound(CHAIN), catalog=Catalog({"pg", "lake"}))
    d, f, x = (sides(tree)[a] for a in "dfx")
    assert f.meta[DYNAMIC_FILTER].build is d
    assert DYNAMIC_FILTER not in x.meta and MATERIALIZE not in f.meta


def test_keys_flow_along_a_chain_of_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    """One city's drives filter their frames; the few frames' keys then filter detections."""
    monkeypatch.setitem(ROWS, "lake.main.detections", 20_000_000)
    monkeypatch.setitem(ROWS, "lake.main.frames", 20_000)  # 800 of them for two drives
    tree = dynamic_filters(bound(CHAIN), catalog=Catalog({"pg", "lake"}))
    d, f, x = (sides(tree)[a] for a in "dfx")
    assert f.meta[DYNAMIC_FILTER].build is d and f.meta[MATERIALIZE]
    assert x.meta[DYNAMIC_FILTER].build is f
    assert DYNAMIC_FILTER not in d.meta  # keys never flow back into their own source


def test_fetch_order_puts_builds_before_their_probes() -> None:
    from fedquery.fetch import _build_order

    probe = Fragment("__f0", "lake", "scan", "", (), True,
                     key_filter=DynamicFilter("k", "__f2", "k", 1, None, 10))
    middle = Fragment("__f2", "lake", "scan", "", (), True, materialize=True,
                      key_filter=DynamicFilter("k", "__f1", "k", 1, None, 10))
    first = Fragment("__f1", "pg", "scan", "", (), False, materialize=True)
    assert [f.name for f in _build_order([probe, middle, first])] == ["__f1", "__f2", "__f0"]
