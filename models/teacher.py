"""The frozen SASRec teacher every CF-aware LLM recommender shares (spec MODELS.md §3.1 "Use as CF-SRec"), and
the on-disk cache for pre-trained parts that are not recommenders (A-LLMRec's stage 1, keyed by the teacher's
identity; frozen text embeddings).

One teacher per trained-model identity (dataset, seed, teacher config, train histories, code version), kept in
the trained-model store: LLaRA, CoLLM, A-LLMRec and LLM-SRec on the same data and seed load the same SASRec;
``shuffle-train`` passes shuffled histories and gets its own.
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

import torch

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.llm.backbone import cache_root

from .llm_data import TEACHER_MAXLEN


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
    """SASRec trained on exactly these train histories, or taken from the trained-model store, where it lives
    under the same kind of identity as any model ``seqbench run`` trains (name, config, dataset, train
    histories, seed, code version); ``use_cache=False`` retrains it. Its fit gets its own checkpoint (keyed by
    its identity), never the student's, whose file holds the LLM loop's state. Returns the store's
    :class:`~seqbench.models.store.Stored`: the model and its identity, which keys what is built on the teacher
    (A-LLMRec's stage 1)."""
    from seqbench.models import create_model
    from seqbench.version import code_version

    from .store import ModelStore, histories_hash, identity

    teacher = create_model("sasrec", data.n_items, layer)  # built once: a second init would shift the global RNG

    def fit(model, fit_ctx: RunContext):
        # the teacher's curve is logged as teacher_* so it never mixes with the student's own train_loss
        teacher_ctx = dataclasses.replace(fit_ctx, log_metric=lambda name, value, step: ctx.metric(
            f"teacher_{name}", value, step))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            return model.fit(data, train, teacher_ctx)

    config = dataclasses.asdict(teacher.config)
    ident = identity("sasrec", config, data.content_hash, histories_hash(train), ctx.seed, code_version())
    meta = {"model": "sasrec", "role": "teacher", "dataset": data.name, "seed": ctx.seed, "config": config}
    return ModelStore().get_or_fit(ident, lambda: teacher, fit, dataclasses.replace(ctx, checkpoint=None), meta,
                                   retrain=not use_cache)
