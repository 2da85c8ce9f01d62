"""Transition vs non-transition users (docs/probes.md).

Count(a->b) = how often b directly follows a, over all users' training sequences (global
counts). t-score(u) = sum of Count over the user's consecutive train pairs / (n_u - 1); users with a
single train item have no pair and get 0. Users are sorted by t-score (ties by user id); the top half is
the Transition set. Each set is evaluated on the original test inputs; the sets hold different users, so
they are compared with Mann-Whitney U.
"""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories, segment_ids

from .base import ProbeContext, ProbeResult, group_result, subset


def _pairs(hist: Histories) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, a, b) for every consecutive pair a -> b inside a row."""
    seg = segment_ids(hist.offsets)
    same_row = seg[1:] == seg[:-1]
    return seg[1:][same_row], hist.items[:-1][same_row].astype(np.int64), hist.items[1:][same_row].astype(np.int64)


def t_scores(hist: Histories, counts_from: Histories | None = None) -> np.ndarray:
    """t-score of every row of ``hist`` with transition counts taken over all rows of ``counts_from``
    (default: ``hist`` itself)."""
    rows, a, b = _pairs(hist)
    _, ca, cb = _pairs(hist if counts_from is None else counts_from)
    if len(a) == 0 or len(ca) == 0:
        return np.zeros(len(hist))
    width = int(max(hist.items.max(), ca.max(), cb.max())) + 1
    counted, counts = np.unique(ca * width + cb, return_counts=True)
    key = a * width + b
    pos = np.minimum(np.searchsorted(counted, key), len(counted) - 1)
    per_pair = np.where(counted[pos] == key, counts[pos], 0).astype(np.float64)
    sums = np.bincount(rows, weights=per_pair, minlength=len(hist))
    pairs = np.maximum(hist.lengths - 1, 0)
    return np.divide(sums, pairs, out=np.zeros(len(hist)), where=pairs > 0)


class Transition:
    name = "transition"
    summary = "metrics for the top-50% t-score users (Transition set) vs the rest"
    option_help: dict[str, str] = {}

    def run(self, pc: ProbeContext) -> ProbeResult:
        train = pc.data.histories("train")
        # leave-last-out: every user is a test user, scored on its training sequence (docs/probes.md); temporal:
        # test users are scored on their test inputs, with pair counts from the training sequences
        scores = t_scores(train) if pc.data.split_kind == "leave-last-out" else \
            t_scores(pc.data.histories("test"), counts_from=train)
        order = np.lexsort((np.arange(len(scores)), -scores))
        top = np.zeros(len(scores), dtype=bool)
        top[order[: len(scores) // 2]] = True
        full = pc.evaluate()
        groups = {"transition": subset(full, top), "non_transition": subset(full, ~top)}
        gap = groups["transition"].summary["ndcg@10"] - groups["non_transition"].summary["ndcg@10"]
        return group_result(self.name, groups, ("transition", "non_transition"), pc.run.seed,
                            t_score_mean=float(scores.mean()), t_score_median=float(np.median(scores)),
                            t_score_threshold=float(scores[order[len(scores) // 2 - 1]]) if len(scores) > 1
                            else 0.0, gap_ndcg_at_10=float(gap),
                            n_transition=int(top.sum()), n_non_transition=int((~top).sum()))
