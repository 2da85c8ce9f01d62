"""Representation similarity (docs/probes.md): per user, the cosine between the user representation
of the original and of the shuffled test input, same trained model. The scoring vector is used; models that
also expose a raw one (``raw_user_representation``, e.g. an LLM's hidden state before its projection) get
it reported too. The NDCG comparison of the two inputs is the same as shuffle-infer's."""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories

from .base import ProbeContext
from .shuffle_infer import ShuffleInfer


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.divide((a * b).sum(1), denom, out=np.ones(len(a)), where=denom > 0)
    # rounding puts about a quarter of identical pairs at 1 + 2e-16, outside the histogram's [-1, 1] range
    return np.clip(cos, -1.0, 1.0)


def describe(values: np.ndarray, prefix: str) -> dict:
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    hist, edges = np.histogram(values, bins=20, range=(-1.0, 1.0))
    return {f"{prefix}_mean": float(values.mean()), f"{prefix}_median": float(q[2]),
            f"{prefix}_std": float(values.std()),
            f"{prefix}_quantiles": {"p05": q[0], "p25": q[1], "p50": q[2], "p75": q[3], "p95": q[4]},
            f"{prefix}_histogram": {"counts": hist.tolist(), "edges": edges.round(3).tolist()}}


class Cosine(ShuffleInfer):
    name = "cosine"
    summary = "cosine between user representations of original and shuffled test histories"
    tasks = ("retrieval",)  # compares [UserOut]/O_u vectors, which a generation model does not have

    def extra(self, pc: ProbeContext, hist: Histories, moved: Histories, original, probed) -> dict:
        stats = describe(rowwise_cosine(pc.model.user_representation(hist),
                                        pc.model.user_representation(moved)), "cosine")
        raw = getattr(pc.model, "raw_user_representation", None)
        if raw is not None:
            stats.update(describe(rowwise_cosine(raw(hist), raw(moved)), "cosine_raw"))
        return stats
