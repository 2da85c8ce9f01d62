"""Permutation probes move items only inside the model's window; targets, candidates and times stay."""

import numpy as np

from seqbench.data.histories import Histories
from seqbench.probes.permutation import permute_tail


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


def test_shuffle_infer_keeps_targets_and_candidates(tiny):
    from seqbench.probes.shuffle_infer import ShuffleInfer

    seen = {}

    class Spy:
        window = 8

        def score(self, hist, cands):
            seen.setdefault("calls", []).append((hist, cands.copy()))
            return np.random.default_rng(0).random(cands.shape)

    from seqbench.context import RunContext

    res = ShuffleInfer().run(Spy(), tiny, RunContext())
    (h0, c0), (h1, c1) = seen["calls"]
    assert (c0 == c1).all() and (c0 == tiny.candidates["test"]).all()
    assert (h0.times == h1.times).all() and (h0.offsets == h1.offsets).all()
    assert (h0.users == h1.users).all()
    assert res.probe_stats["window"] == 8
    assert 0 < res.probe_stats["share_items_moved"] < 1
