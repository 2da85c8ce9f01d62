"""Scores each user's persisted candidate set with a model and turns ranks into per-user metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqbench.data.histories import Histories
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores, summarize


@dataclass
class EvalResult:
    users: np.ndarray  # 1-based user ids, aligned with every per-user array
    ranks: np.ndarray
    per_user: dict[str, np.ndarray]
    scores: np.ndarray | None = None  # (users, candidates), target first; kept for ranking-overlap probes

    @property
    def summary(self) -> dict[str, float]:
        return summarize(self.per_user)


def evaluate(model, hist: Histories, candidates: np.ndarray) -> EvalResult:
    """``candidates`` rows align with ``hist`` rows; the target is column 0. The model batches itself."""
    if len(candidates) != len(hist):
        raise ValueError(f"{len(hist)} histories but {len(candidates)} candidate rows")
    scores = model.score(hist, candidates)
    ranks = ranks_from_scores(scores)
    return EvalResult(users=hist.users, ranks=ranks, per_user=metrics_from_ranks(ranks), scores=scores)
