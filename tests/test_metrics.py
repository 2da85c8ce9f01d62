import numpy as np
import pytest

from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores, summarize


def test_ranks_are_pessimistic_on_ties():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],  # target best -> rank 0
        [0.5, 0.5, 0.1, 0.1],  # one tie -> counted above -> rank 1
        [0.1, 0.2, 0.3, 0.4],  # worst -> rank 3
        [1.0, 1.0, 1.0, 1.0],  # constant model -> worst rank, not a lucky one
    ])
    assert ranks_from_scores(scores).tolist() == [0, 1, 3, 3]


def test_nan_scores_rank_worst():
    assert ranks_from_scores(np.array([[np.nan, 0.1, 0.2]])).tolist() == [2]


def test_metrics_match_hand_computation():
    ranks = np.array([0, 1, 9, 10, 19, 20, 99])
    m = metrics_from_ranks(ranks)
    assert m["hr@1"].tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert m["hr@10"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert m["hr@20"].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert m["ndcg@10"] == pytest.approx([1.0, 1 / np.log2(3), 1 / np.log2(11), 0, 0, 0, 0])
    assert m["ndcg@20"][3] == pytest.approx(1 / np.log2(12))
    assert m["ndcg@20"][4] == pytest.approx(1 / np.log2(21))
    s = summarize(m)
    assert s["hr@10"] == pytest.approx(3 / 7)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 7)
