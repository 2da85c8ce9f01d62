"""The title-generation task (docs/models/llm4rec.md) on the LLM4Rec baselines, with the seeded ``tiny-random`` LLM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from seqbench.context import seed_everything
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.eval.evaluator import evaluate
from seqbench.models import create_model
from seqbench.models.llm.base import shared_llm
from seqbench.models.llm.generation import GenerationPrompts, collate_left, generate_titles, listing_order

from .test_llm4rec import BASELINES, LORA, T1, T2, batch, build, cache, fresh_model_store, set_up  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
GEN_HEADS = {"tallrec": set(), "llara": {"f_I"}, "collm": {"f_I", "f_U"}, "a-llmrec": {"f_I", "f_U"}}


def test_listing_order_is_seeded_per_user_and_item_and_ignores_other_rows():
    cands = np.array([[5, 1, 9, 3], [7, 2, 8, 4], [5, 1, 9, 3]])
    order = listing_order(np.array([1, 2, 3]), cands)
    assert all(sorted(row) == [0, 1, 2, 3] for row in order.tolist())
    np.testing.assert_array_equal(listing_order(np.array([2]), cands[1:2]), order[1:2])  # subsets keep the order
    firsts = {tuple(listing_order(np.array([u]), cands[:1])[0]) for u in range(1, 30)}
    assert len(firsts) > 5  # different users, different orders of the same items


def test_golden_generation_prompts(tiny):
    hist = Histories(np.array([1]), np.array([3, 4]), np.array([T1, T2]), np.array([0, 2]))
    listed = np.array([[7, 2]])
    t = tiny.titles
    for name, line, cand, prefix in (
            ("tallrec", 'Item No.{k}, Time: {d}, "{t}"', '"{t}"',
             "This user has made a series of purchases in the following order: "),
            ("collm", 'Item No.{k}, Time: {d}, "{t}"[HistoryEmb]', '"{t}"[HistoryEmb]',
             "This is user representation from recommendation models:[UserRep], and this user has made a series of "
             "purchases in the following order: ")):
        model = set_up(name, tiny, task="generation")
        assert model.config.generation_prompt == "paper"  # the default: the paper's Table 1 wording
        texts, _ = GenerationPrompts(model).texts(hist, listed)
        lines = ",".join(line.format(k=k, d=d, t=t[i]) for k, d, i in ((1, "2021-03-04", 3), (2, "2021-05-06", 4)))
        cands = ",".join(cand.format(t=t[i]) for i in (7, 2))
        assert texts == [prefix + lines + '. Choose one "Title" to recommend for this user to buy next from the '
                         'following item "Title" set: ' + cands + "."]
        model.config.generation_prompt = "seqbench"  # the named variant: seqbench's earlier wording
        texts, _ = GenerationPrompts(model).texts(hist, listed)
        assert texts == [prefix + lines + ". The candidate items are: " + cands
                         + ". Which candidate will this user purchase next? Answer with its title only:"]
        ids, soft = GenerationPrompts(model).prompts(hist, listed)
        assert ids[0].tolist() == model.tok(texts[0]).input_ids  # pieces assemble to the whole string's tokens
        assert soft.tolist() == ([3, 4, 7, 2] if name == "collm" else [])
        answer = GenerationPrompts(model).answer(7)
        assert answer[-1] == model.tok.eos_token_id
        assert model.tok.decode(answer[:-1]) == " " + t[7]


def test_generation_prompt_setting_is_validated_and_selectable(tiny):
    model = build("llara", tiny, task="generation", generation_prompt="seqbench")
    assert model.config.generation_prompt == "seqbench"
    with pytest.raises(SeqbenchError, match="generation_prompt"):
        build("llara", tiny, task="generation", generation_prompt="mine")


@pytest.mark.parametrize("name", BASELINES)
def test_generation_trains_projections_and_adapters_only_and_loss_decreases(name, tiny):
    model = set_up(name, tiny, task="generation")
    lora = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in lora} == LORA[name]
    heads = {id(p): n.split(".")[0] for n, p in model.heads.named_parameters()}
    trained = {heads[id(p)] for p in model.trainable_parameters() if id(p) in heads}
    assert trained == GEN_HEADS[name]  # the retrieval heads (f_user, f_item, e_U, e_I) are not in the optimizer
    base = {n: p.detach().clone() for n, p in model.llm.named_parameters() if not p.requires_grad}
    unused = {n: p.detach().clone() for n, p in model.heads.named_parameters() if n.split(".")[0] not in trained}
    opt = torch.optim.Adam(model.trainable_parameters(), lr=2e-2)
    hist, tgt, o_u = batch(model, tiny)
    seed_everything(0)  # LoRA dropout's global generator and deterministic kernels, whatever ran before
    losses = []
    for _ in range(8):
        model.set_training(True)
        loss, parts = model.batch_loss(hist, tgt, o_u, np.random.default_rng(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(parts) == {"generation"}
    # the tiny random LLM's LM head is frozen and its logits near-uniform, so the drop is small but steady
    assert min(losses[-3:]) < losses[0] - 0.01, losses
    now = dict(model.llm.named_parameters())
    assert all(torch.equal(v, now[n]) for n, v in base.items())  # base weights bit-identical
    heads_now = dict(model.heads.named_parameters())
    assert all(torch.equal(v, heads_now[n]) for n, v in unused.items())
    shared = shared_llm("tiny-random", "fp32", torch.device("cpu"))[0]
    assert not any(p.requires_grad for p in shared.parameters())


def test_batched_left_padded_decoding_equals_one_row_at_a_time(tiny):
    model = set_up("collm", tiny, task="generation", user_batch_size=8)
    hist = tiny.histories("test").take(np.arange(5))
    cands = tiny.candidates["test_title"][:5]
    together = generate_titles(model, hist, cands)
    alone = [generate_titles(model, hist.take(np.array([i])), cands[i:i + 1])[0] for i in range(5)]
    assert together == alone and all(isinstance(t, str) for t in together)
    ids, mask = collate_left([np.array([1, 2, 3]), np.array([4])], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_evaluation_scores_decoded_titles_with_the_matching_rule(tiny, monkeypatch):
    model = set_up("tallrec", tiny, task="generation")
    hist = tiny.histories("test").take(np.arange(4))
    cands = tiny.candidates["test_title"][:4]
    answers = [f"I think {tiny.titles[cands[0, 0]]}", "nothing listed", tiny.titles[cands[2, 3]],
               f"{tiny.titles[cands[3, 0]]} or {tiny.titles[cands[3, 1]]}"]

    def fake(m, h, listed, task=None):  # the decoder's answers for the rows, in input order
        assert sorted(listed[0].tolist()) == sorted(cands[0].tolist())
        return answers[:len(h)]

    monkeypatch.setattr("seqbench.models.llm.generation.generate_titles", fake)
    res = evaluate(model, hist, cands, task="generation")
    assert res.metric == "hr@1" and res.outputs == answers
    assert res.per_user["hr@1"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert res.per_user["invalid"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert res.per_user["hr@1_lenient"].tolist() == [1.0, 0.0, 0.0, 1.0]  # row 3 names the target among others
    assert res.summary["hr@1"] == 0.25 and res.summary["hr@1_valid"] == 0.5 and res.summary["hr@1_lenient"] == 0.5
    with pytest.raises(SeqbenchError, match="generation"):
        model.score(hist, tiny.candidates["test"][:4])


def test_a_target_without_a_title_can_be_named(tiny, monkeypatch):
    """The prompt shows a missing title as "Empty title"; matching compares the same cleaned titles."""
    model = set_up("tallrec", tiny, task="generation")
    all_cands = tiny.candidates["test_title"]
    rows = np.array([0, int(np.flatnonzero(all_cands[:, 0] != all_cands[0, 0])[0])])  # two different targets
    hist = tiny.histories("test").take(rows)
    cands = all_cands[rows]
    titles = list(tiny.titles)
    titles[cands[0, 0]] = ""  # neither target has a title (the dataset keeps a missing one as "")
    titles[cands[1, 0]] = " \t"
    model._setup_prompts(titles)
    texts, _ = GenerationPrompts(model).texts(hist, cands)
    assert '"Empty title"' in texts[0]
    monkeypatch.setattr("seqbench.models.llm.generation.generate_titles",
                        lambda m, h, listed, task=None: ["Empty title", '"empty title"'])
    res = evaluate(model, hist, cands, task="generation")
    assert res.per_user["hr@1"].tolist() == [1.0, 1.0] and res.per_user["invalid"].tolist() == [0.0, 0.0]
    assert res.per_user["hr@1_lenient"].tolist() == [1.0, 1.0]


def test_llmsrec_refuses_the_generation_task(tiny):
    with pytest.raises(SeqbenchError, match="retrieval"):
        create_model("llmsrec", tiny.n_items, {"task": "generation"})


def _run(args, tiny_home, tracking_uri):
    from typer.testing import CliRunner

    from seqbench.cli import app

    return CliRunner().invoke(app, ["run", "--dataset", "tiny", "--data-home", str(tiny_home), "--tracking-uri",
                                    tracking_uri, *args], catch_exceptions=False)


def test_cli_generation_task_with_shuffle_probes(tiny_home, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    r = _run(["--model", "llara", "--llm", "tiny-random", "--dtype", "fp32", "--task", "generation", "--probe",
              "shuffle-infer,shuffle-train", "--set", "teacher_epochs=1,max_epochs=1,batch_size=50,max_valid_users=4,"
              "val_every_frac=1.0,max_new_tokens=8", "--output", str(out)], tiny_home, tracking_uri)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())["runs"]
    assert {x["probe"] for x in res} == {"shuffle-infer", "shuffle-train"}
    for x in res:
        assert x["task"] == "generation" and x["test"]["metric"] == "hr@1"
        assert set(x["metrics"]["original"]) == {"hr@1", "hr@1_valid", "hr@1_lenient", "invalid"}
        assert "best_valid_hr@1" in x["fit"]  # model selection on validation HR@1 of the decoded titles
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = [r for r in client.search_runs([client.get_experiment_by_name("seqbench").experiment_id])
            if r.data.tags.get("run_kind") == "probe"]  # the others: live training curves
    assert len(runs) == 2 and {r.data.tags["task"] for r in runs} == {"generation"}
    assert "generations.parquet" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    generated = pd.read_parquet(client.download_artifacts(runs[0].info.run_id, "generations.parquet", str(tmp_path)))
    assert {"output", "hr@1", "hr@1_lenient", "invalid"} <= set(generated.columns)


def test_cli_generation_reference_row_and_refusals(tiny_home, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "s.json"
    r = _run(["--model", "sasrec", "--task", "generation", "--set", "max_epochs=2", "--output", str(out)],
             tiny_home, tracking_uri)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["task"] == "generation" and res["test"]["metric"] == "hr@1"  # SASRec ranks the 20 title candidates
    m = res["metrics"]["original"]  # a ranking always names one candidate: the three HR@1 readings agree
    assert m["hr@1"] == m["hr@1_valid"] == m["hr@1_lenient"] and m["invalid"] == 0
    r = _run(["--model", "sasrec", "--task", "generation", "--probe", "cosine"], tiny_home, tracking_uri)
    assert r.exit_code == 2 and "cosine" in r.output and "shuffle-infer" in r.output
    r = _run(["--model", "llmsrec", "--task", "generation"], tiny_home, tracking_uri)
    assert r.exit_code == 2 and "llmsrec does not support --task generation" in r.output
    r = _run(["--model", "tallrec", "--set", "task=generation"], tiny_home, tracking_uri)
    assert r.exit_code == 2 and "--task" in r.output
