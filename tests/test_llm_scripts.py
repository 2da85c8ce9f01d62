"""The LLM scripts' shared pieces: one ``--set`` split over several models, bench_llm's CPU-recipe settings and
paper_pattern's per-dataset switches (tiny random LLM, seconds)."""

import json
from pathlib import Path

import numpy as np
import pytest

from seqbench.config import parse_model_sets, parse_sets
from seqbench.errors import SeqbenchError
from seqbench.models import settings_per_model

from .conftest import load_script as _script


def test_settings_per_model_gives_each_model_its_own_keys():
    got = settings_per_model(["tallrec", "a-llmrec", "llmsrec"],
                             {"batch_size": "4", "lora_r": "4", "stage1_epochs": "2"})
    assert got["tallrec"] == {"batch_size": "4", "lora_r": "4"}
    assert got["a-llmrec"] == {"batch_size": "4", "stage1_epochs": "2"}  # frozen LLM: no LoRA keys
    assert got["llmsrec"] == {"batch_size": "4"}
    with pytest.raises(SeqbenchError, match="lora_rank"):
        settings_per_model(["tallrec"], {"lora_rank": "4"})


def test_bench_llm_takes_the_cpu_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "b.json"
    _script("bench_llm").main(["--llm", "tiny-random", "--dtype", "fp32", "--dataset", "synthetic",
                               "--models", "tallrec", "--train-steps", "1", "--eval-users", "4",
                               "--eval-items", "8", "--ceiling-reps", "1", "--threads", "1",
                               "--teacher-epochs", "1", "--set", "batch_size=3,max_valid_users=5,val_every_frac=0.5",
                               "--out", str(out)])
    d = json.loads(out.read_text())["runs"][0]["result"]["models"]["tallrec"]["details"]
    assert d["batch_size"] == 3 and d["validation_users"] == 5 and d["validation_checks_per_epoch"] == 2
    assert d["settings"] == {"batch_size": "3", "max_valid_users": "5", "val_every_frac": "0.5"}
    with pytest.raises(SystemExit, match="no model among tallrec"):
        _script("bench_llm").main(["--models", "tallrec", "--set", "stage1_epochs=1"])


def test_paper_pattern_runs_one_dataset_and_keeps_the_other(tiny_home, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "pp.json"
    main = _script("paper_pattern").main
    common = ["--models", "sasrec", "--sasrec-set", "max_epochs=1,maxlen=16,d=16", "--data-home", str(tiny_home),
              "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out)]
    prev = {"datasets": {"synthetic_control": {"dataset": "kept", "rows": [], "pattern": {"holds": None}}}}
    out.write_text(json.dumps(prev))
    assert main([*common, "--beauty", "tiny", "--no-synthetic", "--resume"]) == 0
    got = json.loads(out.read_text())["datasets"]
    assert got["synthetic_control"] == prev["datasets"]["synthetic_control"]  # not run, kept as it was
    rows = {r["label"]: r for r in got["beauty_sample"]["rows"]}
    assert set(rows) == {"sasrec", "sasrec (own window)"} and rows["sasrec"]["window_used"] == 10
    assert 0 <= rows["sasrec"]["vs_pop"]["p_holm"] <= 1 and got["beauty_sample"]["complete"] is False
    assert "cpu_flags" in rows["sasrec"]["machine"] and rows["sasrec"]["dtype_resolved"].startswith("torch.")


def test_paper_pattern_sets_aside_rows_of_other_settings_and_reruns_pop_in_a_new_store(tiny_home, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "pp.json"
    main = _script("paper_pattern").main

    def table(epochs: int, store: str, *extra: str) -> dict:
        assert main(["--models", "sasrec", "--sasrec-set", f"max_epochs={epochs},maxlen=16,d=16", "--data-home",
                     str(tiny_home), "--beauty", "tiny", "--no-synthetic", "--resume", "--tracking-uri",
                     f"sqlite:///{tmp_path / store}", "--out", str(out), *extra]) == 0
        return json.loads(out.read_text())["datasets"]["beauty_sample"]

    first = table(1, "a.db")
    ids = {r["label"]: r["mlflow_run_id"] for r in first["rows"]}
    moved = table(1, "b.db")  # a new store lacks the kept pop run: pop runs again there, the rows stay
    assert {r["label"]: r["mlflow_run_id"] for r in moved["rows"]} == ids and moved["stale_rows"] == []
    assert moved["pop_run_id"] != first["pop_run_id"]
    other = table(2, "b.db")  # another recipe: its rows run, the first recipe's are set aside
    assert {r["settings"]["max_epochs"] for r in other["rows"]} == {"2"}
    assert {r["mlflow_run_id"] for r in other["stale_rows"]} == set(ids.values())
    back = table(1, "b.db")  # and come back, without running, when the first recipe is asked for again
    assert {r["label"]: r["mlflow_run_id"] for r in back["rows"]} == ids
    assert {r["settings"]["max_epochs"] for r in back["stale_rows"]} == {"2"}
    again = table(1, "b.db", "--rerun", "sasrec")  # run again although kept (e.g. after a code change)
    assert not {r["mlflow_run_id"] for r in again["rows"]} & set(ids.values())
    with pytest.raises(SystemExit, match="not among --models"):
        table(1, "b.db", "--rerun", "tallrec")


def test_paper_pattern_model_set_gives_one_model_its_own_settings():
    mod = _script("paper_pattern")
    recipe = mod.llm_recipe({"batch_size": "4", "lora_r": "8"},
                            {"llara": {"lora_alpha": "16", "lora_targets": "q_proj;v_proj"}})
    assert recipe["llara"] == {"batch_size": "4", "lora_r": "8", "lora_alpha": "16", "lora_targets": "q_proj;v_proj"}
    assert recipe["tallrec"] == recipe["collm"] == {"batch_size": "4", "lora_r": "8"}  # the others keep --set's
    assert recipe["llmsrec"] == {"batch_size": "4"}
    assert mod.llm_recipe({"lora_r": "8"}, {"tallrec": {"lora_r": "4"}})["tallrec"] == {"lora_r": "4"}  # on top
    with pytest.raises(SeqbenchError, match="--model-set sasrec: not an LLM model"):
        mod.llm_recipe({}, {"sasrec": {"lr": "1e-3"}})
    with pytest.raises(SeqbenchError, match="lora_r"):  # A-LLMRec's LLM is frozen: no LoRA settings
        mod.llm_recipe({}, {"a-llmrec": {"lora_r": "4"}})
    with pytest.raises(SystemExit, match="model.key=value"):
        mod.main(["--models", "llara", "--model-set", "lora_alpha=16"])


def test_llm_state_spread_measures_fresh_states(tiny_home, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "spread.json"
    main = _script("llm_state_spread").main
    args = ["--datasets", "tiny", "--models", "llmsrec,tallrec", "--users", "8", "--threads", "1",
            "--head-steps", "12", "--data-home", str(tiny_home), "--out", str(out),
            "--head-variants", "official,centred+in-batch",
            "--set", "llm=tiny-random,dtype=fp32,teacher_epochs=1,batch_size=4"]
    assert main(args) == 0
    got = json.loads(out.read_text())["results"]["tiny"]
    assert set(got) == {"llmsrec", "tallrec"}
    for row in got.values():
        assert row["users"] == 8 and row["items"] == 8
        for side in ("h_U", "f_user(h_U)", "h_I", "f_item(h_I)"):
            assert -1 <= row[side]["mean_pair_cosine"] <= 1 and 0 <= row[side]["varying_share"] <= 1
        ho = row["heads_only"]
        assert ho["steps"] == 12 and ho["batch_size"] == 4 and ho["lr"] == 1e-4 and ho["train_examples"] > 0
        assert np.isfinite(ho["loss_first10"]) and ho["chance_loss"] == pytest.approx(np.log(4))
        for m in (ho["valid"], ho["bigram_valid"]):
            assert 0 <= m["ndcg@10"] <= m["hr@10"] <= 1
        variants = row["heads_only_variants"]
        assert list(variants) == ["official", "centred+in-batch"] and variants["official"] == ho
        both = variants["centred+in-batch"]
        assert both["chance_loss"] == pytest.approx(np.log(16))
        assert [c["step"] for c in both["valid_curve"]] == [3, 6, 9]
        assert both["loss_first10"] != ho["loss_first10"]  # same draws, different heads and loss
    assert main([*args[:-1], "llm=tiny-random,task=generation"]) == 2
    assert main([*args[:-3], "official,sideways", *args[-2:]]) == 2


def test_llm_state_spread_statistics_on_hand_made_states():
    import torch

    mod = _script("llm_state_spread")
    same = mod.spread(torch.tensor([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]]))
    assert same["mean_pair_cosine"] == pytest.approx(1.0) and same["varying_share"] == pytest.approx(0.0, abs=1e-7)
    assert same["max_abs_mean_feature"] == 1 and same["max_abs_mean"] == pytest.approx(4.0)
    # a shared (10, 0) plus +-(0, 1): squared norm 101, of which 1 varies; pair cosine (100 - 1) / 101
    two = mod.spread(torch.tensor([[10.0, 1.0], [10.0, -1.0]]))
    assert two["varying_share"] == pytest.approx(1 / 101) and two["mean_pair_cosine"] == pytest.approx(99 / 101)


def test_paper_pattern_cpu_recipe_is_the_committed_tables_and_explicit_sets_go_on_top():
    mod = _script("paper_pattern")

    def recipe(*extra_sets: str, model_sets: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
        sets, msets = mod.with_recipe("cpu", list(extra_sets), list(model_sets))
        return mod.llm_recipe({"dtype": "auto", **parse_sets(sets)}, parse_model_sets(msets))

    cpu = recipe()
    table = json.loads((Path(__file__).parents[1] / "reports" / "paper_pattern.json").read_text())
    beauty = table["datasets"]["beauty_sample"]["rows"]
    llm_rows = [r for r in beauty if r["model"] in cpu]
    assert len(llm_rows) == 5  # every LLM row of the table was made under exactly this recipe
    assert all(r["settings"] == cpu[r["model"]] for r in llm_rows)
    assert cpu["llara"]["lora_targets"] == "q_proj;v_proj" and "lora_targets" not in cpu["tallrec"]
    assert recipe("max_steps=10")["collm"]["max_steps"] == "10"  # an explicit --set wins
    assert recipe(model_sets=("llara.lora_alpha=32",))["llara"]["lora_alpha"] == "32"
    assert mod.with_recipe(None, ["a=1"], []) == (["a=1"], [])


def test_paper_pattern_verdict_needs_a_model_that_beats_pop_to_call_it_order_blind():
    verdict = _script("paper_pattern").verdict

    def row(label: str, change: float, p_holm: float, beats_pop: bool) -> dict:
        return {"label": label, "model": label.split(" ")[0], "relative_change": change, "p_holm": p_holm,
                "vs_pop": {"beats_pop": beats_pop}}

    sens = [row("sasrec", -0.8, 1e-9, True), row("llmsrec", -0.3, 1e-4, True)]
    blind = [row(m, 0.01, 0.9, True) for m in ("tallrec", "llara", "collm", "a-llmrec")]
    assert verdict([*sens, *blind]) == {"llm4rec_order_blind": dict.fromkeys(("tallrec", "llara", "collm",
                                                                                 "a-llmrec"), True),
                                        "order_sensitive": {"sasrec": True, "llmsrec": True}, "holds": True,
                                        "undecided": []}
    # no drop from a model below pop decides nothing; a drop counts whatever the model learned
    weak = verdict([*sens, *blind[:3], row("a-llmrec", 0.02, 0.8, False)])
    assert weak["holds"] is None and weak["undecided"] == ["a-llmrec"]
    assert verdict([*sens, *blind[:3], row("a-llmrec", -0.3, 1e-3, False)])["holds"] is False
    # a decided contradiction settles it even beside an undecided row
    mixed = verdict([row("sasrec", -0.01, 1.0, True), row("llmsrec", 0.1, 0.5, False), *blind])
    assert mixed["order_sensitive"] == {"sasrec": False, "llmsrec": None} and mixed["holds"] is False
