"""The interface every recommender implements, whatever its family (CF-SRec, LM-based, LLM4Rec)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.train.loop import FitReport  # the loop writes it; re-exported as part of the interface


@runtime_checkable
class Recommender(Protocol):
    """Trained on train histories; scores candidate sets; exposes its user representation.

    ``window`` is how many of the most recent history items the model consumes; permutation probes
    shuffle exactly that window (docs/probes.md).
    """

    window: int

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport: ...

    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray: ...

    def score_all(self, hist: Histories, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of every item for ``rows`` of ``hist`` (all rows by default), shape (rows, n_items + 1), column 0
        (padding) ignored: full-ranking evaluation. The evaluator asks for chunks of rows of one ``hist``, so a
        model with costly per-history state can compute it once for the whole ``hist``."""
        ...

    def user_representation(self, hist: Histories) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


@runtime_checkable
class UserRepPinning(Protocol):
    """A model whose input carries a CF user representation computed from the history besides the history
    itself (the [UserRep] token of CoLLM and A-LLMRec: SASRec's O_u). ``pinned_user_rep(hist)`` keeps that
    representation from ``hist`` while other histories of the same users are scored, so a rearrangement probe
    can tell the model reading the order from the CF representation carrying it. ``user_rep`` is False when
    this instance's input has no such representation (then pinning raises)."""

    user_rep: bool

    def pinned_user_rep(self, hist: Histories) -> AbstractContextManager[None]: ...
