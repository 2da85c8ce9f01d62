"""Seeded, vectorised rearrangements of history windows, shared by every permutation probe.

All of them move *items* only: timestamps stay attached to positions, so prompt builders keep "Item No."
and "Time" in place while titles move (docs/probes.md#options-windows-and-what-was-measured).
"""

from __future__ import annotations

import numpy as np

from seqbench.data.histories import Histories, segment_ids

PERMUTATION_SEED = 20250213  # fixed across models and runs: one permutation per dataset and window


def _window_sort(hist: Histories, window: int, keys: np.ndarray) -> Histories:
    """Reorder each row's last ``window`` items by ``keys``; older items keep their order and place."""
    n = len(hist.items)
    seg = segment_ids(hist.offsets)
    idx = np.arange(n)
    in_window = (hist.offsets[seg + 1] - 1 - idx) < window
    order = np.lexsort((np.where(in_window, keys, idx.astype(np.float64)), in_window, seg))
    return hist.with_items(hist.items[order])


def permute_tail(hist: Histories, window: int, seed: int = PERMUTATION_SEED) -> Histories:
    """Shuffle the last ``window`` items of every row. The random keys depend only on the seed and the
    row layout, so every model with the same window sees exactly the same permutation."""
    return _window_sort(hist, window, np.random.default_rng(seed).random(len(hist.items)))


def reverse_tail(hist: Histories, window: int) -> Histories:
    """Reverse the last ``window`` items of every row."""
    return _window_sort(hist, window, -np.arange(len(hist.items), dtype=np.float64))


def swap_last_two(hist: Histories) -> Histories:
    """Swap the two most recent items (rows of length 1 unchanged): moves recency, keeps the rest."""
    return reverse_tail(hist, 2)


def permute_all(hist: Histories, seed: int = PERMUTATION_SEED) -> Histories:
    """Shuffle every row entirely (shuffled training permutes whole train sequences once)."""
    return permute_tail(hist, int(hist.lengths.max(initial=1)), seed)


def permute_ties(hist: Histories, window: int, seed: int = PERMUTATION_SEED) -> Histories:
    """Shuffle, within the last ``window`` items of every row, only items that share a timestamp: the order
    among tied events is an artefact of how the data was prepared, not something the data records.
    Items with distinct timestamps keep their places (rows are in time order)."""
    n = len(hist.items)
    seg = segment_ids(hist.offsets)
    idx = np.arange(n)
    in_window = (hist.offsets[seg + 1] - 1 - idx) < window
    rand = np.random.default_rng(seed).random(n)
    order = np.lexsort((np.where(in_window, rand, 0.0), np.where(in_window, hist.times, idx), in_window, seg))
    return hist.with_items(hist.items[order])


def tied_positions(hist: Histories, window: int | None = None) -> np.ndarray:
    """Per position: whether it shares its timestamp with a neighbour of the same row (within the last
    ``window`` items of the row when given)."""
    seg = segment_ids(hist.offsets)
    same = (seg[1:] == seg[:-1]) & (hist.times[1:] == hist.times[:-1])
    tied = np.zeros(len(hist.items), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if window is not None:
        idx = np.arange(len(hist.items))
        tied &= (hist.offsets[seg + 1] - 1 - idx) < window
        # a tie with the item just outside the window cannot be permuted inside it
        first = hist.offsets[seg + 1] - np.minimum(hist.lengths[seg], window)
        alone = (idx == first) & ~np.r_[same, False]
        tied &= ~alone
    return tied
