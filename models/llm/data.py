"""Training examples and negatives for every LLM recommender
(docs/models.md#llm4rec-baselines-tallrec-llara-collm-a-llmrec)."""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError

TEACHER_MAXLEN = 128  # the teacher's window equals SASRec's position table
CENTRE_SAMPLE = (64, 256)  # head_init=centred: training examples and items whose initial states give the means


def drop_last(hist: Histories) -> Histories:
    """Every row without its last item (training input)."""
    keep = np.maximum(hist.lengths - 1, 0)
    new_off = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    src = np.repeat(hist.offsets[:-1], keep) + (np.arange(new_off[-1]) - np.repeat(new_off[:-1], keep))
    return Histories(hist.users, hist.items[src], hist.times[src], new_off)


def training_examples(train: Histories, autoregressive: bool, maxlen: int = TEACHER_MAXLEN):
    """(histories, targets): one example per user (history = train minus its last item, target = that item)
    or, autoregressive (App. E.3), one per position t >= 1 (history = the <= maxlen items before t)."""
    lens = train.lengths
    if not autoregressive:
        ok = np.flatnonzero(lens >= 2)
        sub = train.take(ok)
        return drop_last(sub), sub.items[sub.offsets[1:] - 1]
    n_ex = np.maximum(lens - 1, 0)
    row = np.repeat(np.arange(len(lens)), n_ex)
    t = np.arange(n_ex.sum()) - np.repeat(np.concatenate([[0], np.cumsum(n_ex)[:-1]]), n_ex) + 1
    start = train.offsets[row]
    hl = np.minimum(t, maxlen)
    new_off = np.concatenate([[0], np.cumsum(hl)]).astype(np.int64)
    src = np.repeat(start + t - hl, hl) + (np.arange(new_off[-1]) - np.repeat(new_off[:-1], hl))
    hist = Histories(train.users[row], train.items[src], train.times[src], new_off)
    return hist, train.items[start + t]


def sample_negatives(avoid: np.ndarray, targets: np.ndarray, n_items: int, k: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(B, k) distinct uniform negatives per row, outside ``avoid`` (B, L; 0 = padding) and never the target;
    vectorised rejection rounds, an exact per-row draw for the rare rows that keep clashing."""
    b = len(targets)
    neg = rng.integers(1, n_items + 1, size=(b, k))
    for _ in range(30):
        bad = (neg[:, :, None] == avoid[:, None, :]).any(-1) | (neg == targets[:, None])
        for j in range(1, k):
            bad[:, j] |= (neg[:, j:j + 1] == neg[:, :j]).any(1)
        if not bad.any():
            return neg
        neg = np.where(bad, rng.integers(1, n_items + 1, size=(b, k)), neg)
    for r in np.flatnonzero(bad.any(1)):
        pool = np.setdiff1d(np.arange(1, n_items + 1), np.concatenate([avoid[r], targets[r:r + 1]]))
        if len(pool) == 0:
            raise SeqbenchError(f"no negative item available for a training example of user row {r}")
        neg[r] = rng.choice(pool, size=k, replace=len(pool) < k)
    return neg


def training_candidates(avoid: np.ndarray, targets: np.ndarray, n_items: int, k: int,
                        rng: np.random.Generator) -> np.ndarray:
    """(B, 1 + k) training candidates: the target in column 0, then ``sample_negatives``' k fresh negatives."""
    return np.concatenate([targets[:, None], sample_negatives(avoid, targets, n_items, k, rng)], axis=1)


def in_batch_exclusions(avoid: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """(B, B * C) mask for ``in_batch_negatives``: True where column j of the flattened candidates (B, C) is
    another row's candidate that row b must not see as a negative, i.e. b's target or an item of b's history
    ``avoid`` (B, L; 0 = padding). A row's own candidates are never masked (its negatives already avoid both)."""
    b, c = cands.shape
    flat = cands.reshape(-1)
    bad = (flat[None, :, None] == avoid[:, None, :]).any(-1) | (flat[None, :] == cands[:, :1])
    own = np.arange(b * c)[None, :] // c == np.arange(b)[:, None]
    return bad & ~own


def centre_sample(n_examples: int, n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``head_init=centred``'s seeded sample: sorted rows of the training examples and sorted item ids whose
    initial states are averaged (``CENTRE_SAMPLE`` of each, or all there are)."""
    n_rows, n_ids = CENTRE_SAMPLE
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n_examples, min(n_rows, n_examples), replace=False))
    items = np.sort(rng.choice(np.arange(1, n_items + 1), min(n_ids, n_items), replace=False))
    return rows, items
