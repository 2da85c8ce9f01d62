"""The title-generation matching rule (seqbench/eval/generation.py) on hand-made outputs."""

from __future__ import annotations

import numpy as np
import pytest

from seqbench.data.titles import normalise
from seqbench.eval.generation import INVALID, match_candidate, score_generation, valid_only_hr

TITLES = ["Heat (1995)", "Heat 2", "Toy Story", "Toy Story 2", "L'Oréal Paris Lipstick", "Up", "Cars"]


@pytest.mark.parametrize(("output", "expected"), [
    ('"Heat (1995)"', 0),  # quoted, exact
    ("I recommend HEAT 1995.", 0),  # case and punctuation do not matter
    ("Heat 2", 1),  # "Heat" alone is not a title here; "Heat 2" names only candidate 1
    ("Toy Story 2", 3),  # contains "Toy Story", the longer title was meant
    ("l oreal paris lipstick!", INVALID),  # accents are kept (NFKC does not strip them) ...
    ("L'Oréal Paris Lipstick", 4),  # ... and the apostrophe is a separator like any punctuation
    ("Toy Story and Cars", INVALID),  # two candidates named
    ("nothing relevant", INVALID),
    ("", INVALID),
    ("Upcoming release", INVALID),  # "Up" only on word boundaries
    ("Up", 5),
])
def test_match_candidate(output, expected):
    assert match_candidate(output, TITLES) == expected


def test_identical_titles_cannot_be_told_apart_and_empty_titles_never_match():
    assert match_candidate("Cars", ["Cars", "cars!", "Up"]) == INVALID
    assert match_candidate("anything", ["", "Up"]) == INVALID
    assert normalise("  Heat — (1995)  ") == "heat 1995"


def test_score_generation_counts_hits_and_invalid_share():
    outputs = ["Heat 2", "Toy Story and Cars", "Cars", "Up"]
    cands = [TITLES] * 4
    res = score_generation(outputs, cands, [1, 2, 5, 5])
    np.testing.assert_array_equal(res["hr@1"], [1, 0, 0, 1])
    np.testing.assert_array_equal(res["invalid"], [0, 1, 0, 0])
    assert res["hr@1_mean"] == 0.5 and res["invalid_share"] == 0.25
    with pytest.raises(ValueError):
        score_generation(outputs, cands, [1])


def test_three_hr1_readings_on_a_hand_made_example():
    """strict = hits / all users; valid-only (LLaRA) = hits / users with a valid answer; lenient (A-LLMRec) = the
    target's normalised title anywhere in the normalised answer, over all users."""
    cands = [["Heat (1995)", "Heat 2", "Up"], ["Toy Story", "Toy Story 2", "Cars"], ["Cars", "Up", "Empty title"],
             ["Cars", "Up", "Heat 2"], ["Cars", "Up", "Heat 2"], ["Cars", "Toy Story", "Up"]]
    targets = [0, 0, 2, 2, 0, 0]
    outputs = ['"Heat (1995)"',  # strict hit
               "Toy Story 2",  # names only candidate 1: a valid miss; lenient: "toy story" occurs in it -> hit
               "Empty title",  # a target without a title, shown as "Empty title": strict hit
               "Heat 2 or Up",  # two candidates: invalid; lenient hit
               "Upcoming",  # names nothing: invalid; no lenient hit either ("cars" absent)
               "Bestcars"]  # invalid; lenient hit: A-LLMRec's substring test has no word boundaries
    res = score_generation(outputs, cands, targets)
    np.testing.assert_array_equal(res["hr@1"], [1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(res["invalid"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(res["hr@1_lenient"], [1, 1, 1, 1, 0, 1])
    assert res["hr@1_mean"] == pytest.approx(2 / 6)  # strict
    assert res["hr@1_valid"] == pytest.approx(2 / 3)  # 2 hits among the 3 valid answers
    assert res["hr@1_lenient_mean"] == pytest.approx(5 / 6)
    assert valid_only_hr(np.zeros(3), np.ones(3)) == 0.0  # no valid answer: 0, as LLaRA's code returns
