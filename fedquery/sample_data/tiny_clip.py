"""A tiny CLIP-style model trained in seconds: what the docs and tests use instead of a real one.

A real user points ``fedquery.register_clip`` at a CLIP checkpoint on disk (an open_clip
``ViT-B-32`` weights file, a sentence-transformers ``clip-ViT-B-32`` folder). None can be
downloaded here, so ``train_open_clip`` trains open_clip's own ``CLIP`` class, shrunk (two
layers of width 32, 32-pixel images in 8-pixel patches, 16 tokens, 16 dimensions),
contrastively on pictures and their captions, and ``save_open_clip`` writes it the way open_clip
saves a model: ``open_clip_config.json`` and ``open_clip_model.safetensors`` in a folder, the
layout of an open_clip model in the Hugging Face cache. ``train_transformers_clip`` and
``save_sentence_transformers`` do the same with transformers' ``CLIPModel`` and a
character-level CLIP tokenizer written here, saved as a sentence-transformers folder.

Each picture has a caption, or several phrasings of one; pictures with the same captions are
one class. Every step embeds a batch of pictures and every class's captions (one phrasing
each, drawn at random) and pulls each picture towards its class's caption and away from the
others' (CLIP's symmetric cross-entropy, with the pictures of a class as the caption's targets).
Needs torch and open_clip or sentence-transformers (the ``clip`` extra).

>>> model = train_open_clip(pictures, ["a red picture", "a blue picture", ...])  # doctest: +SKIP
>>> save_open_clip(model, "/tmp/tiny-clip")                                     # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["TINY_OPEN_CLIP", "save_open_clip", "save_sentence_transformers", "train_open_clip",
           "train_transformers_clip"]

TINY_OPEN_CLIP = {  # an open_clip model config (the form of open_clip/model_configs/*.json)
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's pixel normalisation
STD = (0.26862954, 0.26130258, 0.27577711)
Captions = Sequence[str | Sequence[str]]


def train_open_clip(pictures: Sequence[bytes], captions: Captions, *, steps: int = 150,
                    batch: int = 64, seed: int = 0):
    """open_clip's ``CLIP`` with ``TINY_OPEN_CLIP`` trained on encoded ``pictures`` and their
    ``captions`` (a caption, or phrasings of one, per picture); returned in eval mode."""
    import torch

    from fedquery.functions.joint_models import import_open_clip

    open_clip = import_open_clip()
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPEN_CLIP)
    preprocess = open_clip.image_transform(TINY_OPEN_CLIP["vision_cfg"]["image_size"], is_train=False,
                                           mean=MEAN, std=STD)
    pixels = torch.stack([preprocess(_rgb(data)) for data in pictures])
    classes, labels = _classes(captions)
    context = TINY_OPEN_CLIP["text_cfg"]["context_length"]
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=context)  # CLIP's own BPE
    phrasings = [tokenizer(list(c)) for c in classes]
    _fit(model, model.encode_image, model.encode_text, model.logit_scale, pixels, labels, phrasings,
         steps=steps, batch=batch, seed=seed)
    return model.eval()


def save_open_clip(model, folder: str | os.PathLike) -> Path:
    """``model`` (a ``train_open_clip`` result) as an open_clip model folder; returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_OPEN_CLIP,
              "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic",
                                 "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def train_transformers_clip(pictures: Sequence[bytes], captions: Captions, *, steps: int = 150,
                            batch: int = 64, seed: int = 0) -> tuple[Any, Any, Any]:
    """transformers' ``CLIPModel`` (two layers of width 32, 32-pixel images, 16 dimensions), a
    character-level ``CLIPTokenizer`` and a PIL image processor, the model trained as
    ``train_open_clip`` does; returns (model, tokenizer, image processor)."""
    import tempfile

    import torch

    from fedquery.functions.joint_models import prepare_torchvision

    prepare_torchvision()
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer(*_character_vocabulary(Path(tmp)), model_max_length=16)
    special = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 16,
            "bos_token_id": special[0], "eos_token_id": special[1], "pad_token_id": special[1]}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    processor = _image_processor()
    pixels = processor(images=[_rgb(data) for data in pictures], return_tensors="pt")["pixel_values"]
    classes, labels = _classes(captions)
    phrasings = [tokenizer(list(c), padding="max_length", truncation=True, max_length=16,
                           return_tensors="pt") for c in classes]

    def texts(tokens):
        return _features(model.get_text_features(**tokens))

    def images(batch_pixels):
        return _features(model.get_image_features(pixel_values=batch_pixels))

    _fit(model, images, texts, model.logit_scale, pixels, labels, phrasings, steps=steps, batch=batch,
         seed=seed)
    return model.eval(), tokenizer, processor


def save_sentence_transformers(model, tokenizer, processor, folder: str | os.PathLike) -> Path:
    """A ``train_transformers_clip`` result saved as a sentence-transformers model folder."""
    from transformers import CLIPProcessor

    folder = Path(folder)
    raw = folder / "transformers"
    model.save_pretrained(raw)
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(raw)
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 5.4 and later: one Transformer module for every modality
        from sentence_transformers.base.modules import Transformer as module
    except ImportError:
        from sentence_transformers.models import CLIPModel as module
    SentenceTransformer(modules=[module(str(raw))], device="cpu").save(str(folder))
    return folder


# --- training ----------------------------------------------------------------------------------


def _fit(model, images, texts, logit_scale, pixels, labels, phrasings: list, *, steps: int,
         batch: int, seed: int) -> None:
    """Contrastive training: a batch of pictures against one phrasing of every class's caption."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and not slowed by a busy machine
    try:
        _steps(model, images, texts, logit_scale, pixels, labels, phrasings, steps=steps, batch=batch,
               seed=seed)
    finally:
        torch.set_num_threads(threads)


def _steps(model, images, texts, logit_scale, pixels, labels, phrasings: list, *, steps: int,
           batch: int, seed: int) -> None:
    import torch
    import torch.nn.functional as F  # noqa: N812

    model.train()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    labels = torch.as_tensor(labels)
    classes = len(phrasings)
    for _ in range(steps):
        pick = torch.randint(len(pixels), (min(batch, len(pixels)),), generator=generator)
        choice = [int(torch.randint(len(_rows(p)), (1,), generator=generator)) for p in phrasings]
        tokens = _stack([_row(p, c) for p, c in zip(phrasings, choice, strict=True)])
        image = F.normalize(images(pixels[pick]), dim=-1)
        text = F.normalize(texts(tokens), dim=-1)
        logits = logit_scale.exp().clamp(max=100) * image @ text.T
        target = labels[pick]
        onehot = F.one_hot(target, classes).T.float()
        present = onehot.sum(1) > 0
        targets = onehot[present] / onehot[present].sum(1, keepdim=True)  # a caption's pictures
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T[present], targets)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def _rows(tokens):
    return tokens["input_ids"] if isinstance(tokens, dict) or hasattr(tokens, "keys") else tokens


def _row(tokens, i: int):
    """Row ``i`` of a token batch: a tensor (open_clip) or a tokenizer's encoding."""
    if hasattr(tokens, "keys"):
        return {k: v[i:i + 1] for k, v in tokens.items()}
    return tokens[i:i + 1]


def _stack(rows: list):
    import torch

    if isinstance(rows[0], dict):
        return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
    return torch.cat(rows)


def _features(output):
    """``get_*_features`` output: a tensor, or (transformers 5) an output with pooler_output."""
    return output if hasattr(output, "shape") else output.pooler_output


def _classes(captions: Captions) -> tuple[list[tuple[str, ...]], list[int]]:
    """The distinct captions (each a tuple of phrasings) and each picture's class number."""
    keys = [(c,) if isinstance(c, str) else tuple(c) for c in captions]
    classes = list(dict.fromkeys(keys))
    index = {c: i for i, c in enumerate(classes)}
    return classes, [index[k] for k in keys]


def _rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def _character_vocabulary(folder: Path) -> tuple[str, str]:
    """vocab.json and merges.txt of a CLIP BPE tokenizer over single characters (no merges):
    every lower-case letter, digit and punctuation mark, alone and word-final."""
    symbols = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {c: i for i, c in enumerate(symbols)}
    vocab.update({f"{c}</w>": len(symbols) + i for i, c in enumerate(symbols)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return str(folder / "vocab.json"), str(folder / "merges.txt")


def _image_processor():
    """CLIP's image processor for 32-pixel images (the PIL one where transformers has both)."""
    import transformers

    kind = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return kind(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                image_mean=list(MEAN), image_std=list(STD))


def colour_pictures(colours: dict[str, tuple[int, int, int]], per_colour: int, *,
                    seed: int = 0) -> tuple[list[bytes], list[str]]:
    """PNG pictures of each named colour (a noisy field with a grey shape on it) and their
    captions ("a red picture"): a small, honest text-to-image task for tests."""
    rng = np.random.default_rng(seed)
    pictures, captions = [], []
    for name, rgb in colours.items():
        for _ in range(per_colour):
            field = np.clip(np.array(rgb) + rng.normal(0, 18, (40, 40, 3)), 0, 255)
            x, y = rng.integers(0, 28, 2)
            size = rng.integers(6, 13)
            field[y:y + size, x:x + size] = rng.integers(60, 200)
            out = io.BytesIO()
            Image.fromarray(field.astype(np.uint8)).save(out, "PNG")
            pictures.append(out.getvalue())
            captions.append(f"a {name} picture")
    return pictures, captions
