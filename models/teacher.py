"""The frozen SASRec teacher every CF-aware LLM recommender shares, and the on-disk cache for such pre-trained
parts (docs/MODELS.md §3.1 "Use as CF-SRec").

One teacher per (dataset, seed, teacher config, train histories): LLaRA, CoLLM, A-LLMRec and LLM-SRec on the same
data and seed load the same cached SASRec; ``shuffle-train`` passes shuffled histories and gets its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.llm.backbone import cache_root

from .llm_data import TEACHER_MAXLEN


def histories_digest(hist: Histories) -> str:
    h = hashlib.sha256()
    for a in (hist.users, hist.items, hist.times, hist.offsets):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def cache_path(kind: str, tag: str, data: SeqDataset, key: dict[str, Any]) -> Path:
    """``$SEQBENCH_CACHE/<kind>/<dataset>-<tag>-<hash of key>``: the key names everything the cached part
    depends on (JSON-serialisable values)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / kind / f"{data.name}-{tag}-{digest}"


def save_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """Write a cache entry into a temporary folder and rename it into place; an unwritable cache only costs
    time, so OSError is swallowed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
        save(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except OSError:
        pass


def teacher_layer(epochs: int, patience: int, loss: str) -> dict[str, Any]:
    return {"maxlen": TEACHER_MAXLEN, "max_epochs": epochs, "patience": patience, "loss": loss}


def sasrec_teacher(data: SeqDataset, train: Histories, ctx: RunContext, layer: dict[str, Any], use_cache: bool):
    """SASRec trained on exactly these train histories (or loaded from the cache), frozen and in eval mode.

    The one place a teacher is made: a trained-model store can replace the cache lookup here.
    """
    from seqbench.models import create_model

    teacher = create_model("sasrec", data.n_items, layer)
    path = cache_path("teachers", "sasrec", data, {"data": data.content_hash, "seed": ctx.seed,
                                         "teacher": dataclasses.asdict(teacher.config),
                                         "train": histories_digest(train)})
    if use_cache and (path / "weights.pt").is_file():
        teacher.load(path)
    else:
        # the teacher's curve is logged as teacher_* so it never mixes with the student's own train_loss; the
        # student's checkpointer is not the teacher's: its file holds the LLM loop's state (a teacher is cached
        # whole once trained, and retrains in minutes if a run dies before that)
        teacher_ctx = dataclasses.replace(ctx, checkpoint=None, log_metric=lambda name, value, step: ctx.metric(
            f"teacher_{name}", value, step))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            teacher.fit(data, train, teacher_ctx)
        if use_cache:
            save_atomic(path, teacher.save)
    return teacher
