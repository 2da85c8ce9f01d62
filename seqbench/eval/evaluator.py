"""Scores each user's persisted candidate set with a model and turns ranks into per-user metrics.

Two tasks share the protocol (docs/MODELS.md §7): ``retrieval`` ranks 1 target + 99 negatives (primary metric
NDCG@10); ``generation`` lists 1 target + 19 negatives (the persisted ``*_title`` sets) and scores HR@1. A model
trained for generation (``model.generation``) decodes a title that is matched to a candidate; any other model
ranks the same 20 candidates, which gives the paper's SASRec HR@1 reference row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqbench.data.histories import Histories
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores, summarize

TASKS = ("retrieval", "generation")
CANDIDATE_SETS = {"retrieval": {"valid": "valid", "test": "test"},
                  "generation": {"valid": "valid_title", "test": "test_title"}}
PRIMARY_METRIC = {"retrieval": "ndcg@10", "generation": "hr@1"}


def candidate_set(stage: str, task: str = "retrieval") -> str:
    """Name of the persisted candidate matrix for ``stage`` (valid | test) in ``task``."""
    return CANDIDATE_SETS[task][stage]


@dataclass
class EvalResult:
    users: np.ndarray  # 1-based user ids, aligned with every per-user array
    ranks: np.ndarray  # generated answers: 0 = hit, 1 = another candidate or invalid
    per_user: dict[str, np.ndarray]
    scores: np.ndarray | None = None  # (users, candidates), target first; kept for ranking-overlap probes
    metric: str = "ndcg@10"  # the per-user metric probes test on (hr@1 in the generation task)
    outputs: list[str] | None = None  # generated texts (generation task, generating models)

    @property
    def summary(self) -> dict[str, float]:
        return summarize(self.per_user)


def evaluate(model, hist: Histories, candidates: np.ndarray, task: str = "retrieval") -> EvalResult:
    """``candidates`` rows align with ``hist`` rows; the target is column 0. The model batches itself."""
    if len(candidates) != len(hist):
        raise ValueError(f"{len(hist)} histories but {len(candidates)} candidate rows")
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; use {' or '.join(TASKS)}")
    if task == "generation" and getattr(model, "generation", False):
        out = model.evaluate_generation(hist, candidates)
        hit = np.asarray(out["hr@1"], dtype=np.float64)
        return EvalResult(users=hist.users, ranks=(hit == 0).astype(np.int64),
                          per_user={"hr@1": hit, "invalid": np.asarray(out["invalid"], dtype=np.float64)},
                          metric="hr@1", outputs=list(out["outputs"]))
    scores = model.score(hist, candidates)
    ranks = ranks_from_scores(scores)
    return EvalResult(users=hist.users, ranks=ranks, per_user=metrics_from_ranks(ranks), scores=scores,
                      metric=PRIMARY_METRIC[task])
