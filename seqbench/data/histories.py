"""Ragged user histories (flat arrays + offsets) so probes can permute them without Python loops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """Row index of every element of a flat ragged array."""
    lens = np.diff(offsets)
    return np.repeat(np.arange(len(lens)), lens)


@dataclass(frozen=True)
class Histories:
    """A batch of user histories in time order.

    ``items`` and ``times`` are flat; row ``b`` is ``items[offsets[b]:offsets[b+1]]``. ``times`` stays
    attached to *positions*: a probe that permutes items leaves ``times`` alone, which is how text prompts
    keep "Item No." and "Time" in place while titles move (docs/probes.md#options-windows-and-what-was-measured).
    """

    users: np.ndarray  # (B,) 1-based user ids
    items: np.ndarray  # (N,) int64 item ids, 1-based
    times: np.ndarray  # (N,) int64 timestamps [ms], aligned with positions
    offsets: np.ndarray  # (B+1,) int64

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, b: int) -> np.ndarray:
        return self.items[self.offsets[b] : self.offsets[b + 1]]

    def tail(self, window: int) -> Histories:
        """Keep the last ``window`` items of every row (the part a model actually consumes)."""
        lens = self.lengths
        keep = np.minimum(lens, window)
        new_off = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        within = np.arange(new_off[-1]) - np.repeat(new_off[:-1], keep)
        src = np.repeat(self.offsets[1:] - keep, keep) + within
        return Histories(self.users, self.items[src], self.times[src], new_off)

    def take(self, rows: np.ndarray) -> Histories:
        """Select a subset of rows (e.g. a batch) in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        lens = self.lengths[rows]
        new_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        within = np.arange(new_off[-1]) - np.repeat(new_off[:-1], lens)
        src = np.repeat(self.offsets[rows], lens) + within
        return Histories(self.users[rows], self.items[src], self.times[src], new_off)

    def with_items(self, items: np.ndarray) -> Histories:
        """Same rows and times, other items (used by permutation probes)."""
        assert items.shape == self.items.shape
        return Histories(self.users, items, self.times, self.offsets)

    def padded(self, maxlen: int, left: bool = True) -> np.ndarray:
        """(B, maxlen) int64 matrix of the last ``maxlen`` items, zero-padded on the left (or right)."""
        b = len(self)
        take = np.minimum(self.lengths, maxlen)
        out = np.zeros((b, maxlen), dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(take)[:-1]])
        within = np.arange(take.sum()) - np.repeat(start, take)
        src = np.repeat(self.offsets[1:] - take, take) + within
        col0 = (maxlen - take) if left else np.zeros_like(take)
        out[np.repeat(np.arange(b), take), np.repeat(col0, take) + within] = self.items[src]
        return out
