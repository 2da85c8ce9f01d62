"""Ranking overlap under shuffling (after Klenitskiy et al., RecSys'24): mean Jaccard@10 between the
top-10 lists produced from the original and the shuffled test history. Under ``--eval sampled`` the lists are
taken over each user's persisted 100-candidate set; under full ranking over the whole catalogue, as in
Klenitskiy et al. 1 = order-insensitive ranking."""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories

from .base import ProbeContext
from .shuffle_infer import ShuffleInfer

K = 10


def jaccard_at_k(scores_a: np.ndarray, scores_b: np.ndarray, k: int = K) -> np.ndarray:
    """Per-row Jaccard of the index sets of the k highest scores (stable order breaks ties)."""
    top_a = np.argsort(-scores_a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-scores_b, axis=1, kind="stable")[:, :k]
    return jaccard_of_lists(top_a, top_b)


def jaccard_of_lists(top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    """Per-row Jaccard of two (rows, k) arrays of distinct ids."""
    inter = (top_a[:, :, None] == top_b[:, None, :]).any(2).sum(1)
    return inter / (top_a.shape[1] + top_b.shape[1] - inter)


class Jaccard(ShuffleInfer):
    name = "jaccard"
    summary = "Jaccard@10 of top-10 lists (candidates, or all items under full ranking) from original vs shuffled"
    tasks = ("retrieval",)  # compares top-10 rankings, which a generated answer does not give

    def extra(self, pc: ProbeContext, hist: Histories, moved: Histories, original, probed) -> dict:
        jac = jaccard_of_lists(original.top_items[:, :K], probed.top_items[:, :K])
        return {"jaccard_at_10": float(jac.mean()), "jaccard_at_10_median": float(np.median(jac)),
                "jaccard_over": "candidates" if original.protocol == "sampled" else "all items"}
