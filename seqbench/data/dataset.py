"""A prepared dataset in memory: flat interaction arrays plus the persisted evaluation candidates."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from seqbench.data.histories import Histories

STAGES = ("train", "valid", "test")
# Split code of each interaction row: trained on, a validation / test target, or input read at evaluation only.
TRAIN, VALID, TEST, INPUT = 0, 1, 2, 3
STAGE_CODES = {"valid": VALID, "test": TEST}


@dataclass
class SeqDataset:
    """Rows sorted by (user, time), each with a split code (``seqbench.data.preprocess``: train, valid or test
    target, or evaluation-only input).

    Users are 1..n_users (array row u-1), items 1..n_items (0 is padding). ``titles[i]`` is item i's
    title (``titles[0] == ""``). ``candidates[stage]`` has one row per user with a target in that stage
    (``stage_users``; every user under leave-last-out), ascending, target in column 0.
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

    @property
    def split_kind(self) -> str:
        """How the dataset was split: leave-last-out or temporal (``seqbench data prepare --split``)."""
        return str(self.meta.get("params", {}).get("split", "leave-last-out"))

    def _target_rows(self, stage: str) -> np.ndarray:
        key = ("target_rows", stage)
        if key not in self._cache:
            self._cache[key] = np.flatnonzero(self.split == STAGE_CODES[stage])
        return self._cache[key]

    def stage_users(self, stage: str) -> np.ndarray:
        """Users with a target in ``stage`` (valid | test), ascending: the rows of ``candidates[stage]``; for
        ``train``, the users with at least one training event."""
        if stage == "train":
            return np.flatnonzero(np.bincount(self.user[self.split == TRAIN], minlength=self.n_users + 1))
        return self.user[self._target_rows(stage)]

    def histories(self, stage: str, users: np.ndarray | None = None) -> Histories:
        """Model inputs for a stage: 'valid' / 'test' -> every event of the user before its target in that
        stage (leave-last-out: the train sequence / train + valid item), 'train' -> the training events of every
        user that has some (models derive their own training targets from them). ``users`` picks rows of
        ``stage_users(stage)`` (ascending for 'train')."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        off = self.user_offsets
        if stage == "train":
            train = self.split == TRAIN
            if users is None:
                users = self.stage_users("train")
            else:  # rows come out in user order
                users = np.unique(np.asarray(users, dtype=np.int64))
                train &= np.isin(self.user, users)
            rows = np.flatnonzero(train)
            lens = np.bincount(self.user[rows], minlength=self.n_users + 1)[users]
            new_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            return Histories(np.asarray(users, dtype=np.int64), self.item[rows], self.timestamp[rows], new_off)
        targets = self._target_rows(stage)
        all_users = self.user[targets]
        if users is not None:
            users = np.asarray(users, dtype=np.int64)
            pos = np.searchsorted(all_users, users)
            if (pos >= len(all_users)).any() or (all_users[np.minimum(pos, len(all_users) - 1)] != users).any():
                raise ValueError(f"some users have no {stage} target")
            targets = targets[pos]
        else:
            users = all_users
        starts, ends = off[users - 1], targets
        lens = ends - starts
        new_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        src = np.repeat(starts, lens) + (np.arange(new_off[-1]) - np.repeat(new_off[:-1], lens))
        return Histories(users, self.item[src], self.timestamp[src], new_off)

    def targets(self, stage: str) -> np.ndarray:
        return self.candidates[stage][:, 0]

    @cached_property
    def train_item_counts(self) -> np.ndarray:
        """Interactions per item over train rows only (index = item id)."""
        return np.bincount(self.item[self.split == TRAIN], minlength=self.n_items + 1)
