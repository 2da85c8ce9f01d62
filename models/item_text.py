"""Frozen text-encoder embeddings of item texts, cached on disk per (dataset, encoder, texts).

CTRL (its title-initialised item table and its contrastive prompts) and A-LLMRec (stage 1) embed the same
titles with the same frozen encoder; encoding 12k titles costs about a minute on two CPU cores, so a second
run, a probe's retraining or another model on the same dataset loads the tensor instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
from rich.progress import Progress

from seqbench.data.dataset import SeqDataset
from seqbench.llm.text_encoder import encode_texts, load_text_encoder

from .store import cache_path, save_atomic

TEXT_BATCH = 64


def texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()


def text_embeddings(data: SeqDataset, texts: Sequence[str], encoder: str, device: torch.device | str = "cpu",
                    max_length: int = 64, use_cache: bool = True, progress: Progress | None = None,
                    purpose: str = "texts") -> torch.Tensor:
    """(len(texts), d_text) fp32 mean-pooled embeddings on ``device``; the cache key is the encoder name, the
    exact texts and ``max_length``, so any change of text (another cleaning rule, a shuffled prompt) re-encodes."""
    key = {"encoder": encoder, "texts": texts_digest(texts), "max_length": max_length, "pooling": "mean"}
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder)[-40:]
    path = cache_path("text", f"{purpose}-{slug}", data, key)
    if use_cache and (path / "emb.pt").is_file():
        return torch.load(path / "emb.pt", map_location=device, weights_only=True)
    model, tok = load_text_encoder(encoder, str(device))
    task = None
    if progress is not None and progress.console.is_terminal:
        task = progress.add_task(f"encode {len(texts)} {purpose} with {encoder}", total=len(texts))
    chunks = []
    for b in range(0, len(texts), TEXT_BATCH * 8):
        chunks.append(encode_texts(model, tok, texts[b:b + TEXT_BATCH * 8], TEXT_BATCH, max_length))
        if task is not None:
            progress.update(task, completed=min(b + TEXT_BATCH * 8, len(texts)))
    if task is not None:
        progress.remove_task(task)
    emb = torch.cat(chunks) if chunks else encode_texts(model, tok, [], TEXT_BATCH, max_length)
    if use_cache:
        save_atomic(path, lambda p: torch.save(emb.cpu(), p / "emb.pt"))
    return emb.to(device)
