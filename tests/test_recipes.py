"""LLM training recipes (models/llm/recipes.py): the official config is named ``official``, a changed recipe setting
makes a proxy, the committed CPU table's settings are ``cpu-proxy``, and the sweep records it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import pytest
import torch

from seqbench.config import resolve
from seqbench.models import MODELS, get_spec
from seqbench.models.llm.recipes import CPU_PROXY, OFFICIAL, PAPER_LLM, recipe_changes, recipe_of
from seqbench.models.store import ModelStore
from seqbench.runner import RunSpec, seed_pass
from seqbench.sweep import SweepReport, expand, load_grid, log_points, parent_run
from seqbench.tracking import Tracker

LLM_MODELS = ("llmsrec", "tallrec", "llara", "collm", "a-llmrec")


def config(model: str, *layers: dict) -> dict:
    return dataclasses.asdict(resolve(get_spec(model).load_class().config_cls, *layers))


def test_every_llm_model_has_an_official_recipe_and_no_other_model_has_one():
    assert set(OFFICIAL) == set(LLM_MODELS) == {m for m, s in MODELS.items() if s.family == "LLM4Rec"}
    for model in MODELS:
        if model not in OFFICIAL:
            assert recipe_of(model, config(model)) is None and recipe_changes(model, config(model)) is None


@pytest.mark.parametrize("model", LLM_MODELS)
def test_the_defaults_are_the_official_recipe_on_a_smaller_llm(model):
    defaults = config(model)
    assert {k: defaults[k] for k in OFFICIAL[model] if k != "llm"} == {k: v for k, v in OFFICIAL[model].items()
                                                                       if k != "llm"}
    assert recipe_of(model, defaults) == "official-135m" and recipe_changes(model, defaults) == ["llm"]
    assert recipe_of(model, config(model, {"batch_size": "4"})) == "custom"  # and nothing else changed


@pytest.mark.parametrize("model", LLM_MODELS)
def test_official_config_is_official_and_a_changed_recipe_setting_is_a_proxy(model):
    official = config(model, {"llm": PAPER_LLM})
    assert recipe_of(model, official) == "official" and recipe_changes(model, official) == []
    # precision, device, evaluation batches and cache switches are not part of the recipe
    assert recipe_of(model, config(model, {"llm": PAPER_LLM, "dtype": "fp32", "device": "cpu",
                                           "item_batch_size": "8", "teacher_cache": "false"})) == "official"
    assert recipe_of(model, config(model, {"llm": "/models/Llama-3.2-3B-Instruct"})) == "official"  # a local copy
    for change in ({"batch_size": "4"}, {"in_batch_negatives": "true"}, {"head_init": "centred"},
                   {"teacher_loss": "ce"}, {"llm": "smollm2-135m"}, {"llm": "tiny-random"}):
        changed = config(model, {"llm": PAPER_LLM}, change)
        assert recipe_of(model, changed) == ("official-135m" if change == {"llm": "smollm2-135m"} else "custom")
        assert recipe_changes(model, changed) == list(change)
    # read back from a result's JSON (tuples come back as lists): the same name
    assert recipe_of(model, json.loads(json.dumps(official))) == "official"


def test_model_specific_recipe_settings():
    lora = {"llm": PAPER_LLM, "lora_targets": "q_proj;v_proj", "lora_alpha": "16", "lora_dropout": "0.05"}
    assert recipe_of("llara", config("llara", lora)) == "custom"  # LLaRA's official LoRA is all-linear, alpha 32
    assert recipe_of("tallrec", config("tallrec", lora)) == "official"
    assert recipe_changes("tallrec", config("tallrec", {"llm": PAPER_LLM, "lora_r": "16"})) == ["lora_r"]
    assert recipe_of("llmsrec", config("llmsrec", {"llm": PAPER_LLM, "distill": "false"})) == "custom"
    assert recipe_of("a-llmrec", config("a-llmrec", {"llm": PAPER_LLM, "stage1_epochs": "1"})) == "custom"
    assert recipe_of("a-llmrec", config("a-llmrec", {"llm": PAPER_LLM, "stage1_cache": "false"})) == "official"


def test_the_committed_cpu_tables_llm_rows_are_the_cpu_proxy_recipe():
    """Every LLM row of reports/paper_pattern.json was made under ``CPU_PROXY`` (its settings as recorded), so
    ``recipe: cpu-proxy`` in studies/paper-pattern.yaml is that table's recipe; LLaRA's CPU LoRA is q/v only."""
    table = json.loads((Path(__file__).parents[1] / "reports" / "paper_pattern.json").read_text())
    rows = [r for r in table["datasets"]["beauty_sample"]["rows"] if r["model"] in CPU_PROXY]
    assert sorted(r["model"] for r in rows) == sorted(CPU_PROXY)
    for r in rows:
        assert recipe_of(r["model"], config(r["model"], r["settings"])) == "cpu-proxy", r["label"]
    tallrec = next(r["settings"] for r in rows if r["model"] == "tallrec")
    assert recipe_of("llara", config("llara", tallrec)) == "custom"


def test_sweep_points_record_the_recipe_in_the_result_and_the_tags(tiny_home, tiny, tmp_path, monkeypatch):
    """The sweep's logging path: a task's ``SeedPass`` carries the recipe into result.json and the run's tags
    (pop has none of its own, so the pass is given an LLM model's), as `seqbench run` writes them."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = tmp_path / "grid.yaml"
    path.write_text("experiment: e\ndatasets: [tiny]\nmodels: [pop]\nprobes: [shuffle-infer]\nseeds: [0]\n")
    grid = load_grid(path)
    store = ModelStore(tmp_path / "store")
    (plan,) = expand(grid, {"tiny": tiny}, store)
    spec = RunSpec(model="pop", probes=grid.probes, dataset="tiny", seeds=[0], tracking_uri=uri)
    sp = seed_pass(spec, tiny, plan.layers, 0, torch.device("cpu"), tiny_home, store)
    assert sp.recipe is None and sp.recipe_tags == {}
    tracker = Tracker(uri, experiment="e")
    parent = parent_run(tracker, grid, path)
    report = SweepReport([plan])
    log_points(tracker, grid, plan, spec, dataclasses.replace(sp, recipe="cpu-proxy", recipe_changes=["llm"]),
                tiny, parent, report)
    (out,) = report.logged
    assert out["recipe"] == "cpu-proxy" and out["recipe_changes"] == ["llm"]
    run = mlflow.MlflowClient(uri).get_run(out["mlflow_run_id"])
    assert run.data.tags["recipe"] == "cpu-proxy"
