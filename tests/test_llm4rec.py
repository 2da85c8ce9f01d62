"""The four LLM4Rec baselines (docs/models/llm4rec.md) on the shared core, with the seeded ``tiny-random`` LLM."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from seqbench.context import RunContext, seed_everything
from seqbench.llm.prompts import TEXT_PROMPT, USER_REP_PROMPT, item_prompt_text, user_prompt_text
from seqbench.models import create_model
from seqbench.models.llm.base import shared_llm
from seqbench.models.llm.data import TEACHER_MAXLEN, training_examples

T1, T2 = 1614816000000, 1620345599000  # 2021-03-04, 2021-05-06 (UTC)
BASELINES = ("tallrec", "llara", "collm", "a-llmrec")
HEADS = {"tallrec": {"f_user", "f_item", "e_U", "e_I"},
         "llara": {"f_I", "f_user", "f_item", "e_U", "e_I"},
         "collm": {"f_I", "f_U", "f_user", "f_item", "e_U", "e_I"},
         "a-llmrec": {"f_I", "f_U", "f_user", "f_item", "e_U", "e_I"}}
LORA = {"tallrec": {"q_proj", "v_proj"}, "collm": {"q_proj", "v_proj"},
        "llara": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, "a-llmrec": set()}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One temporary cache and trained-model store for the module: the SASRec teacher (1 epoch) is trained
    once and shared, as it is between runs."""
    names = ("SEQBENCH_CACHE", "SEQBENCH_MODEL_STORE")
    old = {k: os.environ.get(k) for k in names}
    path = tmp_path_factory.mktemp("cache")
    os.environ["SEQBENCH_CACHE"] = str(path)
    os.environ["SEQBENCH_MODEL_STORE"] = str(path / "models")
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def fresh_model_store():
    """Overrides the suite's per-test empty store: this module shares one (see ``cache``)."""


def build(name: str, tiny, **settings):
    layer = {"llm": "tiny-random", "dtype": "fp32", "teacher_epochs": 1, "max_valid_users": 10}
    if name == "a-llmrec":
        layer |= {"text_encoder": "tiny-random", "stage1_epochs": 3}
    model = create_model(name, tiny.n_items, layer, settings)
    return model


def set_up(name: str, tiny, ctx: RunContext | None = None, **settings):
    model = build(name, tiny, **settings)
    model.setup(tiny, tiny.histories("train"), ctx or RunContext(seed=0))
    return model


def batch(model, tiny, n: int = 8):
    hist, tgt = training_examples(tiny.histories("train"), autoregressive=False)
    hist = hist.tail(TEACHER_MAXLEN).take(np.arange(n))
    return hist, tgt[:n], (model.teacher_user(hist) if model.teacher is not None else None)


# -- prompts -----------------------------------------------------------------------------------------------
def test_golden_prompt_strings(tiny):
    assert user_prompt_text(["A", "B"], [T1, T2], template=TEXT_PROMPT) == (
        "This user has made a series of purchases in the following order: "
        'Item No.1, Time: 2021-03-04, "A",Item No.2, Time: 2021-05-06, "B". '
        "Based on this sequence of purchases, generate user representation token:[UserOut]")
    assert item_prompt_text("Heat (1995)", TEXT_PROMPT) == (
        'The item title is as follows: "Heat (1995)", then generate item representation token:[ItemOut]')
    collm = ("This is user representation from recommendation models:[UserRep], and this user has made a series of "
             'purchases in the following order: Item No.1, Time: 2021-03-04, "A"[HistoryEmb]. Based on this '
             "sequence of purchases and user representation, generate user representation token:[UserOut]")
    assert user_prompt_text(["A"], [T1], template=USER_REP_PROMPT) == collm
    hybrid_item = ('The item title and item embedding are as follows: "Heat (1995)"[HistoryEmb], then generate '
                   "item representation token:[ItemOut]")
    llmsrec = create_model("llmsrec", tiny.n_items)
    for name, user, item in (("tallrec", TEXT_PROMPT, TEXT_PROMPT), ("llara", llmsrec.template(), hybrid_item),
                             ("collm", USER_REP_PROMPT, hybrid_item), ("a-llmrec", USER_REP_PROMPT, hybrid_item)):
        t = build(name, tiny).template()
        assert user_prompt_text(["A"], [T1], template=t) == user_prompt_text(["A"], [T1], template=user)
        assert item_prompt_text("Heat (1995)", t) == (item if isinstance(item, str) else item_prompt_text(
            "Heat (1995)", item))


def test_text_only_prompt_tokenises_like_the_whole_string(tiny):
    model = build("tallrec", tiny)
    model._setup_llm(torch.device("cpu"))
    model._setup_prompts(tiny.titles)
    hist = tiny.histories("test").take(np.arange(3))
    for text, ids in zip(model.builder.user_texts(hist), model.builder.users(hist).ids, strict=True):
        assert "[HistoryEmb]" not in text and ids.tolist() == model.tok(text).input_ids
    assert model.builder.items(np.array([4]))[0].tolist() == model.tok(item_prompt_text(tiny.titles[4],
                                                                                        TEXT_PROMPT)).input_ids


# -- what trains ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
def test_only_adapters_and_heads_train_and_loss_decreases(name, tiny):
    model = set_up(name, tiny)
    assert (model.teacher is None) == (name == "tallrec")
    heads = {n.split(".")[0] for n, p in model.heads.named_parameters() if p.requires_grad}
    assert heads == HEADS[name]
    lora = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert all(".lora_A." in n or ".lora_B." in n for n in lora)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in lora} == LORA[name]
    assert len(model.trainable_parameters()) == sum(p.requires_grad for p in model.heads.parameters()) + len(lora)
    base = {n: p.detach().clone() for n, p in model.llm.named_parameters() if not p.requires_grad}
    shared = {n: p.detach().clone() for n, p in shared_llm("tiny-random", "fp32", torch.device("cpu"))[0]
              .named_parameters()}
    frozen_cf = [p.detach().clone() for p in model.teacher.net.parameters()] if model.teacher else []
    before = {n: p.detach().clone() for n, p in [*model.heads.named_parameters(), *model.llm.named_parameters()]
              if p.requires_grad}
    opt = torch.optim.Adam(model.trainable_parameters(), lr=3e-4)
    hist, tgt, o_u = batch(model, tiny)
    seed_everything(0)  # LoRA dropout's global generator and deterministic kernels, whatever ran before
    losses = []
    for step in range(8):
        model.set_training(True)
        loss, parts = model.batch_loss(hist, tgt, o_u, np.random.default_rng(0))  # same negatives each step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step == 0:
            after = dict([*model.heads.named_parameters(), *model.llm.named_parameters()])
            changed = {n for n, v in before.items() if not torch.equal(v, after[n])}
            assert {n.split(".")[0] for n in changed if "lora_" not in n} == HEADS[name]
            # LoRA B starts at zero, so the first step moves every B (A's gradient is B^T dL = 0 at step 1)
            assert {n for n in changed if ".lora_B." in n} == {n for n in lora if ".lora_B." in n}
    assert set(parts) == {"retrieval"}
    assert losses[-1] < 0.85 * losses[0], losses
    assert all(torch.equal(v, dict(model.llm.named_parameters())[n]) for n, v in base.items())  # base: bit-identical
    shared_now = dict(shared_llm("tiny-random", "fp32", torch.device("cpu"))[0].named_parameters())
    assert shared.keys() == shared_now.keys() and all(torch.equal(v, shared_now[n]) for n, v in shared.items())
    if model.teacher is not None:
        assert all(torch.equal(a, b) for a, b in zip(frozen_cf, model.teacher.net.parameters(), strict=True))


def test_lora_model_and_llmsrec_in_one_process_do_not_affect_each_other(tiny, monkeypatch):
    from seqbench.models.cf.sasrec import SASRec

    frozen = set_up("llmsrec", tiny)
    hist, cands = tiny.histories("test").take(np.arange(4)), tiny.candidates["test"][:4]
    ref = frozen.score(hist, cands)
    monkeypatch.setattr(SASRec, "fit", lambda *a: pytest.fail("the teacher should come from the shared cache"))
    a, b = set_up("llara", tiny), set_up("llara", tiny)
    assert a.llm is not b.llm and a.llm is not frozen.llm
    assert not any("lora_" in n for n, _ in frozen.llm.named_parameters())
    opt = torch.optim.Adam(a.trainable_parameters(), lr=1e-2)
    h, t, o_u = batch(a, tiny)
    for _ in range(2):
        loss, _ = a.batch_loss(h, t, o_u, np.random.default_rng(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_array_equal(frozen.score(hist, cands), ref)
    sa, sb = a.trainable_state()["lora"], b.trainable_state()["lora"]
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # a trained, b untouched


# -- A-LLMRec's two stages --------------------------------------------------------------------------------
def test_allmrec_stage1_hands_off_a_frozen_item_table_and_is_cached(tiny, monkeypatch):
    from seqbench.models.llm import allmrec

    logged: list[tuple[str, float, int]] = []
    # seed 1: a teacher and stage 1 of their own (the other tests cached seed 0's)
    model = set_up("a-llmrec", tiny, RunContext(seed=1, log_metric=lambda *p: logged.append(p)))
    curve = [v for n, v, _ in logged if n == "stage1_loss"]
    assert len(curve) == 3 and curve[-1] < curve[0]
    stage1 = model.stage1
    assert not stage1.training and not any(p.requires_grad for p in stage1.parameters())
    with torch.no_grad():
        expected = torch.sigmoid(stage1.enc_I(model.teacher.net.item.weight))
    assert model.E.shape == (tiny.n_items + 1, 128) and torch.equal(model.E, expected)
    assert model.heads.f_I[0].in_features == 128 and isinstance(model.heads.f_I[2], torch.nn.GELU)
    frozen = {k: v.clone() for k, v in stage1.state_dict().items()}
    opt = torch.optim.Adam(model.trainable_parameters(), lr=3e-4)
    loss, _ = model.batch_loss(*batch(model, tiny), np.random.default_rng(0))
    loss.backward()
    opt.step()
    assert all(torch.equal(v, stage1.state_dict()[k]) for k, v in frozen.items())

    def no_training(*args, **kwargs):
        raise AssertionError("stage 1 should come from the cache")

    monkeypatch.setattr(allmrec, "train_stage1", no_training)
    again = set_up("a-llmrec", tiny, RunContext(seed=1))
    assert torch.equal(again.E, model.E)


def test_allmrec_stage1_cache_is_keyed_by_the_teachers_identity(tiny, monkeypatch):
    """The same teacher finds its stage 1 in the cache; another teacher (another setting, or the same settings
    under another code version, which retrains it under a new identity) trains its own."""
    from seqbench.models.llm import allmrec

    trained: list[str] = []
    real = allmrec.train_stage1

    def counted(*args, **kwargs):
        trained.append("stage 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(allmrec, "train_stage1", counted)
    first = set_up("a-llmrec", tiny, RunContext(seed=2))  # seed 2: nothing cached for it yet
    same = set_up("a-llmrec", tiny, RunContext(seed=2))
    assert len(trained) == 1 and same.teacher_identity == first.teacher_identity
    assert torch.equal(same.E, first.E)
    other = set_up("a-llmrec", tiny, RunContext(seed=2), teacher_patience=3)
    assert other.teacher_identity != first.teacher_identity and len(trained) == 2
    # only the teacher sees the new version (it reads code_version when it is built): stage 1 follows it
    monkeypatch.setattr("seqbench.version.code_version", lambda: "0.0.0+another")
    newer = set_up("a-llmrec", tiny, RunContext(seed=2))
    assert newer.teacher_identity not in (first.teacher_identity, other.teacher_identity)
    assert len(trained) == 3
    key = newer.stage1_key(tiny, tiny.histories("train"), 2)
    assert key["teacher"] == newer.teacher_identity and key["code"] == allmrec.code_version()


@pytest.mark.parametrize("name", ["a-llmrec", "tallrec"])
def test_save_load_round_trip(name, tiny, tmp_path):
    model = set_up(name, tiny)
    if model.peft is not None:  # move the adapters off their initial values, so loading them is tested
        opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
        loss, _ = model.batch_loss(*batch(model, tiny), np.random.default_rng(0))
        loss.backward()
        opt.step()
    model.save(tmp_path / "m")
    other = build(name, tiny)
    other.load(tmp_path / "m")
    if model.peft is not None:
        a, b = model.trainable_state()["lora"], other.trainable_state()["lora"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hist, cands = tiny.histories("test").take(np.arange(4)), tiny.candidates["test"][:4]
    np.testing.assert_allclose(model.score(hist, cands), other.score(hist, cands), rtol=1e-5, atol=1e-5)


def test_cli_trains_and_probes_a_baseline(tiny_home, tracking_uri, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts under ./mlruns of the working directory

    from typer.testing import CliRunner

    from seqbench.cli import app

    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["run", "--model", "collm", "--llm", "tiny-random", "--dtype", "fp32", "--probe",
                                 "shuffle-infer", "--dataset", "tiny", "--data-home", str(tiny_home), "--tracking-uri",
                                 tracking_uri, "--set", "teacher_epochs=1,max_epochs=1,batch_size=32,max_valid_users=4,"
                                 "val_every_frac=1.0,lora_targets=q_proj;k_proj", "--output", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["model"] == "collm" and result["probe_stats"]["window"] == 10
    assert set(result["metrics"]) == {"original", "probed"}
    # a tiny LLM on a short schedule: a proxy, recorded by name in the result and in the run's tags
    assert result["recipe"] == "custom"
    assert {"llm", "batch_size", "lora_targets", "teacher_epochs"} <= set(result["recipe_changes"])
    import mlflow

    assert mlflow.MlflowClient(tracking_uri).get_run(result["mlflow_run_id"]).data.tags["recipe"] == "custom"


def test_user_states_are_computed_once_per_history_and_weights(tiny, monkeypatch):
    """cosine scores the original and shuffled histories, then asks for f_user and raw h_U of both: two LLM
    passes, not six; a weight change invalidates the cache."""
    from seqbench.probes import ProbeContext, get_probe

    model = set_up("tallrec", tiny)
    calls = []
    real = model.user_states_all
    monkeypatch.setattr(model, "user_states_all", lambda h: calls.append(len(h)) or real(h))
    pc = ProbeContext(model=model, data=tiny, run=RunContext(seed=0), fit=lambda *_: None,
                      load_dataset=lambda n: tiny)
    res = get_probe("cosine").run(pc)
    assert len(calls) == 2 and 0 < res.probe_stats["cosine_mean"] <= 1
    hist = tiny.histories("test")
    cached = model.user_representation(hist)
    assert len(calls) == 2
    model._user_cache.clear()
    np.testing.assert_allclose(model.user_representation(hist), cached, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        model.heads.e_U.add_(1.0)  # an in-place change of a trained tensor: new weights, new states
    model.user_representation(hist)
    assert len(calls) == 4


def test_pinned_user_rep_keeps_the_original_cf_representation_while_the_history_moves(tiny, monkeypatch):
    """shuffle-infer with user_rep=original: [UserRep] = f_U(O_u) of the unshuffled history, the history tokens
    shuffled; the pin is looked up by user, keys its own cache entries and ends with the block."""
    from seqbench.data.permutation import PERMUTATION_SEED, permute_tail
    from seqbench.errors import OptionError, SeqbenchError
    from seqbench.probes import ProbeContext, get_probe

    model = set_up("collm", tiny)
    hist, cands = tiny.histories("test"), tiny.candidates["test"]
    moved = permute_tail(hist, 10, PERMUTATION_SEED)
    o_orig, o_moved = model.teacher_user(hist), model.teacher_user(moved)
    assert not torch.allclose(o_orig, o_moved)  # SASRec's O_u is order-sensitive, so pinning matters
    free, unmoved = model.score(moved, cands), model.score(hist, cands)
    with model.pinned_user_rep(hist):
        rows = np.array([2, 0])
        assert torch.equal(model.teacher_user(moved.take(rows)), o_orig[torch.from_numpy(rows)])
        pinned = model.score(moved, cands)
        np.testing.assert_allclose(model.score(hist, cands), unmoved, rtol=1e-6, atol=1e-6)  # its own O_u
    assert not np.allclose(pinned, free)
    np.testing.assert_allclose(model.score(moved, cands), free, rtol=1e-6, atol=1e-6)  # not the pinned entry
    monkeypatch.setattr(model.teacher, "user_representation", lambda h: o_orig.cpu().numpy())  # = pinning
    model._user_cache.clear()
    np.testing.assert_allclose(model.score(moved, cands), pinned, rtol=1e-5, atol=1e-5)

    pc = ProbeContext(model=model, data=tiny, run=RunContext(seed=0), fit=lambda *_: None,
                      load_dataset=lambda n: tiny, options={"user_rep": "original", "window": "10"})
    assert get_probe("shuffle-infer").run(pc).probe_stats["user_rep"] == "original"

    text_only = set_up("tallrec", tiny)
    with pytest.raises(SeqbenchError, match="no \\[UserRep\\] token"), text_only.pinned_user_rep(hist):
        pass
    pc.model = text_only
    with pytest.raises(OptionError, match="user_rep=original: tallrec has no CF user representation"):
        get_probe("shuffle-infer").run(pc)
