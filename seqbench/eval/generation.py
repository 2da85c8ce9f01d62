"""Scoring of the title-generation task (paper Tables 1 and 4; docs/models.md, "Title generation"): which of the 20
listed candidate titles did a generated text name?

Titles are compared as the prompt shows them (``seqbench.data.titles.clean_title``: a missing title reads "Empty
title"), so a target without a title can be named like any other. The data layer draws title candidates whose
normalised titles all differ with ``seqbench.data.titles.title_keys``.

Matching rule (seqbench's, stricter than A-LLMRec's substring test and close to LLaRA's "valid" output):
1. Normalise output and titles: Unicode NFKC, case-folded, every run of non-alphanumeric characters (quotes,
   brackets, punctuation, whitespace) turned into one space, trimmed; a title that normalises to nothing never
   matches.
2. A candidate is *named* when its normalised title occurs in the normalised output on word boundaries.
3. A named title contained in another named title is dropped ("Heat" inside "Heat 2"): the longer one was meant.
4. Exactly one named candidate left: that is the prediction. None, or several: the output is *invalid*.

Three HR@1 readings of the same outputs (``score_generation``):
* ``hr@1`` (strict, seqbench's primary metric): hits / all users; an invalid output is a miss.
* ``hr@1_valid`` (LLaRA's ``calculate_hr1``): hits / users whose output is valid (names exactly one candidate);
  0 when no output is valid, as LLaRA's code returns. Not a per-user metric: a ratio of two per-user sums.
* ``hr@1_lenient`` (A-LLMRec's ``eval.py``): a hit when the target's normalised title occurs anywhere in the
  normalised output, whatever else it names (A-LLMRec tests ``answer in prediction`` on lower-cased strings,
  no word boundaries); over all users.
Candidates with identical normalised titles cannot be told apart (naming one names all: invalid); prepared
datasets therefore list title candidates whose normalised titles all differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqbench.data.titles import normalise

INVALID = -1


def match_candidate(output: str, titles: Sequence[str]) -> int:
    """Index of the one candidate the output names, or ``INVALID`` (-1)."""
    out = f" {normalise(output)} "
    norm = [normalise(t) for t in titles]
    named = {i for i, t in enumerate(norm) if t and f" {t} " in out}
    named = {i for i in named if not any(j != i and norm[i] != norm[j] and f" {norm[i]} " in f" {norm[j]} "
                                         for j in named)}
    return next(iter(named)) if len(named) == 1 else INVALID


def lenient_hit(output: str, target_title: str) -> bool:
    """A-LLMRec's reading: the target's normalised title occurs anywhere in the normalised output."""
    target = normalise(target_title)
    return bool(target) and target in normalise(output)


def valid_only_hr(hit: np.ndarray, invalid: np.ndarray) -> float:
    """LLaRA's HR@1: hits over the users whose output is valid (0.0 when none is)."""
    valid = float(len(invalid) - np.sum(invalid))
    return float(np.sum(hit)) / valid if valid > 0 else 0.0


def score_generation(outputs: Sequence[str], candidate_titles: Sequence[Sequence[str]],
                     targets: Sequence[int]) -> dict[str, np.ndarray | float]:
    """Per-user ``hr@1`` (strict), ``hr@1_lenient`` and ``invalid`` (0/1 arrays) plus the summaries
    ``hr@1_mean``, ``hr@1_valid`` (LLaRA's valid-only HR@1), ``hr@1_lenient_mean`` and ``invalid_share``;
    ``targets`` = index of the target in each row's candidate list. Titles are compared as given: pass the
    titles the prompt showed (``seqbench.data.titles.clean_title``)."""
    if not len(outputs) == len(candidate_titles) == len(targets):
        raise ValueError(f"{len(outputs)} outputs, {len(candidate_titles)} candidate lists, {len(targets)} targets")
    targets = np.asarray(targets, dtype=np.int64)
    pred = np.array([match_candidate(o, c) for o, c in zip(outputs, candidate_titles, strict=True)], dtype=np.int64)
    hit = (pred == targets).astype(np.float64)
    invalid = (pred == INVALID).astype(np.float64)
    lenient = np.array([lenient_hit(o, c[t]) for o, c, t in zip(outputs, candidate_titles, targets.tolist(),
                                                                strict=True)], dtype=np.float64)
    return {"hr@1": hit, "hr@1_lenient": lenient, "invalid": invalid, "hr@1_mean": _mean(hit),
            "hr@1_valid": valid_only_hr(hit, invalid), "hr@1_lenient_mean": _mean(lenient),
            "invalid_share": _mean(invalid)}


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if len(a) else 0.0
