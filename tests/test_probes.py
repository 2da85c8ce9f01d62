"""Probes: what they permute or split, hand-computed t-scores and rule counts, Holm, and a run of each."""

import numpy as np
import pytest

from seqbench.context import RunContext, seed_everything
from seqbench.data.histories import Histories
from seqbench.data.rules import count_rules, rules_ratio
from seqbench.models import create_model
from seqbench.probes import PROBES, ProbeContext, get_probe
from seqbench.probes.cosine import describe, rowwise_cosine
from seqbench.probes.cross_domain import map_items
from seqbench.probes.jaccard import jaccard_at_k
from seqbench.probes.transition import t_scores
from seqbench.probes.warm_cold import warm_cold_items
from seqbench.stats.multiple import aggregate_seeds, holm

SMALL = {"d": 16, "maxlen": 16, "max_epochs": 2, "eval_every": 1}


def _rows(*rows):
    lens = [len(r) for r in rows]
    return Histories(np.arange(1, len(rows) + 1), np.concatenate(rows).astype(np.int64),
                     np.arange(sum(lens)), np.concatenate([[0], np.cumsum(lens)]))


class Spy:
    """Records what a probe feeds the model; scores at random."""

    window = 8

    def __init__(self):
        self.calls = []

    def score(self, hist, cands):
        self.calls.append((hist, cands.copy()))
        return np.random.default_rng(len(self.calls)).random(cands.shape)

    def user_representation(self, hist):
        return np.stack([np.bincount(hist.row(b)[-3:] % 5, minlength=5) for b in range(len(hist))]) + 1.0


def _pc(model, data, **kw):
    return ProbeContext(model=model, data=data, run=RunContext(), fit=lambda d, h: model,
                        load_dataset=lambda n: data, **kw)


@pytest.mark.parametrize("name", ["shuffle-infer", "reverse", "recency", "cosine", "jaccard"])
def test_rearrangement_probes_keep_targets_candidates_and_times(tiny, name):
    spy = Spy()
    res = get_probe(name).run(_pc(spy, tiny))
    (h0, c0), (h1, c1) = spy.calls[-2:]
    assert (c0 == c1).all() and (c0 == tiny.candidates["test"]).all()
    assert (h0.times == h1.times).all() and (h0.offsets == h1.offsets).all() and (h0.users == h1.users).all()
    for b in range(len(h0)):  # same multiset of items, only the window moved
        r0, r1 = h0.row(b), h1.row(b)
        cut = max(0, len(r0) - 8)
        assert (r0[:cut] == r1[:cut]).all() and sorted(r0.tolist()) == sorted(r1.tolist())
    if name == "recency":
        assert all((h0.row(b)[:-2] == h1.row(b)[:-2]).all() for b in range(len(h0)))
    assert set(res.conditions) == {"original", "probed"} and res.test.kind == "paired"


def test_shuffle_train_trains_on_permuted_sequences_and_evaluates_on_original(tiny):
    seen = {}
    spy = Spy()

    def fit(d, train):
        seen["train"] = train
        return spy

    res = get_probe("shuffle-train").run(ProbeContext(spy, tiny, RunContext(), fit, lambda n: tiny))
    orig = tiny.histories("train")
    assert (seen["train"].times == orig.times).all()
    assert (seen["train"].items != orig.items).mean() > 0.5
    assert all(sorted(seen["train"].row(b).tolist()) == sorted(orig.row(b).tolist()) for b in range(len(orig)))
    evaluated = [h for h, _ in spy.calls]
    assert all((h.items == tiny.histories("test").items).all() for h in evaluated)  # original inputs only
    assert res.probe == "shuffle-train"


def test_t_score_hand_computed():
    # Pairs over all rows: (1,2) x2, (2,3) x1, (3,1) x1, (2,1) x1.
    h = _rows([1, 2, 3], [1, 2], [3, 1], [2, 1], [4])
    assert t_scores(h).tolist() == pytest.approx([(2 + 1) / 2, 2, 1, 1, 0])


def test_transition_split_halves_users(tiny):
    res = get_probe("transition").run(_pc(Spy(), tiny))
    n = res.probe_stats
    assert n["n_transition"] + n["n_non_transition"] == tiny.n_users
    assert abs(n["n_transition"] - n["n_non_transition"]) <= 1 and res.test.kind == "independent"


def test_warm_cold_items_split():
    counts = np.array([0, 50, 40, 30, 20, 10, 5, 5, 4, 3, 1])  # items 1..10
    warm, cold = warm_cold_items(counts, 0.3)
    assert np.flatnonzero(warm).tolist() == [1, 2, 3]
    assert np.flatnonzero(cold).tolist() == [8, 9, 10]
    assert not warm[0] and not cold[0]


def test_rules_hand_computed():
    # (1,2) occurs 6 times, (1,3) once: confidence of 1->2 is 6/7 > 0.1, support 6 > 5: one 2-gram rule;
    # (2,9) occurs 6 times with antecedent 2 seen 6 times. (1,2,9) occurs 6 times too.
    rows = [[1, 2, 9]] * 6 + [[1, 3]]
    h = _rows(*[np.array(r) for r in rows])
    assert count_rules(h, 2) == 2
    assert count_rules(h, 3) == 1
    assert count_rules(h, 2, min_support=6) == 0
    ratio = rules_ratio(_rows(*[np.array([1, 2, 3, 4, 5, 6, 7, 8])] * 20), seed=0)
    assert ratio["rules_2gram_original"] == 7 and ratio["rules_2gram_ratio"] < 0.5


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, 0.5]
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> monotone 0.09, 0.5*1=0.5
    assert holm(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]).tolist() == []


def test_seed_aggregate():
    s = aggregate_seeds([0.5, 0.52, 0.48], [0.3, 0.31, 0.29], [-0.4, -0.4, -0.4], [0.001, 0.2, 0.01])
    assert s.significant_seeds == 2 and s.t_p_value < 0.01
    assert s.original_ci95[0] < 0.5 < s.original_ci95[1]


def test_cosine_and_jaccard_helpers():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 0.0]])
    assert rowwise_cosine(a, b).tolist() == pytest.approx([0.0, 1.0, 1.0])
    s = np.arange(20, dtype=float)[None]
    assert jaccard_at_k(s, s, 10).tolist() == [1.0]
    assert jaccard_at_k(s, -s, 10).tolist() == [0.0]
    moved = s.copy()
    moved[0, :5] += 100  # top-10 becomes items 0-4 and 15-19: 5 shared of 15
    assert jaccard_at_k(s, moved, 10)[0] == pytest.approx(5 / 15)


def test_cosine_histogram_counts_every_unchanged_user():
    """Identical vectors (a user whose window did not move, an order-blind model) must land in the last bin:
    unclipped, rounding put some at 1 + 2e-16, outside the histogram's range, and they went uncounted."""
    a = np.random.default_rng(0).normal(size=(200, 64)).astype(np.float32)
    cos = rowwise_cosine(a, a)
    assert cos.max() <= 1.0 and cos.min() >= -1.0
    assert describe(cos, "cosine")["cosine_histogram"]["counts"][-1] == 200


def test_cross_domain_mapping(tiny):
    table, known = map_items(tiny, tiny)
    assert known == 1.0 and (table[1:] == np.arange(1, tiny.n_items + 1)).all()


@pytest.mark.parametrize("protocol", ["sampled", "full-unseen"])
@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_probe_runs_on_a_trained_sasrec(tiny, name, protocol):
    seed_everything(0)
    model = create_model("sasrec", tiny.n_items, SMALL)
    model.fit(tiny, tiny.histories("train"), RunContext())

    def fit(d, h):
        m = create_model("sasrec", d.n_items, SMALL)
        m.fit(d, h, RunContext())
        return m

    res = get_probe(name).run(ProbeContext(model, tiny, RunContext(), fit, lambda n: tiny,
                                           {"target": "tiny"}, protocol=protocol))
    assert 0 <= res.test.p_value <= 1 and np.isfinite(res.test.relative_change)
    assert {c.protocol for c in res.conditions.values()} == {protocol}  # every condition ranked the same way
    if name == "cosine":
        assert -1 <= res.probe_stats["cosine_mean"] <= 1
    if name == "jaccard":
        assert 0 <= res.probe_stats["jaccard_at_10"] <= 1


LM_BASED = {"ctrl": SMALL | {"text_encoder": "tiny-random"},
            "recformer": {"encoder": "tiny-random", "maxlen": 6, "max_item_tokens": 10, "n_layers": 1,
                          "max_epochs": 1, "stage2_epochs": 1, "dtype": "fp32"}}


@pytest.fixture(scope="module")
def lm_based(tiny, tmp_path_factory):
    """Each LM-based model trained once on tiny (text caches in a temporary folder)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQBENCH_CACHE", str(tmp_path_factory.mktemp("lm_cache")))
    models = {}
    for name, settings in LM_BASED.items():
        seed_everything(0)
        models[name] = create_model(name, tiny.n_items, settings)
        models[name].fit(tiny, tiny.histories("train"), RunContext())
    yield models
    mp.undo()


@pytest.mark.parametrize("model_name", sorted(LM_BASED))
@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_probe_runs_on_the_lm_based_models(tiny, lm_based, model_name, name):
    def fit(d, h):
        m = create_model(model_name, d.n_items, LM_BASED[model_name])
        m.fit(d, h, RunContext())
        return m

    model = lm_based[model_name]
    res = get_probe(name).run(ProbeContext(model, tiny, RunContext(), fit, lambda n: tiny, {"target": "tiny"}))
    assert 0 <= res.test.p_value <= 1 and np.isfinite(res.test.relative_change)
    if name in ("shuffle-infer", "cosine", "reverse", "jaccard"):
        assert res.probe_stats["window"] == model.window


@pytest.mark.parametrize("name,settings", [
    ("gru4rec", {"d": 16, "maxlen": 16, "max_epochs": 2, "eval_every": 1}),
    ("bert4rec", {"d": 16, "maxlen": 16, "max_epochs": 2, "eval_every": 1}),
    ("nextitnet", {"d": 16, "maxlen": 16, "max_epochs": 2, "eval_every": 1}),
    ("pop", {}),
])
def test_shuffle_infer_and_cosine_run_on_every_cf_model(tiny, name, settings):
    seed_everything(0)
    model = create_model(name, tiny.n_items, settings)
    model.fit(tiny, tiny.histories("train"), RunContext())
    for probe in ("shuffle-infer", "cosine"):
        res = get_probe(probe).run(_pc(model, tiny))
        assert 0 <= res.test.p_value <= 1
        assert res.probe_stats["window"] == model.window


class WideSpy(Spy):
    window = 128


class _Recorder:
    """Delegates to a real model and records the histories it is asked to score."""

    def __init__(self, model):
        self.model, self.window, self.calls = model, model.window, []

    def score(self, hist, cands):
        self.calls.append(hist)
        return self.model.score(hist, cands)


@pytest.mark.parametrize("name", ["shuffle-infer", "reverse", "cosine", "jaccard"])
def test_window_option_gives_every_model_the_identical_rearrangement(tiny, name):
    narrow, wide = Spy(), WideSpy()
    own = [get_probe(name).run(_pc(m, tiny)) for m in (narrow, wide)]
    assert [r.probe_stats["window"] for r in own] == [8, 128]
    fixed = [get_probe(name).run(_pc(m, tiny, options={"window": "3"})) for m in (narrow, wide)]
    a, b = narrow.calls[-1][0], wide.calls[-1][0]
    assert (a.items == b.items).all() and (a.items != tiny.histories("test").items).any()
    test = tiny.histories("test")
    for r in range(len(test)):  # only the last 3 items may move
        assert (a.row(r)[:-3] == test.row(r)[:-3]).all()
    assert all(r.probe_stats["window"] == 3 and r.probe_stats["window_source"] == "option" for r in fixed)
    assert fixed[0].probe_stats["model_window"] == 8 and fixed[1].probe_stats["model_window"] == 128


def test_window_option_is_identical_across_two_trained_models(tiny):
    """sasrec (maxlen 16) and gru4rec (maxlen 12) with window=5 score exactly the same permuted histories."""
    recorders = []
    for name, maxlen in (("sasrec", 16), ("gru4rec", 12)):
        seed_everything(0)
        model = create_model(name, tiny.n_items, {**SMALL, "maxlen": maxlen, "max_epochs": 1})
        model.fit(tiny, tiny.histories("train"), RunContext())
        rec = _Recorder(model)
        get_probe("shuffle-infer").run(_pc(rec, tiny, options={"window": "5"}))
        recorders.append(rec)
    (o1, p1), (o2, p2) = (r.calls for r in recorders)
    assert (p1.items == p2.items).all() and (o1.items == o2.items).all() and (p1.items != o1.items).any()


def test_window_larger_than_the_model_window_is_capped(tiny):
    res = get_probe("shuffle-infer").run(_pc(Spy(), tiny, options={"window": "50"}))
    assert res.probe_stats["window"] == 8 and res.probe_stats["window_requested"] == 50
    assert "capped" in res.probe_stats["window_source"]


def test_shuffle_train_window_moves_only_the_last_k_train_items(tiny):
    seen = {}
    spy = Spy()

    def fit(d, train):
        seen["train"] = train
        return spy

    res = get_probe("shuffle-train").run(ProbeContext(spy, tiny, RunContext(), fit, lambda n: tiny, {"window": "2"}))
    orig = tiny.histories("train")
    assert all((seen["train"].row(b)[:-2] == orig.row(b)[:-2]).all() for b in range(len(orig)))
    assert (seen["train"].items != orig.items).any() and res.probe_stats["window"] == 2


def test_probe_options_are_validated_against_declared_keys():
    from seqbench.errors import OptionError
    from seqbench.probes import validate_probe_options

    probes = [get_probe("shuffle-infer"), get_probe("transition")]
    assert validate_probe_options(probes, {"window": "10"}) == {"window": 10}
    with pytest.raises(OptionError, match=r"'foo'.*shuffle-infer: user_rep, window; transition: \(none\)") as e:
        validate_probe_options(probes, {"foo": "1"})
    assert e.value.exit_code == 2
    for bad in ("0", "-3", "ten"):
        with pytest.raises(OptionError, match=f"window={bad}"):
            validate_probe_options(probes, {"window": bad})
    with pytest.raises(OptionError, match="'target'"):
        validate_probe_options(probes, {"target": "x"})
    assert validate_probe_options([get_probe("order-horizon")], {"grid": "10/2/5"}) == {"grid": [2, 5, 10]}
    assert validate_probe_options(probes, {"user_rep": "original"}) == {"user_rep": "original"}
    with pytest.raises(OptionError, match="user_rep=latest: expected 'probed' or 'original'"):
        validate_probe_options(probes, {"user_rep": "latest"})
    assert all(isinstance(get_probe(n).option_help, dict) for n in PROBES)


def test_horizon_grid_is_capped_at_the_window_and_the_longest_history():
    from seqbench.probes.order_horizon import horizon_grid

    assert horizon_grid(128) == [2, 3, 5, 10, 20, 50, 128]
    assert horizon_grid(10) == [2, 3, 5, 10]
    assert horizon_grid(128, longest=15) == [2, 3, 5, 10, 20]
    assert horizon_grid(128, [4, 300]) == [4]
    assert horizon_grid(1) == horizon_grid(0) == []


class PositionModel:
    """Knows each user's target and the item at one history position: scores the target first exactly
    when that position still holds the original item, else last. It uses order at depth ``depth`` only
    (``None``: ignores the history; rows shorter than ``depth`` always hit)."""

    window = 20

    def __init__(self, data, depth: int | None):
        self.depth = depth
        test = data.histories("test")
        self.key = {int(u): int(test.row(b)[-depth]) for b, u in enumerate(test.users)
                    if depth and len(test.row(b)) >= depth}

    def score(self, hist, cands):
        s = np.full(cands.shape, 0.0)
        for b, u in enumerate(hist.users):
            want = self.key.get(int(u))
            s[b, 0] = 1.0 if want is None or int(hist.row(b)[-self.depth]) == want else -1.0
        return s


@pytest.mark.parametrize("depth,expected", [(None, None), (1, 2), (5, 5)])
def test_order_horizon_finds_the_depth_a_model_reads(tiny, depth, expected):
    """An order-free model: no K significant; a model reading the last item: significant from K=2 (the
    swap); one reading only the 5th most recent item: unaffected by K=2,3, significant from K=5."""
    res = get_probe("order-horizon").run(_pc(PositionModel(tiny, depth), tiny))
    st = res.probe_stats
    longest = int(tiny.histories("test").lengths.max())
    assert st["grid"] == [k for k in (2, 3, 5, 10) if k < longest] + [next(k for k in (2, 3, 5, 10, 20)
                                                                          if k >= longest)]
    assert st["smallest_significant_k"] == expected
    curve = {c["k"]: c for c in st["horizon"]}
    assert set(curve) == set(st["grid"])
    if depth == 5:
        assert curve[2]["relative_change"] == curve[3]["relative_change"] == 0 and curve[5]["relative_change"] < 0
    if expected is None:
        assert res.test.p_value == 1.0 and all(c["p_holm"] == 1.0 for c in st["horizon"])
    else:
        assert res.test.p_value == min(c["p_holm"] for c in st["horizon"]) < 0.05
    ks = sorted({s for _, _, s in res.steps})
    assert ks == st["grid"] and {n for n, _, _ in res.steps} >= {"horizon_relative_change", "horizon_p_holm"}
