"""Dataset-level descriptive statistics (`seqbench data stats`)."""

from __future__ import annotations

import numpy as np

from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.data.permutation import tied_positions
from seqbench.data.rules import rules_ratio

TIE_WINDOW = 10  # the common probe window of the studies


def dataset_stats(data: SeqDataset) -> dict:
    lens = np.diff(data.user_offsets)
    n = len(data.item)
    return {
        "name": data.name,
        "source": data.meta.get("source", {}).get("kind", "?"),
        "users": data.n_users,
        "items": data.n_items,
        "interactions": int(n),
        "density": float(n / (data.n_users * data.n_items)),
        "seq_len_mean": float(lens.mean()),
        "seq_len_median": float(np.median(lens)),
        "seq_len_min": int(lens.min()),
        "seq_len_max": int(lens.max()),
        "items_without_title": int(sum(1 for t in data.titles[1:] if not t)),
        "content_hash": data.content_hash,
        **rules_ratio(Histories(np.arange(1, data.n_users + 1), data.item, data.timestamp, data.user_offsets)),
        **tie_stats(data),
    }


def tie_stats(data: SeqDataset, window: int = TIE_WINDOW) -> dict:
    """How much of the recorded order is a tie-break: the share of a user's adjacent events with the same
    timestamp, and the share of test users whose probe window (last ``window`` items of the test input, or the
    whole input) holds events a tie-shuffle can permute. ``tie_order`` is how prepare ordered ties."""
    everything = Histories(np.arange(1, data.n_users + 1), data.item, data.timestamp, data.user_offsets)
    same_user = np.diff(np.r_[0, np.repeat(np.arange(data.n_users), np.diff(data.user_offsets))]) == 0
    pairs = same_user[1:]
    tied_pairs = pairs & (everything.times[1:] == everything.times[:-1])
    test = data.histories("test")

    def users_with_ties(w: int | None) -> float:
        tied = tied_positions(test, w)
        if not len(tied):
            return 0.0
        return float((np.add.reduceat(tied, test.offsets[:-1]) > 0).mean())

    params = data.meta.get("params", {})
    order = params.get("ties", "file")
    return {
        "tie_order": order if order == "file" else f"{order} (seed {params.get('tie_seed', 0)})",
        "tied_adjacent_pairs": float(tied_pairs.sum() / max(pairs.sum(), 1)),
        f"test_users_with_ties_in_last_{window}": users_with_ties(window),
        "test_users_with_ties_in_history": users_with_ties(None),
    }
