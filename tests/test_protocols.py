"""Ranking protocols (sampled, full, full-unseen), the global temporal split and the whole-history shuffle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.context import RunContext
from seqbench.data.dataset import INPUT, TEST, TRAIN, VALID
from seqbench.data.histories import Histories
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.stats import dataset_stats, tie_stats
from seqbench.data.store import load_dataset
from seqbench.errors import DataError, OptionError
from seqbench.eval import evaluator
from seqbench.eval.evaluator import evaluate, rank_all_items
from seqbench.models import create_model
from seqbench.probes import get_probe
from seqbench.probes.base import ProbeContext
from seqbench.probes.jaccard import jaccard_at_k, jaccard_of_lists
from tests.conftest import load_script

runner = CliRunner()
TINY_OPTS = SourceOptions(users=150, items=160, order=0.9, seed=3, min_len=5, max_len=20)


class FixedScores:
    """A model whose every user scores the items 0..5 as given (column 0 = padding)."""

    name = "fixed"
    window = 10

    def __init__(self, table: np.ndarray):
        self.table = np.asarray(table, dtype=np.float32)

    def score_all(self, hist: Histories, rows: np.ndarray | None = None) -> np.ndarray:
        return self.table[(hist if rows is None else hist.take(rows)).users - 1]

    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray:
        return np.take_along_axis(self.table[hist.users - 1], candidates, 1)


def _hist(rows: list[list[int]]) -> Histories:
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    off = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return Histories(np.arange(1, len(rows) + 1), items, np.zeros(len(items), dtype=np.int64), off)


def test_full_ranking_by_hand():
    # items 1..5; padding (column 0) scores highest and must never count
    table = [[9.0, 0.5, 0.9, 0.5, 0.1, 0.7],  # user 1: target 1 (0.5) ties item 3 -> pessimistic: 2 and 5 and 3 above
             [9.0, 0.2, 0.3, 0.4, 0.5, 0.6],  # user 2: target 5 (0.6) is best
             [9.0, 0.9, np.nan, 0.1, 0.2, 0.3]]  # user 3: target 4 (0.2); the NaN item counts against it
    model = FixedScores(table)
    hist = _hist([[2, 5], [5, 1], [1]])  # user 2 has already seen its target 5: never removed
    targets = np.array([1, 5, 4])
    ranks, top = rank_all_items(model, hist, targets)
    assert ranks.tolist() == [3, 0, 3]
    assert top[0, :5].tolist() == [2, 5, 1, 3, 4]  # ties in item order (stable), padding never listed
    ranks, top = rank_all_items(model, hist, targets, exclude_seen=True)
    assert ranks.tolist() == [1, 0, 2]  # user 1 loses 2 and 5 above it; user 3 loses item 1
    assert 2 not in top[0, :3] and 5 not in top[0, :3] and top[1, 0] == 5
    res = evaluate(model, hist, np.array([[1, 2], [5, 1], [4, 1]]), protocol="full")
    assert res.protocol == "full" and res.ranks.tolist() == [3, 0, 3]
    assert res.per_user["ndcg@10"][0] == pytest.approx(1 / np.log2(5)) and res.per_user["hr@1"].tolist() == [0, 1, 0]


def test_full_ranking_chunks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(0)
    model = FixedScores(rng.random((40, 31)))
    hist = _hist([list(rng.integers(1, 31, size=4)) for _ in range(40)])
    targets = rng.integers(1, 31, size=40)
    whole = rank_all_items(model, hist, targets, exclude_seen=True)
    monkeypatch.setattr(evaluator, "FULL_CHUNK_SCORES", 31 * 3)  # three users a chunk
    chunked = rank_all_items(model, hist, targets, exclude_seen=True)
    assert (whole[0] == chunked[0]).all() and (whole[1] == chunked[1]).all()


def test_sampled_top_items_are_candidate_ids_and_generation_refuses_full():
    model = FixedScores([[0, 0.1, 0.9, 0.5]])
    res = evaluate(model, _hist([[1]]), np.array([[1, 3, 2]]))
    assert res.top_items[0].tolist() == [2, 3, 1] and res.protocol == "sampled"
    with pytest.raises(OptionError, match="retrieval task"):
        evaluate(model, _hist([[1]]), np.array([[1, 3, 2]]), task="generation", protocol="full")
    with pytest.raises(OptionError, match="unknown evaluation protocol"):
        evaluate(model, _hist([[1]]), np.array([[1, 3, 2]]), protocol="everything")
    with pytest.raises(OptionError, match="cannot rank all items"):
        rank_all_items(object(), _hist([[1]]), np.array([1]))


def test_jaccard_of_lists_is_the_set_jaccard():
    rng = np.random.default_rng(1)
    a, b = rng.random((20, 30)), rng.random((20, 30))
    top_a = np.argsort(-a, axis=1)[:, :10]
    top_b = np.argsort(-b, axis=1)[:, :10]
    by_sets = [len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(top_a, top_b, strict=True)]
    assert np.allclose(jaccard_of_lists(top_a, top_b), by_sets)
    assert np.allclose(jaccard_at_k(a, b), by_sets)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "nextitnet", "pop"])
def test_score_all_agrees_with_candidate_scores(tiny, name):
    model = create_model(name, tiny.n_items, {"d": 16, "maxlen": 16} if name != "pop" else {})
    if name == "pop":
        model.counts = np.arange(tiny.n_items + 1)
    hist, cands = tiny.histories("test"), tiny.candidates["test"]
    full = model.score_all(hist)
    assert full.shape == (len(hist), tiny.n_items + 1)
    assert np.allclose(np.take_along_axis(full, cands, 1), model.score(hist, cands), atol=1e-5)


# -- the global temporal split ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def temporal(tmp_path_factory):
    home = tmp_path_factory.mktemp("temporal")
    prepare_source("synthetic", None, "t", home, PrepareParams(split="temporal", valid_users=20, boundary=0.8),
                   TINY_OPTS)
    return load_dataset("t", home)


def test_temporal_split_has_no_leakage(temporal):
    d = temporal
    boundary = d.meta["counts"]["boundary_timestamp_ms"]
    assert np.quantile(d.timestamp, 0.8) == pytest.approx(boundary)
    train = d.histories("train")
    assert (train.times <= boundary).all()  # no test-period event in any training input
    valid_users, test_users = d.stage_users("valid"), d.stage_users("test")
    assert len(valid_users) == 20 and not np.isin(valid_users, train.users).any()  # held out of training
    assert (d.timestamp[d.split == TEST] > boundary).all() and (d.timestamp[d.split == VALID] <= boundary).all()
    after = d.timestamp > boundary
    assert set(np.unique(d.user[after])) == set(test_users)  # test users: those with a test-period event
    before = np.bincount(d.user[~after], minlength=d.n_users + 1)
    assert set(train.users) == set(np.flatnonzero(before >= 2)) - set(valid_users)  # two events up to it
    # a test user's input: every earlier event, the target is the last one
    test = d.histories("test")
    for row, u in enumerate(test.users[:10]):
        rows = np.flatnonzero(d.user == u)
        assert test.row(row).tolist() == d.item[rows[:-1]].tolist()
        assert d.candidates["test"][row, 0] == d.item[rows[-1]]
    assert (test.lengths >= 1).all() and len(d.candidates["test"]) == len(test_users)
    valid = d.histories("valid")
    assert (valid.times <= boundary).all() and len(d.candidates["valid"]) == 20
    assert set(np.unique(d.split)) <= {TRAIN, VALID, TEST, INPUT}
    assert d.split_kind == "temporal"


def test_temporal_split_is_seeded_and_checks_its_parameters(tmp_path):
    a = prepare_source("synthetic", None, "a", tmp_path, PrepareParams(split="temporal", valid_users=20), TINY_OPTS)
    b = prepare_source("synthetic", None, "b", tmp_path, PrepareParams(split="temporal", valid_users=20,
                                                                       split_seed=1), TINY_OPTS)
    da, db = load_dataset("a", tmp_path), load_dataset("b", tmp_path)
    assert a and b and not np.array_equal(da.stage_users("valid"), db.stage_users("valid"))
    for params, msg in ((PrepareParams(split="temporal", boundary=1.0), "--boundary"),
                        (PrepareParams(split="temporal", valid_users=10_000), "--valid-users 10000"),
                        (PrepareParams(split="random"), "unknown --split")):
        with pytest.raises(DataError, match=msg):
            prepare_source("synthetic", None, "c", tmp_path, params, TINY_OPTS)
    assert not (tmp_path / "c").exists()


def test_leave_last_out_is_unchanged(tiny):
    """Every user has train events, then its validation and test targets; inputs are what they always were."""
    off = tiny.user_offsets
    test, valid, train = tiny.histories("test"), tiny.histories("valid"), tiny.histories("train")
    assert len(test) == len(valid) == len(train) == tiny.n_users
    assert (test.lengths == np.diff(off) - 1).all() and (valid.lengths == np.diff(off) - 2).all()
    assert (train.lengths == valid.lengths).all() and (train.items == valid.items).all()
    assert tiny.split_kind == "leave-last-out"


def test_cli_prepares_a_temporal_split_and_runs_full_ranking(tmp_path):
    home, uri = tmp_path / "home", f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = runner.invoke(app, ["data", "prepare", "synthetic", "--name", "t", "--split", "temporal", "--valid-users", "30",
                            "--users", "300", "--items", "200", "--order", "0.9", "--data-home", str(home)])
    assert r.exit_code == 0, r.output
    assert "test_users" in r.output and "boundary_timestamp_ms" in r.output
    out = tmp_path / "res.json"
    r = runner.invoke(app, ["run", "--model", "sasrec", "--dataset", "t", "--data-home", str(home), "--tracking-uri",
                            uri, "--set", "max_epochs=2,d=16,maxlen=16,valid_eval=full", "--probe",
                            "shuffle-infer,jaccard", "--probe-set", "window=all", "--eval", "full,sampled",
                            "--output", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    runs = json.loads(out.read_text())["runs"]
    assert [(x["probe"], x["eval"]) for x in runs] == [("shuffle-infer", "full"), ("jaccard", "full"),
                                                         ("shuffle-infer", "sampled"), ("jaccard", "sampled")]
    assert all(x["split"] == "temporal" and x["test"]["n_users"] == runs[0]["test"]["n_users"] for x in runs)
    assert runs[0]["probe_stats"]["window"] == "all" and runs[1]["probe_stats"]["jaccard_over"] == "all items"
    assert runs[3]["probe_stats"]["jaccard_over"] == "candidates"
    r = runner.invoke(app, ["compare", runs[0]["mlflow_run_id"], runs[2]["mlflow_run_id"], "--tracking-uri", uri])
    assert r.exit_code != 0 and "different protocols" in r.output
    r = runner.invoke(app, ["runs", "--tracking-uri", uri])
    assert r.exit_code == 0 and "full" in r.output
    r = runner.invoke(app, ["run", "--model", "pop", "--dataset", "t", "--data-home", str(home), "--tracking-uri", uri,
                            "--eval", "full", "--task", "generation"])
    assert r.exit_code == 2 and "retrieval task" in r.output


# -- the whole-history shuffle -----------------------------------------------------------------------------------
def test_window_all_shuffles_the_whole_history_and_the_model_reads_its_own_window(tiny):
    class Recorder(FixedScores):
        window = 3
        seen: list[Histories] = []

        def score(self, hist, candidates):
            self.seen.append(hist)
            return np.zeros(candidates.shape)

    model = Recorder(np.zeros((tiny.n_users, tiny.n_items + 1)))
    pc = ProbeContext(model=model, data=tiny, run=RunContext(seed=0), fit=None, load_dataset=None,
                      options={"window": "all"})
    res = get_probe("shuffle-infer").run(pc)
    original, moved = model.seen
    assert res.probe_stats["window"] == "all" and res.probe_stats["model_window"] == 3
    old = ~np.isin(np.arange(len(moved.items)), np.concatenate(  # items outside the last 3 moved too
        [np.arange(e - 3, e) for e in moved.offsets[1:]]))
    assert (moved.items[old] != original.items[old]).any()
    for b in range(len(moved)):  # a permutation of each row
        assert sorted(moved.row(b)) == sorted(original.row(b))
    capped = ProbeContext(model=model, data=tiny, run=RunContext(seed=0), fit=None, load_dataset=None,
                          options={"window": "50"})
    assert get_probe("shuffle-infer").run(capped).probe_stats["window"] == 3  # a number is still capped


def test_protocol_cost_benchmark_writes_its_envelope(tiny_home, tmp_path):
    out = tmp_path / "bench.json"
    result = load_script("bench_eval_protocols").main(["--dataset", "tiny", "--data-home", str(tiny_home),
                                                       "--repeats", "1", "--threads", "1", "--out", str(out)])
    (saved,) = json.loads(out.read_text())["runs"]
    assert saved == json.loads(json.dumps(result))
    assert {"benchmark", "variant", "command", "commit", "started", "machine", "result"} <= set(saved)
    protocols = saved["result"]["protocols"]
    assert set(protocols) == {"sampled", "full", "full-unseen"} and protocols["sampled"]["ratio_to_sampled"] == 1.0
    assert saved["result"]["users"] == load_dataset("tiny", tiny_home).n_users
    assert all(p["median_seconds"] > 0 for p in protocols.values())


def test_random_tie_order_is_seeded_and_keeps_time_order(tmp_path):
    lines = [f"u{u},i{u}_{i},{100 + i // 3}\n" for u in range(8) for i in range(9)]
    rows = "user_id,item_id,timestamp\n" + "".join(lines)
    (tmp_path / "log.csv").write_text(rows)  # every user: 9 items on 3 days, 3 per day, in file order

    def prepared(name, **kw):
        params = PrepareParams(k=1, n_neg=5, n_neg_title=5, **kw)
        prepare_source("csv", tmp_path / "log.csv", name, tmp_path / "home", params)
        d = load_dataset(name, tmp_path / "home")
        return [[int(x.split("_")[1]) for x in d.item_ids[d.item[d.user == u]]] for u in range(1, 9)], d

    file_order, d = prepared("f")
    assert all(seq == list(range(9)) for seq in file_order)
    assert d.meta["counts"]["tied_adjacent_pairs"] == pytest.approx(6 / 8)
    ties = dataset_stats(d)
    assert ties["tie_order"] == "file" and ties["tied_adjacent_pairs"] == pytest.approx(6 / 8)
    # each test input is the first 8 items (3 + 3 + 2 per day): every user has permutable ties in the window,
    # and with a window of 1 none
    assert ties["test_users_with_ties_in_last_10"] == 1.0 and ties["test_users_with_ties_in_history"] == 1.0
    assert tie_stats(d, window=1)["test_users_with_ties_in_last_1"] == 0.0
    random_order, rd = prepared("r", ties="random")
    assert dataset_stats(rd)["tie_order"] == "random (seed 0)"
    again, _ = prepared("r2", ties="random")
    other, _ = prepared("r3", ties="random", tie_seed=1)
    assert random_order == again and random_order != other and random_order != file_order
    for seq in random_order:  # only equal-time events move: each day's three items stay in their day
        assert [sorted(seq[3 * k:3 * k + 3]) for k in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(DataError, match="unknown --ties"):
        prepare_source("csv", tmp_path / "log.csv", "x", tmp_path / "home", PrepareParams(k=1, ties="sorted"))
