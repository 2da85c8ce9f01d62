"""Seeded, vectorised permutations of history windows, shared by every permutation probe."""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories, segment_ids


def permute_tail(hist: Histories, window: int, seed: int) -> Histories:
    """Shuffle the items of the last ``window`` positions of every row; older items and all timestamps
    stay where they are (so prompts keep "Item No." and "Time" in place while titles move).

    The random keys depend only on the seed and the row layout, so every model with the same window sees
    exactly the same permutation.
    """
    n = len(hist.items)
    seg = segment_ids(hist.offsets)
    idx = np.arange(n)
    from_end = hist.offsets[seg + 1] - 1 - idx
    in_window = from_end < window
    keys = np.random.default_rng(seed).random(n)
    # Within a row: positions outside the window keep their order and come first (they are older).
    order = np.lexsort((np.where(in_window, keys, idx.astype(np.float64)), in_window, seg))
    return hist.with_items(hist.items[order])
