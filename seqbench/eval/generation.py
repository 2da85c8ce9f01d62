"""Scoring of the title-generation task (docs/MODELS.md §7, paper Tables 1 and 4): which of the 20 listed
candidate titles did a generated text name?

Matching rule (the spec's [REC], stricter than A-LLMRec's substring test and close to LLaRA's "valid" output):
1. Normalise output and titles: Unicode NFKC, case-folded, every run of non-alphanumeric characters (quotes,
   brackets, punctuation, whitespace) turned into one space, trimmed; a title that normalises to nothing never
   matches.
2. A candidate is *named* when its normalised title occurs in the normalised output on word boundaries.
3. A named title contained in another named title is dropped ("Heat" inside "Heat 2"): the longer one was meant.
4. Exactly one named candidate left: that is the prediction. None, or several: the output is *invalid*.

HR@1 counts a hit iff the prediction is the target; invalid outputs count as misses and their share is reported.
Candidates with identical normalised titles cannot be told apart: naming one names all, so the output is invalid.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

INVALID = -1
_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()


def match_candidate(output: str, titles: Sequence[str]) -> int:
    """Index of the one candidate the output names, or ``INVALID`` (-1)."""
    out = f" {normalise(output)} "
    norm = [normalise(t) for t in titles]
    named = {i for i, t in enumerate(norm) if t and f" {t} " in out}
    named = {i for i in named if not any(j != i and norm[i] != norm[j] and f" {norm[i]} " in f" {norm[j]} "
                                         for j in named)}
    return next(iter(named)) if len(named) == 1 else INVALID


def score_generation(outputs: Sequence[str], candidate_titles: Sequence[Sequence[str]],
                     targets: Sequence[int]) -> dict[str, np.ndarray | float]:
    """Per-user ``hr@1`` (0/1) and ``invalid`` (0/1) arrays plus their means; ``targets`` = index of the target
    in each row's candidate list."""
    if not len(outputs) == len(candidate_titles) == len(targets):
        raise ValueError(f"{len(outputs)} outputs, {len(candidate_titles)} candidate lists, {len(targets)} targets")
    pred = np.array([match_candidate(o, c) for o, c in zip(outputs, candidate_titles, strict=True)], dtype=np.int64)
    hit = (pred == np.asarray(targets, dtype=np.int64)).astype(np.float64)
    invalid = (pred == INVALID).astype(np.float64)
    return {"hr@1": hit, "invalid": invalid, "hr@1_mean": float(hit.mean()) if len(hit) else 0.0,
            "invalid_share": float(invalid.mean()) if len(invalid) else 0.0}
