"""Ranking metrics kept per user (Elliot-style), so paired tests come for free."""

from __future__ import annotations

import numpy as np

METRIC_KEYS = ("ndcg@10", "ndcg@20", "hr@10", "hr@20", "hr@1")


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """0-based rank of the target (column 0) among its candidates, with pessimistic ties.

    Any negative scoring *equal to or higher than* the target counts as ranked above it, so a model that
    gives every candidate the same score gets the worst rank, not a lucky one. NaN scores rank worst too.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = scores[:, :1]
    neg = scores[:, 1:]
    above = (neg >= target) | np.isnan(target) | np.isnan(neg)
    return above.sum(axis=1)


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user HR@K = 1[r < K] and NDCG@K = 1[r < K] / log2(r + 2)."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in (10, 20):
        hit = (r < k).astype(np.float64)
        out[f"ndcg@{k}"] = hit / np.log2(r + 2.0)
        out[f"hr@{k}"] = hit
    out["hr@1"] = (r < 1).astype(np.float64)
    return {key: out[key] for key in METRIC_KEYS}


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in per_user.items()}
