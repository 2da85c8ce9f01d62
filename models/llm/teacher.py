"""The frozen SASRec teacher every CF-aware LLM recommender shares (docs/models.md#llm-backbone-and-llm-srec).

One teacher per trained-model identity (dataset, seed, teacher config, train histories, code version), kept in
the trained-model store: LLaRA, CoLLM, A-LLMRec and LLM-SRec on the same data and seed load the same SASRec;
``shuffle-train`` passes shuffled histories and gets its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.models import create_model

from ..store import ModelStore, histories_hash, identity
from .data import TEACHER_MAXLEN


def teacher_layer(epochs: int, patience: int, loss: str) -> dict[str, Any]:
    return {"maxlen": TEACHER_MAXLEN, "max_epochs": epochs, "patience": patience, "loss": loss}


def load_teacher(n_items: int, layer: dict[str, Any], path: Path):
    """The SASRec teacher saved with an LLM recommender (``LLMRecommender.save``), built with ``layer``."""
    teacher = create_model("sasrec", n_items, layer)
    teacher.load(path)
    return teacher


def sasrec_teacher(data: SeqDataset, train: Histories, ctx: RunContext, layer: dict[str, Any], use_cache: bool):
    """SASRec trained on exactly these train histories, or taken from the trained-model store, where it lives
    under the same kind of identity as any model ``seqbench run`` trains (name, config, dataset, train
    histories, seed, code version); ``use_cache=False`` retrains it. Its fit gets its own checkpoint (keyed by
    its identity), never the student's, whose file holds the LLM loop's state. Returns the store's
    :class:`~seqbench.models.store.Stored`: the model and its identity, which keys what is built on the teacher
    (A-LLMRec's stage 1)."""
    from seqbench.version import code_version  # read when the teacher is built (tests stand in another version)

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
