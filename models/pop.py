"""Popularity floor: every user gets the same ranking, by training popularity (no history, no order).

A model has to beat this to show it learned anything personal. Counts come from the train Histories
passed to ``fit`` (train split only, so validation/test items cannot leak). Equally popular candidates get
equal scores; the shared evaluator counts ties pessimistically (docs/protocols.md#persisted-candidates-and-metrics),
which is intended: an unseen target tied with unseen negatives must not look like a lucky hit.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores

from .base import FitReport


@dataclass
class PopConfig:
    """No knobs today; kept a dataclass so configs, ``--set`` and run records treat pop like any model."""


class Pop:
    name: ClassVar[str] = "pop"
    config_cls: ClassVar[type[PopConfig]] = PopConfig
    window: int = 0  # reads no history, so permutation probes have nothing to shuffle

    def __init__(self, n_items: int, config: PopConfig | None = None):
        self.n_items = n_items
        self.config = config or PopConfig()
        self.counts = np.zeros(n_items + 1, dtype=np.int64)

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
        start = time.perf_counter()
        counts = np.bincount(train.items, minlength=self.n_items + 1)
        self.counts = counts[: self.n_items + 1].astype(np.int64)
        valid = self.score(data.histories("valid"), data.candidates["valid"])
        ndcg = float(np.mean(metrics_from_ranks(ranks_from_scores(valid))["ndcg@10"]))
        secs = time.perf_counter() - start
        return FitReport(best_epoch=0, best_valid=ndcg, epochs_run=0, seconds=secs, seconds_to_best=secs)

    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray:
        cands = np.asarray(candidates, dtype=np.int64)
        if len(cands) != len(hist):
            raise ValueError(f"{len(hist)} histories but {len(cands)} candidate rows")
        return self.counts[cands].astype(np.float32)

    def score_all(self, hist: Histories, rows: np.ndarray | None = None) -> np.ndarray:
        """Every item's training count for every user (full ranking; column 0 is padding)."""
        n = len(hist) if rows is None else len(rows)
        return np.broadcast_to(self.counts.astype(np.float32), (n, self.n_items + 1)).copy()

    def user_representation(self, hist: Histories) -> np.ndarray:
        """The same (1-dim) vector for every user: pop has no user state."""
        return np.ones((len(hist), 1), dtype=np.float32)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "counts.npy", self.counts)
        meta = {"model": self.name, "n_items": self.n_items, "config": dataclasses.asdict(self.config)}
        (path / "config.json").write_text(json.dumps(meta, indent=2))

    def load(self, path: Path) -> None:
        counts = np.load(Path(path) / "counts.npy")
        if len(counts) != self.n_items + 1:
            raise ValueError(f"saved counts cover {len(counts) - 1} items, this model has {self.n_items}")
        self.counts = counts.astype(np.int64)
