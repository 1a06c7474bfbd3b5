"""The example of docs/scale-out.md, run on a real cluster (the docs test checks that the
document's block is an excerpt of this file), with the local engine's answers beside it."""

from __future__ import annotations

import fedquery


def test_the_scale_out_example_answers_as_the_local_engine(sample, ray_cluster) -> None:
    catalog = str(sample)
    con = fedquery.connect(catalog, engine="ray", ray_address=ray_cluster)
    per_city = ("SELECT d.city, count(*) AS frames FROM frames f JOIN drives d USING (drive_id) "
                "GROUP BY d.city ORDER BY d.city")
    rows = con.sql(per_city).arrow()
    profile = con.profile("camera_files")
    with fedquery.connect(catalog) as local:
        assert rows.equals(local.sql(per_city).arrow())
        expected = local.profile("camera_files")
    assert profile.summary == expected.summary
    sets = ["duplicate_set", "near_duplicate_set"]
    assert profile.to_arrow().drop_columns(sets).sort_by("uri").equals(
        expected.to_arrow().drop_columns(sets).sort_by("uri"))
    for column in sets:  # the same files grouped alike (a set's number is its first file's place)
        assert _groups(profile.to_arrow(), column) == _groups(expected.to_arrow(), column)
    # the report's thumbnails and embeddings, made on the workers, are the local ones
    assert profile.thumbnails == expected.thumbnails and profile.thumbnails
    assert profile.embeddings.sort_by("uri").equals(expected.embeddings.sort_by("uri"))
    con.close()


def _groups(files, column: str) -> set[frozenset[str]]:
    members: dict[int, set[str]] = {}
    for uri, group in zip(files.column("uri").to_pylist(), files.column(column).to_pylist(), strict=True):
        if group is not None:
            members.setdefault(group, set()).add(uri)
    return {frozenset(m) for m in members.values()}
