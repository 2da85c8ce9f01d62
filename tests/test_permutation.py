"""Permutation probes move items only inside the model's window; targets, candidates and times stay."""

import numpy as np

from seqbench.data.histories import Histories
from seqbench.data.permutation import permute_all, permute_tail, reverse_tail, swap_last_two


def _hist(n_rows=200, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 30, n_rows)
    off = np.concatenate([[0], np.cumsum(lens)])
    items = rng.integers(1, 10_000, off[-1])
    return Histories(np.arange(1, n_rows + 1), items, np.arange(off[-1]) * 1000, off)


def test_only_the_window_moves_and_each_row_keeps_its_multiset():
    h = _hist()
    p = permute_tail(h, window=10, seed=7)
    assert (p.times == h.times).all() and (p.offsets == h.offsets).all()
    for b in range(len(h)):
        orig, new = h.row(b), p.row(b)
        cut = max(0, len(orig) - 10)
        assert (orig[:cut] == new[:cut]).all()
        assert sorted(orig[cut:].tolist()) == sorted(new[cut:].tolist())
    in_window = (h.tail(10).items != p.tail(10).items).mean()
    assert in_window > 0.6  # it does shuffle (a window of n keeps ~1/n items in place)


def test_same_seed_same_permutation_other_seed_differs():
    h = _hist()
    assert (permute_tail(h, 10, 1).items == permute_tail(h, 10, 1).items).all()
    assert not (permute_tail(h, 10, 1).items == permute_tail(h, 10, 2).items).all()


def test_reverse_and_recency():
    h = Histories(np.array([1, 2]), np.array([1, 2, 3, 4, 5, 6]), np.arange(6), np.array([0, 4, 6]))
    assert reverse_tail(h, 3).items.tolist() == [1, 4, 3, 2, 6, 5]
    assert swap_last_two(h).items.tolist() == [1, 2, 4, 3, 6, 5]
    assert sorted(permute_all(h, 0).row(0).tolist()) == [1, 2, 3, 4]


def test_tie_shuffle_moves_items_only_among_equal_timestamps():
    from seqbench.data.permutation import permute_ties, tied_positions

    rng = np.random.default_rng(3)
    lens = rng.integers(2, 25, 300)
    off = np.concatenate([[0], np.cumsum(lens)])
    times = np.concatenate([np.sort(rng.integers(0, 6, n)) for n in lens]) * 86_400_000  # day resolution
    h = Histories(np.arange(1, 301), rng.integers(1, 10_000, off[-1]), times, off)
    p = permute_ties(h, window=8, seed=1)
    assert (p.times == h.times).all() and (p.offsets == h.offsets).all()
    for b in range(len(h)):
        r0, r1, t = h.row(b), p.row(b), h.times[h.offsets[b]:h.offsets[b + 1]]
        cut = max(0, len(r0) - 8)
        assert (r0[:cut] == r1[:cut]).all()
        for day in np.unique(t[cut:]):  # within the window, each day's items stay on that day
            same = np.flatnonzero(t == day)
            same = same[same >= cut]
            assert sorted(r0[same].tolist()) == sorted(r1[same].tolist())
    moved = p.items != h.items
    assert moved.any() and not (moved & ~tied_positions(h, 8)).any()  # only tied positions move
    untied = Histories(h.users, h.items, np.arange(off[-1]), off)
    assert (permute_ties(untied, 8, 1).items == h.items).all() and not tied_positions(untied, 8).any()


def test_tied_positions_inside_the_window_only():
    from seqbench.data.permutation import tied_positions

    # one row: days 0 0 1 1 1 2; with a window of 3 the first day-1 item is outside, day 2 alone
    h = Histories(np.array([1]), np.arange(1, 7), np.array([0, 0, 1, 1, 1, 2]), np.array([0, 6]))
    assert tied_positions(h).tolist() == [True, True, True, True, True, False]
    assert tied_positions(h, 3).tolist() == [False, False, False, True, True, False]
    assert tied_positions(h, 4).tolist() == [False, False, True, True, True, False]
    assert tied_positions(h, 2).tolist() == [False, False, False, False, False, False]
