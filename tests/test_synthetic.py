"""The synthetic generator: order 0 must be exchangeable (the negative control), order 0.9 strongly ordered."""

import numpy as np
import pytest
from scipy import stats

from seqbench.data.sources.synthetic import generate


def _position_vs_frequency(users: int, seed: int) -> float:
    """Spearman rho between an event's relative position in its history and its item's global count.

    Drawing a history without replacement with unequal weights puts the heavier (more frequent) items first:
    rho < 0. In an exchangeable history every position has the same item distribution: rho ~ 0.
    """
    user, item, *_ = generate(users, 300, 0.0, seed)
    freq = np.bincount(item)
    lens = np.bincount(user)
    pos = np.concatenate([np.arange(n) / (n - 1) for n in lens])
    return float(stats.spearmanr(pos, freq[item]).statistic)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order0_histories_are_exchangeable(seed):
    # a sequential weighted draw without replacement (the previous generator) gives rho about -0.10 here
    assert abs(_position_vs_frequency(2000, seed)) < 0.02


def test_order0_first_and_last_items_have_the_same_distribution():
    user, item, *_ = generate(3000, 300, 0.0, 5)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)] - 1
    first, last = np.bincount(item[starts], minlength=300), np.bincount(item[ends], minlength=300)
    keep = (first + last) >= 10
    assert stats.chi2_contingency(np.stack([first[keep], last[keep]])).pvalue > 0.01


def test_order_follows_successors_and_items_never_repeat():
    user, item, *_ = generate(500, 300, 0.9, 0)
    same = user[1:] == user[:-1]
    pairs = set(zip(item[:-1][same].tolist(), item[1:][same].tolist(), strict=True))
    # with 3 successors per item, ordered data reuses few transitions; order 0 almost never does
    user0, item0, *_ = generate(500, 300, 0.0, 0)
    same0 = user0[1:] == user0[:-1]
    pairs0 = set(zip(item0[:-1][same0].tolist(), item0[1:][same0].tolist(), strict=True))
    assert len(pairs) < 0.6 * len(pairs0)
    for u in range(500):
        hist = item[user == u]
        assert len(np.unique(hist)) == len(hist)


def test_generator_is_deterministic_per_seed():
    a = generate(200, 300, 0.3, 7)
    b = generate(200, 300, 0.3, 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
