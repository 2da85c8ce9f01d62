"""The LLM scripts' shared pieces: one ``--set`` split over several models, bench_llm's CPU-recipe settings and
llm_state_spread's measurements (tiny random LLM, seconds)."""

import json

import numpy as np
import pytest

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
