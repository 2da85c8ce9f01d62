"""Title-generation candidates list 20 different normalised titles (seqbench/data/negatives.py, store.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqbench.data import negatives
from seqbench.data.negatives import TitleCandidatesError, distinct_titles, repeated_title_rows, sample_candidates
from seqbench.data.preprocess import PrepareParams, prepare
from seqbench.data.raw import RawData
from seqbench.data.store import TITLE_RULE, load_dataset, write_dataset
from seqbench.data.titles import EMPTY_TITLE, SOFT_TOKEN_STRINGS, clean_title, title_key, title_keys
from seqbench.errors import DataError

N_USERS, N_ITEMS, PER_USER = 60, 400, 10


def _log(seed: int = 0):
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(1, N_USERS + 1), PER_USER)
    item = np.concatenate([rng.choice(np.arange(1, N_ITEMS + 1), PER_USER, replace=False) for _ in range(N_USERS)])
    split = np.tile([0] * (PER_USER - 2) + [1, 2], N_USERS).astype(np.int8)
    return user, item, split


def _keys(n_distinct: int) -> np.ndarray:
    """Item i's title key: many items share a title (i mod n_distinct); index 0 is padding."""
    return np.concatenate([[-1], np.arange(N_ITEMS) % n_distinct]).astype(np.int64)


def _check_rows(cands, keys, user, item, rows_user):
    for u, row in zip(rows_user.tolist(), cands, strict=True):
        k = keys[row].tolist()
        assert len(set(k)) == len(k)  # no two candidates share a normalised title, none equals the target's
        assert not set(row[1:].tolist()) & set(item[user == u].tolist())  # negatives never interacted


def test_title_sets_have_distinct_titles_and_retrieval_sets_do_not_move():
    user, item, split = _log()
    keys = _keys(40)  # 10 items per title: a plain uniform draw of 20 repeats a title in most rows
    plain = sample_candidates(user, item, split, N_ITEMS, seed=0)
    assert repeated_title_rows(plain["test_title"], keys) > N_USERS // 2
    report = {}
    out = sample_candidates(user, item, split, N_ITEMS, seed=0, title_keys=keys, report=report)
    for name in ("valid_title", "test_title"):
        assert out[name].shape == (N_USERS, 20) and repeated_title_rows(out[name], keys) == 0
        _check_rows(out[name], keys, user, item, np.arange(1, N_USERS + 1))
        np.testing.assert_array_equal(out[name][:, 0], plain[name][:, 0])  # the target stays in column 0
        clean = repeated_title_rows(plain[name][:, :], keys)
        same = [(a == b).all() for a, b in zip(out[name], plain[name], strict=True)]
        assert sum(same) == N_USERS - clean  # rows without a repeat are kept exactly as drawn
    assert report["title_negatives_redrawn"] > 0
    for name in ("valid", "test"):  # drawn before the title sets from the same generator: untouched
        np.testing.assert_array_equal(out[name], plain[name])
    again = sample_candidates(user, item, split, N_ITEMS, seed=0, title_keys=keys)
    assert all((again[k] == out[k]).all() for k in out)  # seeded and deterministic
    other = sample_candidates(user, item, split, N_ITEMS, seed=1, title_keys=keys)
    assert not (other["test_title"] == out["test_title"]).all()


def test_distinct_titled_catalogue_keeps_its_candidates():
    user, item, split = _log()
    plain = sample_candidates(user, item, split, N_ITEMS, seed=0)
    report = {}
    out = sample_candidates(user, item, split, N_ITEMS, seed=0, title_keys=np.arange(N_ITEMS + 1), report=report)
    assert all((out[k] == plain[k]).all() for k in plain) and report["title_negatives_redrawn"] == 0


def test_rows_left_after_the_vectorised_rounds_are_completed_exactly(monkeypatch):
    user, item, split = _log()
    keys = _keys(25)  # 16 items per title, 25 titles: little room left
    monkeypatch.setattr(negatives, "DRAW_ROUNDS", 0)  # every repeated row goes through the one-by-one path
    out = sample_candidates(user, item, split, N_ITEMS, seed=0, title_keys=keys)
    _check_rows(out["test_title"], keys, user, item, np.arange(1, N_USERS + 1))
    _check_rows(out["valid_title"], keys, user, item, np.arange(1, N_USERS + 1))


def test_too_few_distinct_titles_is_a_clear_error():
    user, item, split = _log()
    with pytest.raises(TitleCandidatesError, match="15 distinct titles.*needs 20"):
        sample_candidates(user, item, split, N_ITEMS, seed=0, title_keys=_keys(15))
    # 20 titles in the catalogue, but each title's items are all bought by user 1 except one title's: user 1
    # cannot get 19 negatives whose titles differ from each other and from its target's
    keys = _keys(20)
    cands = np.array([[1, 2, 3] + [0] * 17])
    forbidden = np.sort(np.array([i for i in range(1, N_ITEMS + 1) if keys[i] != 5], dtype=np.int64))
    cands[0, 3:] = [i for i in range(1, N_ITEMS + 1) if keys[i] == 5][:17]  # every open slot repeats title 5
    with pytest.raises(TitleCandidatesError, match="user 1 has"):
        distinct_titles(cands, np.array([0]), keys, forbidden, N_ITEMS, np.random.default_rng(0))


def test_title_key_is_the_prompt_title_normalised():
    assert SOFT_TOKEN_STRINGS == pytest.importorskip("seqbench.llm.backbone").SOFT_TOKENS
    assert clean_title(None) == clean_title("  ") == clean_title("[HistoryEmb]") == EMPTY_TITLE
    assert title_key("") == title_key(None) == "empty title"
    assert title_key("Heat [UserOut](1995)") == title_key("HEAT — 1995") == "heat 1995"
    k = title_keys(["Up", "up!", "", None, "Cars"])
    assert k[0] == k[1] and k[2] == k[3] and len(set(k.tolist())) == 3


def _prepared(titles: dict[str, str | None]):
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", t) for u in range(30) for t, i in enumerate(rng.choice(len(titles), 8, replace=False))]
    u, i, t = zip(*rows, strict=True)
    raw = RawData(pa.table({"user": list(u), "item": list(i), "timestamp": list(t)}),
                  pd.DataFrame({"item": list(titles), "title": list(titles.values())}))
    return prepare(raw, PrepareParams(k=1, n_neg=20, n_neg_title=19))


def test_prepared_dataset_records_the_rule_and_generation_fails_clearly_without_titles(tmp_path):
    titled = {f"i{n}": f"Title {n % 60}" for n in range(120)}  # 60 titles, two items each
    path = write_dataset(_prepared(titled), PrepareParams(k=1, n_neg=20, n_neg_title=19), "dup", tmp_path, {})
    data = load_dataset("dup", tmp_path)
    assert data.meta["title_candidates"] == TITLE_RULE and data.meta["counts"]["title_negatives_redrawn"] > 0
    keys = title_keys(data.titles)
    assert repeated_title_rows(data.candidates["test_title"], keys) == 0
    assert repeated_title_rows(data.candidates["valid_title"], keys) == 0

    # an older seqbench wrote no "title_candidates" entry and could repeat a title: generation refuses
    meta = json.loads((path / "meta.json").read_text())
    del meta["title_candidates"]
    (path / "meta.json").write_text(json.dumps(meta))
    assert set(load_dataset("dup", tmp_path).candidates) == {"valid", "test", "valid_title", "test_title"}
    cands = pq.read_table(path / "candidates.parquet").to_pydict()
    item_of_title = {}
    for i, t in enumerate(data.titles):
        item_of_title.setdefault(t, []).append(i)
    row = cands["test_title"][0]
    row[1] = next(i for i in item_of_title[data.titles[row[0]]] if i != row[0])  # the target's title twice
    pq.write_table(pa.table(cands), path / "candidates.parquet")
    old = load_dataset("dup", tmp_path)
    assert "valid" in old.candidates and "test_title" not in old.candidates
    with pytest.raises(DataError, match="older seqbench.*test_title: 1 of 30 rows.*prepare it again"):
        old.candidates["test_title"]

    untitled = {f"i{n}": None for n in range(120)}  # every title reads "Empty title": one title in all
    write_dataset(_prepared(untitled), PrepareParams(k=1, n_neg=20, n_neg_title=19), "bare", tmp_path, {})
    bare = load_dataset("bare", tmp_path)
    assert bare.meta["title_candidates"].startswith("none: the catalogue has 1 distinct titles")
    assert bare.candidates["test"].shape == (30, 21)  # retrieval is unaffected
    with pytest.raises(DataError, match="no 'test_title' candidates.*1 distinct titles"):
        bare.candidates["test_title"]
    with pytest.raises(KeyError):
        bare.candidates["nonsense"]
