"""Transition vs non-transition users (spec MODELS.md §8.4).

Count(a->b) = how often b directly follows a, over all users' training sequences (global counts, the
sheet's [REC]). t-score(u) = sum of Count over the user's consecutive train pairs / (n_u - 1); users with a
single train item have no pair and get 0. Users are sorted by t-score (ties by user id); the top half is
the Transition set. Each set is evaluated on the original test inputs; the sets hold different users, so
they are compared with Mann-Whitney U.
"""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories, segment_ids

from .base import ProbeContext, ProbeResult, evaluate_test, group_result, subset


def t_scores(hist: Histories) -> np.ndarray:
    """t-score of every row of ``hist`` with transition counts taken over all its rows."""
    seg = segment_ids(hist.offsets)
    same_row = seg[1:] == seg[:-1]
    a = hist.items[:-1][same_row].astype(np.int64)
    b = hist.items[1:][same_row].astype(np.int64)
    if len(a) == 0:
        return np.zeros(len(hist))
    key = a * (int(hist.items.max()) + 1) + b
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    per_pair = counts[inverse].astype(np.float64)
    sums = np.bincount(seg[1:][same_row], weights=per_pair, minlength=len(hist))
    pairs = np.maximum(hist.lengths - 1, 0)
    return np.divide(sums, pairs, out=np.zeros(len(hist)), where=pairs > 0)


class Transition:
    name = "transition"
    summary = "metrics for the top-50% t-score users (Transition set) vs the rest"
    option_help: dict[str, str] = {}

    def run(self, pc: ProbeContext) -> ProbeResult:
        scores = t_scores(pc.data.histories("train"))
        order = np.lexsort((np.arange(len(scores)), -scores))
        top = np.zeros(len(scores), dtype=bool)
        top[order[: len(scores) // 2]] = True
        full = evaluate_test(pc.model, pc.data)
        groups = {"transition": subset(full, top), "non_transition": subset(full, ~top)}
        gap = groups["transition"].summary["ndcg@10"] - groups["non_transition"].summary["ndcg@10"]
        return group_result(self.name, groups, ("transition", "non_transition"), pc.run.seed,
                            t_score_mean=float(scores.mean()), t_score_median=float(np.median(scores)),
                            t_score_threshold=float(scores[order[len(scores) // 2 - 1]]) if len(scores) > 1
                            else 0.0, gap_ndcg_at_10=float(gap),
                            n_transition=int(top.sum()), n_non_transition=int((~top).sum()))
