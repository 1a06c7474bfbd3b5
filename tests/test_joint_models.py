"""Joint text-image models (``fedquery.register_clip``): text-to-image search end to end.

No model can be downloaded, so each test model is built and trained here, in seconds: open_clip's
own CLIP class and transformers' CLIPModel, shrunk (fedquery/sample_data/tiny_clip.py), trained on noisy
pictures of four colours captioned "a red picture", ... and saved the way each library saves a
model. Searches run over pictures the models never saw, and are checked against the model run
directly (torch, no fedquery) and a numpy brute force.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_MISSING = [m for m in ("torch", "open_clip", "sentence_transformers") if importlib.util.find_spec(m) is None]
if _MISSING:
    if os.environ.get("CI") == "true":
        raise ImportError(f"the clip extra is not installed (no {', '.join(_MISSING)}): "
                          "pip install -e '.[dev]'")
    pytest.skip(f"needs the clip extra (no {', '.join(_MISSING)})", allow_module_level=True)

import lancedb  # noqa: E402

import fedquery  # noqa: E402
from fedquery.functions import joint_models  # noqa: E402
from fedquery.sample_data import tiny_clip  # noqa: E402

joint_models.prepare_torchvision()  # (a CUDA torchvision beside the CPU torch: see there)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220), "yellow": (230, 220, 40)}
PER_COLOUR = 3  # pictures of each colour searched
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def training() -> tuple[list[bytes], list[str]]:
    return tiny_clip.colour_pictures(COLOURS, 24, seed=1)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unseen pictures, ``<colour>-<n>.png``, in a folder of their own."""
    folder = tmp_path_factory.mktemp("pictures")
    data, captions = tiny_clip.colour_pictures(COLOURS, PER_COLOUR, seed=99)
    for i, (png, caption) in enumerate(zip(data, captions, strict=True)):
        (folder / f"{caption.split()[1]}-{i % PER_COLOUR}.png").write_bytes(png)
    return folder


@pytest.fixture(scope="module")
def open_clip_model(training, tmp_path_factory: pytest.TempPathFactory):
    """The trained open_clip model and its saved folder (open_clip_config.json + weights)."""
    model = tiny_clip.train_open_clip(*training, steps=60, batch=32)
    return model, tiny_clip.save_open_clip(model, tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="module")
def st_model(training, tmp_path_factory: pytest.TempPathFactory):
    """The trained transformers CLIP, its processor and its sentence-transformers folder."""
    model, tokenizer, processor = tiny_clip.train_transformers_clip(*training, steps=60, batch=32)
    folder = tmp_path_factory.mktemp("models") / "tiny-st-clip"
    return model, tokenizer, processor, tiny_clip.save_sentence_transformers(model, tokenizer, processor,
                                                                             folder)


def _catalog(pictures: Path, vectors: Path | None = None) -> dict:
    catalog = {"sources": {"pics": {"kind": "files", "root": str(pictures)}},
               "tables": {"pic_files": {"source": "pics"}}}
    if vectors is not None:
        catalog["sources"]["vectors"] = {"kind": "lancedb", "uri": str(vectors)}
        catalog["tables"]["pic_vectors"] = {"source": "vectors", "table": "pic_vectors"}
        catalog["blobs"] = {"pic_vectors.uri": "pics"}
    return catalog


def _brute_force(images: np.ndarray, text: np.ndarray, uris: list[str], k: int) -> list[tuple[str, float]]:
    """The k nearest pictures by cosine distance, in numpy (ties by uri)."""
    distance = 1.0 - (images @ text) / (np.linalg.norm(images, axis=1) * np.linalg.norm(text))
    order = sorted(range(len(uris)), key=lambda i: (round(float(distance[i]), 5), uris[i]))[:k]
    return [(uris[i], float(distance[i])) for i in order]


def test_text_to_image_search_with_open_clip(registry, open_clip_model, pictures, tmp_path) -> None:
    """An embedding column made with embed_image in a LanceDB table, searched by a text:
    each colour's pictures come first, as the trained model itself ranks them."""
    model, folder = open_clip_model
    loaded = fedquery.register_clip("tiny-clip", folder)
    assert (loaded.dim, loaded.device, loaded.spec.library) == (16, "cpu", "open_clip")
    with fedquery.connect(_catalog(pictures)) as con:
        column = con.sql("SELECT uri, embed_image(uri, 'tiny-clip') AS embedding FROM pic_files "
                         "ORDER BY uri").arrow()
    assert column.num_rows == len(COLOURS) * PER_COLOUR and column["embedding"].null_count == 0
    lancedb.connect(str(tmp_path / "vectors")).create_table("pic_vectors", data=column)

    # the model run directly: open_clip's own transform and tokenizer, no fedquery
    open_clip = joint_models.import_open_clip()
    preprocess = open_clip.image_transform(32, is_train=False, mean=tiny_clip.MEAN, std=tiny_clip.STD)
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=16)
    uris = column["uri"].to_pylist()
    with torch.inference_mode():
        pixels = torch.stack([preprocess(tiny_clip._rgb((pictures / u).read_bytes())) for u in uris])
        direct = F.normalize(model.encode_image(pixels), dim=-1).numpy()
        texts = F.normalize(model.encode_text(tokenizer([f"a {c} picture" for c in COLOURS])), dim=-1).numpy()
    np.testing.assert_allclose(np.stack(column["embedding"].to_numpy(zero_copy_only=False)), direct,
                               atol=1e-5)

    with fedquery.connect(_catalog(pictures, tmp_path / "vectors")) as con:
        for colour, text in zip(COLOURS, texts, strict=True):
            rows = con.sql(f"""
                SELECT e.uri, array_cosine_distance(e.embedding, embed_text('a {colour} picture',
                                                                            'tiny-clip')) AS d
                FROM pic_vectors e
                ORDER BY array_cosine_distance(e.embedding, embed_text('a {colour} picture', 'tiny-clip')),
                         e.uri
                LIMIT {PER_COLOUR}""").fetchall()
            assert [u.split("-")[0] for u, _ in rows] == [colour] * PER_COLOUR
            expected = _brute_force(direct, text, uris, PER_COLOUR)
            assert [u for u, _ in rows] == [u for u, _ in expected]
            np.testing.assert_allclose([d for _, d in rows], [d for _, d in expected], atol=1e-5)
        # the query text's vector is the model's own
        vector = con.sql("SELECT embed_text('a red picture', 'tiny-clip')").fetchall()[0][0]
        np.testing.assert_allclose(vector, texts[0], atol=1e-5)


def test_text_to_image_search_with_a_sentence_transformers_clip(registry, st_model, pictures) -> None:
    """A sentence-transformers CLIP folder; embeddings computed in the query itself."""
    model, tokenizer, processor, folder = st_model
    loaded = fedquery.register_clip("tiny-st", folder)
    assert (loaded.dim, loaded.spec.library) == (16, "sentence-transformers")
    uris = sorted(p.name for p in pictures.iterdir())
    with torch.inference_mode():  # transformers' CLIPModel run directly
        pixels = processor(images=[tiny_clip._rgb((pictures / u).read_bytes()) for u in uris],
                           return_tensors="pt")["pixel_values"]
        features = tiny_clip._features(model.get_image_features(pixel_values=pixels))
        direct = F.normalize(features, dim=-1).numpy()
    with fedquery.connect(_catalog(pictures)) as con:
        for colour in COLOURS:
            with torch.inference_mode():
                tokens = tokenizer([f"a {colour} picture"], padding="max_length", max_length=16,
                                   truncation=True, return_tensors="pt")
                text = F.normalize(tiny_clip._features(model.get_text_features(**tokens)), dim=-1).numpy()[0]
            rows = con.sql(f"""
                SELECT uri, array_cosine_distance(embed_image(uri, 'tiny-st'),
                                                  embed_text('a {colour} picture', 'tiny-st')) AS d
                FROM pic_files ORDER BY d, uri LIMIT {PER_COLOUR}""").fetchall()
            assert [u.split("-")[0] for u, _ in rows] == [colour] * PER_COLOUR
            expected = _brute_force(direct, text, uris, PER_COLOUR)
            assert [u for u, _ in rows] == [u for u, _ in expected]
            np.testing.assert_allclose([d for _, d in rows], [d for _, d in expected], atol=1e-4)


def test_mismatched_widths_name_both_widths_and_models(registry, open_clip_model, pictures,
                                                       tmp_path) -> None:
    """A 64-d colour-histogram column searched with the 16-d CLIP text vector."""
    fedquery.register_clip("tiny-clip", open_clip_model[1])
    with fedquery.connect(_catalog(pictures)) as con:
        column = con.sql("SELECT uri, embed_image(uri) AS embedding FROM pic_files").arrow()
    lancedb.connect(str(tmp_path / "vectors")).create_table("pic_vectors", data=column)
    with fedquery.connect(_catalog(pictures, tmp_path / "vectors")) as con:
        with pytest.raises(fedquery.PlanError) as info:
            con.sql("SELECT uri FROM pic_vectors e ORDER BY array_cosine_distance(e.embedding, "
                    "embed_text('a red picture', 'tiny-clip')) LIMIT 3").fetchall()
        text = str(info.value)
        assert "compares vectors of 64 and 16 dimensions" in text
        assert "column e.embedding (FLOAT[64])" in text
        assert "embed_text with model 'tiny-clip' (16 dims)" in text
        assert "Registered models of 64 dimensions: 'numpy-colorhist-64' (image); none embeds texts" in text
        assert "'tiny-clip' is a joint text-image model" in text
        assert "embed_image(uri, 'tiny-clip') can be searched with embed_text(text, 'tiny-clip')" in text
        assert "tiny-clip (image and text, 16 dims)" in text

        with pytest.raises(fedquery.PlanError) as info:  # two models, two widths, no column
            con.sql("SELECT array_cosine_distance(embed_image(uri), embed_text('a red picture', "
                    "'tiny-clip')) FROM pic_files").fetchall()
        assert ("embed_image with model 'numpy-colorhist-64' (64 dims) against embed_text with "
                "model 'tiny-clip' (16 dims)") in str(info.value)


def test_two_models_of_one_width_are_refused(registry, open_clip_model, st_model, pictures) -> None:
    """Vectors of two 16-d models: DuckDB would compute the distance; the plan refuses it."""
    fedquery.register_clip("tiny-clip", open_clip_model[1])
    fedquery.register_clip("tiny-st", st_model[3])
    with fedquery.connect(_catalog(pictures)) as con:
        with pytest.raises(fedquery.PlanError) as info:
            con.sql("SELECT uri FROM pic_files ORDER BY array_cosine_distance("
                    "embed_image(uri, 'tiny-clip'), embed_text('a red picture', 'tiny-st')) LIMIT 3")
        text = str(info.value)
        assert "compares vectors of two models: embed_image with model 'tiny-clip' (16 dims) against " \
               "embed_text with model 'tiny-st' (16 dims)" in text
        assert con.sql("SELECT count(*) FROM pic_files WHERE array_cosine_distance(embed_image(uri, "
                       "'tiny-clip'), embed_text('a red picture', 'tiny-clip')) < 2").fetchall() == [
            (len(COLOURS) * PER_COLOUR,)]


def test_a_weights_file_with_its_architecture(registry, open_clip_model, pictures, tmp_path) -> None:
    """A bare weights file and a model config JSON (open_clip's model_configs form)."""
    model, folder = open_clip_model
    weights = tmp_path / "tiny.safetensors"
    shutil.copy(folder / "open_clip_model.safetensors", weights)
    config = tmp_path / "fq-tiny-clip.json"
    config.write_text(json.dumps(tiny_clip.TINY_OPEN_CLIP))
    loaded = fedquery.register_clip("tiny-file", weights, architecture=str(config))
    from_folder = fedquery.register_clip("tiny-clip", folder)
    data = [(pictures / "red-0.png").read_bytes(), b"not an image", None]
    vectors = loaded.embed_images(data)
    np.testing.assert_allclose(vectors[0], from_folder.embed_images(data[:1])[0], atol=1e-6)
    assert np.isnan(vectors[1:]).all(), "undecodable bytes and None give NaN rows (NULL in SQL)"
    np.testing.assert_allclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-5)
    with pytest.raises(fedquery.PlanError, match="'fq-nope' is not an open_clip model name"):
        fedquery.register_clip("tiny-file", weights, architecture="fq-nope")


def test_a_model_in_the_hugging_face_cache(registry, open_clip_model, monkeypatch, tmp_path) -> None:
    """``org/name`` is the model's snapshot in the cache, read in place; never a download."""
    snapshot = tmp_path / "hub" / "models--acme--tiny-clip" / "snapshots" / "0123abcd"
    shutil.copytree(open_clip_model[1], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for path in ("acme/tiny-clip", "hf-hub:acme/tiny-clip"):
        assert fedquery.register_clip("cached", path).spec.path == snapshot
    with pytest.raises(fedquery.PlanError, match="no model 'acme/other' in the Hugging Face cache; "
                                                 "nothing is downloaded at run time"):
        fedquery.register_clip("cached", "acme/other")


@pytest.mark.parametrize(("path", "message"), [
    ("https://example.com/ViT-B-32.pt", "is not on this machine, and nothing is downloaded"),
    ("s3://models/clip/", "is not on this machine"),
    ("{empty}", "has no open_clip_config.json (open_clip), modules.json or config.json"),
    ("{no_weights}", "has open_clip_config.json but no weights file"),
    ("{text_file}", "is a file; give an open_clip weights file"),
])
def test_paths_that_are_not_a_local_model(registry, tmp_path, path: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "open_clip_config.json").write_text('{"model_cfg": {"embed_dim": 16}}')
    (tmp_path / "notes.txt").write_text("hello")
    path = path.format(empty=tmp_path / "empty", no_weights=tmp_path / "no_weights",
                       text_file=tmp_path / "notes.txt")
    with pytest.raises(fedquery.PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fedquery.register_clip("x", path)
    assert "x" not in fedquery.functions.embedding.REGISTRY.names()


def test_models_load_with_the_hub_offline(monkeypatch) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    with joint_models._offline():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert hub.HF_HUB_OFFLINE is True
        from huggingface_hub import hf_hub_download

        with pytest.raises(Exception, match="(?i)offline|cannot find|not.*cached"):
            hf_hub_download("acme/never-downloaded", "config.json")
    assert "HF_HUB_OFFLINE" not in os.environ and hub.HF_HUB_OFFLINE is False


def test_import_fedquery_does_not_import_torch_and_the_environment_registers_a_model(
        open_clip_model, pictures) -> None:
    """FEDQUERY_CLIP_MODEL registers the folder's model at import, loaded on first use."""
    folder = open_clip_model[1]
    script = f"""
import sys
import fedquery
from fedquery.functions.embedding import REGISTRY
assert "torch" not in sys.modules, "import fedquery imported torch"
assert REGISTRY.names()["tiny-clip"] == ("image", "text")
with fedquery.connect({_catalog(pictures)!r}) as con:
    rows = con.sql("SELECT uri FROM pic_files ORDER BY array_cosine_distance(embed_image(uri, 'tiny-clip'), "
                   "embed_text('a blue picture', 'tiny-clip')), uri LIMIT 3").fetchall()
assert [u.split("-")[0] for u, in rows] == ["blue"] * 3, rows
assert "torch" in sys.modules
print("ok")
"""
    env = {**os.environ, "FEDQUERY_CLIP_MODEL": str(folder), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    env["FEDQUERY_CLIP_MODEL"] = "/nonexistent/clip"
    done = subprocess.run([sys.executable, "-c", "import fedquery"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "FEDQUERY_CLIP_MODEL='/nonexistent/clip' is not registered" in done.stderr


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "", "path": "x"}, "register_clip: name must be a non-empty string"),
    ({"name": "c", "path": ""}, "register_clip('c'): path must be a folder, a file or a cached model id"),
    ({"name": "c", "path": "x", "library": "torch"}, "library must be 'open_clip' or"),
    ({"name": "c", "path": "x", "device": 0}, "device must be a string such as 'cpu' or 'cuda'"),
    ({"name": "c", "path": "x", "default": "yes"}, "default must be True or False"),
])
def test_register_clip_checks_its_arguments(registry, kwargs: dict, message: str) -> None:
    with pytest.raises(fedquery.PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fedquery.register_clip(**kwargs)
