"""Dataset-level descriptive statistics (`seqbench data stats`)."""

from __future__ import annotations

import numpy as np

from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.data.rules import rules_ratio


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
    }
