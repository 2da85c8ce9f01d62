"""Dataset-level order signal: the sequential-rules ratio (after Klenitskiy et al., RecSys'24).

A rule is an n-gram of consecutive items, antecedent (first n-1 items) -> consequent (last item). Its
support is how often the n-gram occurs over all users' sequences; its confidence is support divided by how
often the antecedent occurs followed by any item. Rules with support > 5 and confidence > 0.1 are counted
in the data and in a copy whose every sequence is shuffled once (fixed seed); ratio = shuffled / original.
Near 1: order carries little beyond co-occurrence; lower = more sequential. The ratio is add-one smoothed,
(shuffled + 1) / (original + 1), so that small or order-free data with no rule in either copy reads as 1
(shuffling removed nothing) instead of 0/0; with the thousands of rules of real data the +1 is negligible.
"""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories, segment_ids
from seqbench.data.permutation import permute_all

MIN_SUPPORT = 5
MIN_CONFIDENCE = 0.1


def _ngram_keys(hist: Histories, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer keys of every within-row n-gram and of its antecedent (n-1)-gram."""
    seg = segment_ids(hist.offsets)
    m = len(hist.items)
    if m < n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ok = seg[: m - n + 1] == seg[n - 1 :]
    base = int(hist.items.max()) + 1
    ante = np.zeros(int(ok.sum()), dtype=np.int64)
    for j in range(n - 1):  # n is 2 or 3: a loop over gram positions, not items
        ante = ante * base + hist.items[j : m - n + 1 + j][ok]
    full = ante * base + hist.items[n - 1 :][ok]
    return full, ante


def count_rules(hist: Histories, n: int, min_support: int = MIN_SUPPORT,
                min_confidence: float = MIN_CONFIDENCE) -> int:
    full, ante = _ngram_keys(hist, n)
    if len(full) == 0:
        return 0
    grams, first, support = np.unique(full, return_index=True, return_counts=True)
    ante_keys, ante_counts = np.unique(ante, return_counts=True)
    conf = support / ante_counts[np.searchsorted(ante_keys, ante[first])]
    return int(((support > min_support) & (conf > min_confidence)).sum())


def rules_ratio(hist: Histories, seed: int = 0) -> dict:
    """Rule counts for 2- and 3-grams in the data and in its shuffled copy, and their ratios."""
    shuffled = permute_all(hist, seed)
    out = {}
    for n in (2, 3):
        orig, shuf = count_rules(hist, n), count_rules(shuffled, n)
        out[f"rules_{n}gram_original"] = orig
        out[f"rules_{n}gram_shuffled"] = shuf
        out[f"rules_{n}gram_ratio"] = (shuf + 1) / (orig + 1)
    return out
