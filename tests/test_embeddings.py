"""``embed_image``/``embed_text`` and ``register_embedder``: real files, real embedders."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery
from fedquery.functions import embed_udfs
from fedquery.functions.embedders import NUMPY_IMAGE_DIM, NUMPY_TEXT_DIM, embed_images_numpy
from fedquery.functions.embedding import REGISTRY, sentence_transformer_model


def _mean_rgb(images: list[bytes]) -> np.ndarray:
    """A real (if tiny) image embedder: the mean colour, from the decoded pixels."""
    out = []
    for data in images:
        try:
            with Image.open(io.BytesIO(data)) as img:
                out.append(np.asarray(img.convert("RGB"), np.float64).mean(axis=(0, 1)))
        except Exception:  # noqa: BLE001 - undecodable bytes: a NaN row
            out.append(np.full(3, np.nan))
    return np.array(out).reshape(len(images), 3)


def test_embed_image_equals_the_stored_embeddings(fleet) -> None:
    """The sample's LanceDB vectors were made from the same JPEGs by the same embedder."""
    con, root = fleet
    rows = con.sql("SELECT f.frame_id, f.image_uri, embed_image(f.image_uri) AS v, e.embedding "
                   "FROM frames f JOIN frame_embeddings e USING (frame_id) "
                   "ORDER BY f.frame_id LIMIT 40").fetchall()
    assert len(rows) == 40
    for _, uri, vector, stored in rows:
        direct = embed_images_numpy([(root / "blobs" / "camera" / uri).read_bytes()])[0]
        assert len(vector) == NUMPY_IMAGE_DIM
        np.testing.assert_allclose(vector, direct, rtol=1e-6)
        np.testing.assert_allclose(vector, stored, rtol=1e-5, atol=1e-6)


def test_a_frame_is_its_own_nearest_neighbour(fleet) -> None:
    con, _ = fleet
    frame_id = con.sql("SELECT frame_id FROM frames ORDER BY frame_id LIMIT 1 OFFSET 77").fetchall()[0][0]
    nearest = con.sql("SELECT e.frame_id, array_cosine_distance(e.embedding, embed_image("
                      "(SELECT f.image_uri FROM frames f WHERE f.frame_id = $id))) AS d "
                      "FROM frame_embeddings e ORDER BY d LIMIT 1", params={"id": frame_id}).fetchall()
    assert nearest[0][0] == frame_id and nearest[0][1] == pytest.approx(0.0, abs=1e-5)


def test_outputs_are_named_and_typed_as_written(fleet) -> None:
    con, _ = fleet
    result = con.sql("SELECT embed_image(image_uri), embed_text('rain'), "
                     "embed_image(image_uri, 'numpy-colorhist-64') AS named FROM frames LIMIT 2")
    table = result.arrow()
    assert table.column_names == ["embed_image(image_uri)", "embed_text('rain')", "named"]
    assert [(t.value_type, t.list_size) for t in table.schema.types] == [
        (pa.float32(), NUMPY_IMAGE_DIM), (pa.float32(), NUMPY_TEXT_DIM), (pa.float32(), NUMPY_IMAGE_DIM)]
    described = con.sql("DESCRIBE SELECT embed_text(d.city) AS v FROM drives d").fetchall()
    assert described[0][:2] == ("v", f"FLOAT[{NUMPY_TEXT_DIM}]")


def test_embed_text_ranks_similar_texts_close(fleet) -> None:
    con, _ = fleet
    rows = con.sql("SELECT t, array_cosine_distance(embed_text(t), embed_text('rainy austin')) AS d "
                   "FROM (VALUES ('rain in austin'), ('sunny boston'), (NULL), ('  ')) v(t) "
                   "ORDER BY d NULLS LAST").fetchall()
    assert [t for t, _ in rows[:2]] == ["rain in austin", "sunny boston"]
    assert rows[0][1] < rows[1][1]
    assert [d for _, d in rows[2:]] == [None, None], "NULL or blank text gives NULL"


def test_embed_text_needs_no_files_source(tmp_path: Path) -> None:
    pq.write_table(pa.table({"city": ["Austin", "Boston"]}), tmp_path / "c.parquet")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path)}},
               "tables": {"cities": {"source": "lake", "path": "c.parquet"}}}
    with fedquery.connect(catalog) as con:
        rows = con.sql("SELECT city, embed_text(city) FROM cities ORDER BY city").fetchall()
        assert [r[0] for r in rows] == ["Austin", "Boston"] and all(len(r[1]) == NUMPY_TEXT_DIM for r in rows)
        with pytest.raises(fedquery.ForbiddenError):
            con.sql("SELECT embed_image('/etc/hostname')").fetchall()


def test_registered_image_embedder_equals_its_function(fleet, registry) -> None:
    con, root = fleet
    fedquery.register_embedder("mean-rgb", _mean_rgb, 3)
    rows = con.sql("SELECT image_uri, embed_image(image_uri, 'mean-rgb') FROM frames "
                   "ORDER BY frame_id LIMIT 5").fetchall()
    for uri, vector in rows:
        expected = _mean_rgb([(root / "blobs" / "camera" / uri).read_bytes()])[0]
        np.testing.assert_allclose(vector, expected, rtol=1e-5)
    # a default=True registration is what a call without a model uses
    fedquery.register_embedder("mean-rgb", _mean_rgb, 3, default=True)
    assert con.sql("SELECT len(embed_image(image_uri)) FROM frames LIMIT 1").fetchall() == [(3,)]


def test_registering_again_replaces_a_cached_plan(fleet, registry) -> None:
    con, _ = fleet
    query = "SELECT embed_text('abc', 'letters') AS v"
    fedquery.register_embedder("letters", lambda xs: np.ones((len(xs), 2)), 2, kind="text")
    assert con.sql(query).fetchall() == [((1.0, 1.0),)]  # a FLOAT[n] is a tuple, as in DuckDB
    fedquery.register_embedder("letters", lambda xs: np.full((len(xs), 3), 2.0), 3, kind="text")
    assert con.sql(query).fetchall() == [((2.0, 2.0, 2.0),)]


def test_embedder_sees_bounded_chunks(fleet, registry) -> None:
    con, _ = fleet
    seen: list[int] = []

    def counting(images: list[bytes]) -> np.ndarray:
        seen.append(len(images))
        return embed_images_numpy(images)

    fedquery.register_embedder("counting", counting, NUMPY_IMAGE_DIM)
    n = con.sql("SELECT count(embed_image(image_uri, 'counting')) FROM frames").fetchall()[0][0]
    total = con.sql("SELECT count(*) FROM frames").fetchall()[0][0]
    assert n == total == sum(seen) and total > embed_udfs.CHUNK
    assert max(seen) <= embed_udfs.CHUNK


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT embed_image(image_uri, 'numpy-colorhist-46') FROM frames",
     "unknown model 'numpy-colorhist-46' (did you mean 'numpy-colorhist-64'?)"),
    ("SELECT embed_image(image_uri, camera) FROM frames", "must be a string literal"),
    ("SELECT embed_text('x', 'numpy-colorhist-64')", "embeds images, not texts"),
    ("SELECT embed_text('x', 'numpy-trigram-256', 3)", "takes 1 or 2 arguments"),
])
def test_bad_model_is_a_plan_error(fleet, sql: str, message: str) -> None:
    con, _ = fleet
    with pytest.raises(fedquery.PlanError, match=re.escape(message)):
        con.sql(sql)


def test_two_named_models_in_one_query(fleet, registry) -> None:
    con, root = fleet
    fedquery.register_embedder("mean-rgb", _mean_rgb, 3)
    table = con.sql("SELECT image_uri, embed_image(image_uri, 'mean-rgb'), "
                    "embed_image(image_uri, 'numpy-colorhist-64') AS hist, embed_image(image_uri) "
                    "FROM frames ORDER BY frame_id LIMIT 3").arrow()
    assert table.column_names == ["image_uri", "embed_image(image_uri, 'mean-rgb')", "hist",
                                  "embed_image(image_uri)"]
    for uri, mean, hist, default in zip(*table.to_pydict().values(), strict=True):
        data = (root / "blobs" / "camera" / uri).read_bytes()
        np.testing.assert_allclose(mean, _mean_rgb([data])[0], rtol=1e-5)
        np.testing.assert_allclose(hist, embed_images_numpy([data])[0], rtol=1e-6)
        assert default == hist


def test_wrong_shape_from_an_embedder_is_a_source_error(fleet, registry) -> None:
    con, _ = fleet
    fedquery.register_embedder("short", lambda xs: np.zeros((len(xs), 2)), 4, kind="text")
    with pytest.raises(fedquery.SourceError, match=r"shape \(1, 2\).*expected \(1, 4\)"):
        con.sql("SELECT embed_text(city, 'short') FROM drives LIMIT 1").fetchall()


@pytest.mark.parametrize(("args", "argument"), [
    (("", _mean_rgb, 3), "name"), (("x", "not callable", 3), "fn"),
    (("x", _mean_rgb, 0), "dim"), (("x", _mean_rgb, 3.0), "dim"),
])
def test_register_embedder_checks_its_arguments(registry, args, argument) -> None:
    """(All the cases are in test_inputs_arguments.py.)"""
    with pytest.raises(fedquery.PlanError, match=f": {argument} must be"):
        fedquery.register_embedder(*args)


@pytest.fixture()
def shots(tmp_path: Path):
    """Good, corrupt, empty and missing images behind a blob column, and a file outside."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    good = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(good, "PNG")
    (blobs / "good.png").write_bytes(good.getvalue())
    (blobs / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (blobs / "empty.png").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(good.getvalue())
    (tmp_path / "lake").mkdir()
    uris = ["good.png", "corrupt.jpg", "empty.png", "missing.png", None]
    pq.write_table(pa.table({"id": range(len(uris)), "uri": uris}), tmp_path / "lake" / "s.parquet")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")},
                           "pics": {"kind": "files", "root": str(blobs)}},
               "tables": {"shots": {"source": "lake", "path": "s.parquet"}},
               "blobs": {"shots.uri": "pics"}}
    return catalog


def test_bad_images_embed_as_null_and_every_row_returns(shots) -> None:
    with fedquery.connect(shots) as con:
        rows = dict(con.sql("SELECT id, embed_image(uri) FROM shots ORDER BY id").fetchall())
        assert sorted(rows) == [0, 1, 2, 3, 4]
        assert len(rows[0]) == NUMPY_IMAGE_DIM and all(rows[i] is None for i in (1, 2, 3, 4))
        with pytest.raises(fedquery.ForbiddenError):
            con.sql("SELECT embed_image('../outside.png')").fetchall()
    with fedquery.connect(shots, strict=True) as strict:
        with pytest.raises(fedquery.SourceError, match="corrupt.jpg") as info:
            strict.sql("SELECT embed_image(uri) FROM shots WHERE id = 1").fetchall()
        assert info.value.source == "pics"
        with pytest.raises(fedquery.SourceError, match="not found"):
            strict.sql("SELECT embed_image(uri) FROM shots WHERE id = 3").fetchall()


def test_no_text_model_without_sentence_transformers() -> None:
    """Nothing is downloaded: without the package, or with a model path that is not there,
    no sentence-transformers model is registered."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        assert sentence_transformer_model({}) is None
    assert sentence_transformer_model({"FEDQUERY_TEXT_MODEL": "/nonexistent/model"}) is None
    assert "numpy-trigram-256" in REGISTRY.names()


def test_an_embedder_that_raises_is_a_source_error(fleet, registry) -> None:
    con, _ = fleet

    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("model weights missing")

    fedquery.register_embedder("broken", broken, 4, kind="text")
    with pytest.raises(fedquery.SourceError, match="model weights missing") as info:
        con.sql("SELECT embed_text(city, 'broken') FROM drives").fetchall()
    assert info.value.source == "embedder broken"


def test_a_constant_query_text_is_embedded_once(fleet, registry) -> None:
    con, _ = fleet
    calls: list[int] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.ones((len(texts), 2))

    fedquery.register_embedder("counting-text", counting, 2, kind="text")
    rows = con.sql("SELECT frame_id, embed_text('rain', 'counting-text') FROM frames").fetchall()
    assert len(rows) == con.sql("SELECT count(*) FROM frames").fetchall()[0][0] > 1
    assert calls == [1]


def test_a_failed_embedder_does_not_blame_a_later_query(fleet, registry) -> None:
    con, _ = fleet

    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("model crashed")

    fedquery.register_embedder("crashing", broken, 4, kind="text")
    # planning alone never calls the model; a query that needs no row never does either
    result = con.sql("SELECT city FROM drives WHERE city = 'nowhere' AND "
                     "embed_text('x', 'crashing') IS NULL")
    assert result.fetchall() == []
    with pytest.raises(fedquery.SourceError, match="model crashed"):
        con.sql("SELECT embed_text(city, 'crashing') FROM drives").fetchall()
    with pytest.raises(fedquery.PlanError, match="Conversion Error") as info:
        con.sql("SELECT 'abc'::INTEGER").fetchall()
    assert "crashed" not in str(info.value)


def test_a_registration_while_planning_does_not_break_the_plan(fleet, registry, monkeypatch) -> None:
    """Each call's embedder is resolved once per plan: registering a new default between the
    describe step and the rewrite leaves this plan on the model it described."""
    from fedquery.execute import Session

    con, _ = fleet
    describe = Session.describe

    def describe_then_register(self, *args, **kwargs):
        outputs = describe(self, *args, **kwargs)
        fedquery.register_embedder("late", lambda xs: np.ones((len(xs), 3)), 3, kind="text",
                                   default=True)
        return outputs

    monkeypatch.setattr(Session, "describe", describe_then_register)
    rows = con.sql("SELECT embed_text(city) FROM drives WHERE city IS NOT NULL LIMIT 1").fetchall()
    assert len(rows[0][0]) == NUMPY_TEXT_DIM


def test_one_name_holds_an_image_and_a_text_embedder(fleet, registry) -> None:
    """A joint model: registering a name for the other kind adds that kind, replacing nothing
    (the image embedder stays the default)."""
    con, _ = fleet
    fedquery.register_embedder("flip", _mean_rgb, 3, default=True)
    fedquery.register_embedder("flip", lambda xs: np.ones((len(xs), 3)), 3, kind="text")
    assert con.sql("SELECT len(embed_image(image_uri)), embed_text('x', 'flip') FROM frames "
                   "LIMIT 1").fetchall() == [(3, (1.0, 1.0, 1.0))]
    assert REGISTRY.names()["flip"] == ("image", "text")
    assert REGISTRY.get("text").name != "flip", "the text default is still the first text model"


def test_an_oversized_file_is_not_read_for_embedding(shots) -> None:
    shots["sources"]["pics"]["limits"] = {"embed_image": 10}
    with fedquery.connect(shots) as con:
        stats = con._session.functions.blobs.roots["pics"].filesystem.handler.stats
        before = stats.bytes
        assert con.sql("SELECT embed_image(uri) FROM shots WHERE id = 0").fetchall() == [(None,)]
        assert stats.bytes == before, "nothing of a file over the limit is read"
    with fedquery.connect(shots, strict=True) as strict, \
            pytest.raises(fedquery.SourceError, match=r"over limits.embed_image \(10 bytes\)"):
        strict.sql("SELECT embed_image(uri) FROM shots WHERE id = 0").fetchall()


def test_errors_name_functions_as_users_write_them(fleet) -> None:
    con, _ = fleet
    with pytest.raises(fedquery.PlanError) as info:
        con.sql("SELECT embed_text(42)")
    assert "embed_text(INTEGER" in str(info.value) and "__fq" not in str(info.value).lower()
    with pytest.raises(fedquery.PlanError, match="did you mean 'numpy-trigram-256'"):
        con.sql("SELECT embed_text('a', 'NUMPY-TRIGRAM-256')")


def test_no_files_source_is_said_plainly(tmp_path: Path) -> None:
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path)}}}
    with fedquery.connect(catalog) as con, pytest.raises(fedquery.ForbiddenError,
                                                         match="declares no files source"):
        con.sql("SELECT image_info('a.jpg')").fetchall()


@pytest.mark.parametrize("sql", [
    "SELECT embed_image(uri) FROM (SELECT image_uri AS uri FROM frames "
    "UNION ALL SELECT image_uri FROM frames) s LIMIT 3",
    "SELECT embed_image(uri) FROM camera_files LIMIT 3",
    "SELECT COLUMNS('frame_id'), embed_image(image_uri) FROM frames LIMIT 3",  # planned unqualified
])
def test_blob_source_followed_through_unions_listings_and_unqualified_plans(fleet, sql: str) -> None:
    con, _ = fleet
    rows = con.sql(sql).fetchall()
    assert len(rows) == 3 and all(len(r[-1]) == NUMPY_IMAGE_DIM for r in rows)
