"""Ranking overlap under shuffling (after Klenitskiy et al., RecSys'24): mean Jaccard@10 between the
top-10 lists produced from the original and the shuffled test history. Lists are taken over each user's
persisted 100-candidate set, not the whole catalogue: every model scores exactly those (LLM models cannot
afford all items), so the figure is comparable across models. 1 = order-insensitive ranking."""

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
    in_a = np.zeros(scores_a.shape, dtype=bool)
    in_b = np.zeros(scores_b.shape, dtype=bool)
    np.put_along_axis(in_a, top_a, True, axis=1)
    np.put_along_axis(in_b, top_b, True, axis=1)
    return (in_a & in_b).sum(1) / (in_a | in_b).sum(1)


class Jaccard(ShuffleInfer):
    name = "jaccard"
    summary = "Jaccard@10 of top-10 candidate lists from original vs shuffled test histories"
    tasks = ("retrieval",)  # compares top-10 rankings, which a generated answer does not give

    def extra(self, pc: ProbeContext, hist: Histories, moved: Histories, original, probed) -> dict:
        jac = jaccard_at_k(original.scores, probed.scores)
        return {"jaccard_at_10": float(jac.mean()), "jaccard_at_10_median": float(np.median(jac)),
                "jaccard_over": "candidates"}
