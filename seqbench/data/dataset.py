"""A prepared dataset in memory: flat interaction arrays plus the persisted evaluation candidates."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from seqbench.data.histories import Histories

STAGES = ("train", "valid", "test")


@dataclass
class SeqDataset:
    """Rows sorted by (user, time); every user has >= 1 train item, then one valid and one test item.

    Users are 1..n_users (array row u-1), items 1..n_items (0 is padding). ``titles[i]`` is item i's
    title (``titles[0] == ""``). ``candidates[stage]`` is (n_users, 1 + negatives), target in column 0.
    """

    name: str
    meta: dict
    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    split: np.ndarray
    titles: np.ndarray
    candidates: dict[str, np.ndarray]
    descriptions: np.ndarray | None = None
    item_ids: np.ndarray | None = None  # raw id of item i at [i] ([0] = ""), for cross-dataset mapping
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def n_users(self) -> int:
        return int(self.user.max())

    @cached_property
    def n_items(self) -> int:
        return len(self.titles) - 1

    @cached_property
    def user_offsets(self) -> np.ndarray:
        """offsets[u-1]:offsets[u] are user u's rows (train..., valid, test)."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.user - 1, minlength=self.n_users))])

    @property
    def content_hash(self) -> str:
        return self.meta["content_hash"]

    def histories(self, stage: str, users: np.ndarray | None = None) -> Histories:
        """Model inputs for a stage: 'valid' -> train sequence, 'test' -> train + valid item,
        'train' -> the full train sequence (models derive their own training targets from it)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        drop = {"train": 2, "valid": 2, "test": 1}[stage]
        off = self.user_offsets
        users = np.arange(1, self.n_users + 1) if users is None else np.asarray(users, dtype=np.int64)
        starts, ends = off[users - 1], off[users] - drop
        lens = ends - starts
        new_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        src = np.repeat(starts, lens) + (np.arange(new_off[-1]) - np.repeat(new_off[:-1], lens))
        return Histories(users, self.item[src], self.timestamp[src], new_off)

    def targets(self, stage: str) -> np.ndarray:
        return self.candidates[stage][:, 0]

    @cached_property
    def train_item_counts(self) -> np.ndarray:
        """Interactions per item over train rows only (index = item id)."""
        return np.bincount(self.item[self.split == 0], minlength=self.n_items + 1)
