"""Preprocessing rules and the protocol's invariants (leakage, candidates)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from seqbench.data.negatives import sample_candidates
from seqbench.data.preprocess import TEST, TRAIN, VALID, PrepareParams, prepare
from seqbench.data.raw import RawData
from seqbench.errors import DataError


def _raw(rows, titles=None):
    u, i, t = zip(*rows, strict=True)
    tab = pa.table({"user": [str(x) for x in u], "item": [str(x) for x in i], "timestamp": list(t)})
    items = None if titles is None else pd.DataFrame({"item": list(titles), "title": list(titles.values())})
    return RawData(tab, items)


def test_duplicates_dropped_ties_keep_file_order_and_split():
    rows = [("a", "x", 5), ("a", "y", 5), ("a", "z", 1), ("a", "x", 5), ("a", "w", 9)]
    p = prepare(_raw(rows), PrepareParams(k=1))
    assert p.report["duplicates_dropped"] == 1
    names = p.item_ids[p.item - 1].tolist()
    assert names == ["z", "x", "y", "w"]  # time order; x before y (same time) as in the file
    assert p.split.tolist() == [TRAIN, TRAIN, VALID, TEST]


def test_iterative_kcore_reaches_a_fixed_point_while_single_pass_does_not():
    # Item 'r' is rare; dropping it leaves user 'c' below k=4, which only the iterative rule notices.
    rows = [(u, it, n) for u in "abef" for n, it in enumerate("pqst")]
    rows += [("c", it, n) for n, it in enumerate("pqsr")]
    it = prepare(_raw(rows), PrepareParams(k=4))
    assert np.bincount(it.user)[1:].min() >= 4 and np.bincount(it.item)[1:].min() >= 4
    assert it.report["interactions"] == 16 and "c" not in it.user_ids
    single = prepare(_raw(rows), PrepareParams(k=4, kcore="single"))
    assert single.report["interactions"] == 19 and "c" in single.user_ids


def test_users_too_short_after_filtering_are_dropped_or_fail_in_strict_mode():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "x", 1), ("b", "y", 2)]
    p = prepare(_raw(rows), PrepareParams(k=1))
    assert p.report["short_users_dropped"] == 1 and len(p.user_ids) == 1
    with pytest.raises(DataError, match="fewer than 3 interactions"):
        prepare(_raw(rows), PrepareParams(k=1), strict=True)


def test_empty_and_all_filtered_inputs_fail_clearly():
    with pytest.raises(DataError, match="no interactions"):
        prepare(RawData(pa.table({"user": pa.array([], pa.string()), "item": pa.array([], pa.string()),
                                  "timestamp": pa.array([], pa.int64())})), PrepareParams())
    with pytest.raises(DataError, match="no interactions left"):
        prepare(_raw([("a", "x", 1), ("a", "y", 2), ("a", "z", 3)]), PrepareParams(k=5))


def test_missing_titles_counted_and_strict_fails():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3)]
    p = prepare(_raw(rows, {"x": "X", "y": ""}), PrepareParams(k=1))
    assert p.report["items_without_title"] == 2
    assert sorted(p.titles.tolist()) == ["", "", "X"]
    with pytest.raises(DataError, match="have no title"):
        prepare(_raw(rows, {"x": "X"}), PrepareParams(k=1), strict=True)


def test_user_sampling_is_seeded():
    rows = [(u, f"i{j}", j) for u in range(40) for j in range(5)]
    a = prepare(_raw(rows), PrepareParams(k=1, sample_users=0.5, sample_seed=1))
    b = prepare(_raw(rows), PrepareParams(k=1, sample_users=0.5, sample_seed=1))
    c = prepare(_raw(rows), PrepareParams(k=1, sample_users=0.5, sample_seed=2))
    assert len(a.user_ids) == 20
    assert a.user_ids.tolist() == b.user_ids.tolist() != c.user_ids.tolist()


def _three_core_rows():
    """30 users x 4 items; items with residue r (mod 3) belong to the 10 users with u % 3 == r: a 3-core."""
    return [(f"u{u}", f"i{(u + 3 * j) % 12}", 10 * u + j) for u in range(30) for j in range(4)]


def test_sample_after_kcore_keeps_whole_histories():
    rows = _three_core_rows()
    before = prepare(_raw(rows), PrepareParams(k=3, sample_users=0.2, sample_stage="before"))
    assert len(before.user_ids) < 6  # sampled users whose items lost their 3rd user are filtered away
    p = prepare(_raw(rows), PrepareParams(k=3, sample_users=0.2, sample_stage="after"))
    assert len(p.user_ids) == 6 and p.report["users_after_kcore"] == 30 and p.report["users_sampled"] == 6
    full = {}
    for u, i, _ in rows:
        full.setdefault(u, []).append(i)
    for b, raw in enumerate(p.user_ids, start=1):  # every kept user has their whole history, in time order
        assert p.item_ids[p.item[p.user == b] - 1].tolist() == full[raw]
    again = prepare(_raw(rows), PrepareParams(k=3, sample_users=0.2, sample_stage="after"))
    assert again.user_ids.tolist() == p.user_ids.tolist()  # seeded


def test_sample_after_still_drops_short_users_and_rejects_bad_stage():
    rows = [(f"u{u}", f"i{j}", j) for u in range(20) for j in range(2 if u < 10 else 4)]
    p = prepare(_raw(rows), PrepareParams(k=1, sample_users=0.5, sample_stage="after"))
    assert p.report["users_sampled"] == 10 and len(p.user_ids) == 10 - p.report["short_users_dropped"]
    assert p.report["short_users_dropped"] > 0 and all(int(u[1:]) >= 10 for u in p.user_ids)
    with pytest.raises(DataError, match="sample-stage 'during'"):
        prepare(_raw(rows), PrepareParams(sample_stage="during"))


def test_no_valid_or_test_item_in_training_inputs(tiny):
    """Leakage invariant: every model input stage ends before its target."""
    off = tiny.user_offsets
    train, valid, test = (tiny.histories(s) for s in ("train", "valid", "test"))
    for h, drop in ((train, 2), (valid, 2), (test, 1)):
        assert (h.lengths == np.diff(off) - drop).all()
    # Train inputs are exactly the split == TRAIN rows; valid/test rows never appear in them.
    assert (train.items == tiny.item[tiny.split == TRAIN]).all()
    last_train = train.offsets[1:] - 1
    assert (test.items[test.offsets[1:] - 1] == tiny.targets("valid")).all()
    assert (tiny.item[tiny.split == VALID] == tiny.targets("valid")).all()
    assert (tiny.item[tiny.split == TEST] == tiny.targets("test")).all()
    assert (train.items[last_train] == tiny.item[off[1:] - 3]).all()


def test_candidates_exclude_all_user_items_and_are_distinct(tiny):
    off = tiny.user_offsets
    for key, mat in tiny.candidates.items():
        assert mat.shape[1] == (100 if key in ("valid", "test") else 20)
        for u in range(tiny.n_users):
            seen = set(tiny.item[off[u]:off[u + 1]].tolist())
            neg = mat[u, 1:]
            assert len(set(neg.tolist())) == len(neg)
            assert not seen & set(neg.tolist())
            assert mat[u, 0] in seen


def test_candidates_are_deterministic_and_seed_dependent():
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 300
    user = np.repeat(np.arange(1, n_users + 1), 10)
    item = np.concatenate([rng.choice(np.arange(1, n_items + 1), 10, replace=False) for _ in range(n_users)])
    split = np.tile([0] * 8 + [1, 2], n_users).astype(np.int8)
    a = sample_candidates(user, item, split, n_items, seed=0)
    b = sample_candidates(user, item, split, n_items, seed=0)
    c = sample_candidates(user, item, split, n_items, seed=1)
    assert all((a[k] == b[k]).all() for k in a)
    assert not (a["test"] == c["test"]).all()
    assert not (a["valid"][:, 1:] == a["test"][:, 1:]).all()  # drawn separately


def test_too_small_catalogue_is_a_clear_error():
    user = np.repeat([1, 2], 3)
    item = np.array([1, 2, 3, 1, 2, 3])
    split = np.array([0, 1, 2, 0, 1, 2], dtype=np.int8)
    with pytest.raises(DataError, match="too small"):
        sample_candidates(user, item, split, n_items=50, seed=0)
