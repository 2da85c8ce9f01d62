"""Named training recipes of the LLM recommenders: which settings make a run the official recipe, and which
make it a proxy for it (docs/models.md, "Learning under a CPU budget").

A recipe-defining setting changes what training produces: the LLM, the schedule, the training examples and
negatives, the losses, the heads' initialisation, the LoRA, the SASRec teacher and A-LLMRec's stage 1.
Precision, device, evaluation batch sizes, cache switches and the task are not (the task is recorded on its
own). ``OFFICIAL`` holds, per model, the paper's and official code's value of each: the paper's LLM
(Llama-3.2-3B-Instruct for every model, LLM-SRec included) and this project's defaults, which implement the
official code's recipe with the choices the model cards document (validation patience 5 as the code, the
teacher's early stopping, A-LLMRec's frozen MiniLM title encoder).

:func:`recipe_of` names a resolved config (``dataclasses.asdict`` of the model's config, or the same values
read back from JSON):

* ``official``: every recipe-defining setting equals ``OFFICIAL[model]``;
* ``official-135m``: the official recipe on SmolLM2-135M (the default LLM) in place of the paper's LLM: every
  model's defaults. Still a proxy for the paper's runs (the LLM is part of the recipe); the official-recipe study
  (studies/paper-official.yaml) counts its rows in the paper-pattern verdict and says so;
* ``cpu-proxy``: every one equals ``CPU_PROXY[model]``, the committed paper-pattern table's recipe
  (``reports/paper_pattern.json``; ``recipe: cpu-proxy`` in studies/paper-pattern.yaml): SmolLM2-135M, 560 steps
  of batch 4 over every train position, in-batch negatives, centred heads, and LLaRA with TALLRec's and CoLLM's
  q/v LoRA;
* ``custom``: anything else.

Every recipe but ``official`` is a proxy. Models without a table (CF, LM-based, pop) have no recipe: None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqbench.llm.backbone import DEFAULT_LLM

PAPER_LLM = "meta-llama/Llama-3.2-3B-Instruct"
Q_V = ("q_proj", "v_proj")
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# LLMRecConfig's recipe-defining settings (docs/models/llmsrec.md, "Recipes")
SHARED: dict[str, Any] = {
    "llm": PAPER_LLM, "batch_size": 20, "max_epochs": 10, "max_steps": None, "lr": 1e-4, "beta2": 0.98,
    "val_every_frac": 0.1, "patience": 5, "lr_decay": "check", "lr_decay_factor": 0.95, "valid_metric": "hr@10",
    "max_valid_users": None, "autoregressive": False, "n_negatives": 3, "in_batch_negatives": False,
    "head_init": "official", "window": 10, "d_proj": 128,
    "teacher_epochs": 200, "teacher_patience": 10, "teacher_loss": "bce",
}
LORA_Q_V: dict[str, Any] = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "lora_targets": Q_V}

OFFICIAL: dict[str, dict[str, Any]] = {
    "llmsrec": {**SHARED, "distill": True, "uniform": True, "user_rep_in_prompt": False},
    "tallrec": {**SHARED, **LORA_Q_V},  # TALLRec's repository
    "llara": {**SHARED, "lora_r": 8, "lora_alpha": 32, "lora_dropout": 0.1, "lora_targets": LLAMA_LINEAR},
    "collm": {**SHARED, **LORA_Q_V},  # CoLLM's repository
    "a-llmrec": {**SHARED, "text_encoder": "all-minilm-l6-v2", "d_latent": 128, "stage1_epochs": 10,
                 "stage1_batch_size": 64, "stage1_lr": 1e-4},
}

# What the committed CPU table changes (its rows' settings in reports/paper_pattern.json; a test keeps the two equal)
CPU_CHANGES: dict[str, Any] = {
    "llm": DEFAULT_LLM, "batch_size": 4, "max_epochs": 1, "max_steps": 560, "val_every_frac": 0.0838,
    "max_valid_users": 300, "head_init": "centred", "in_batch_negatives": True, "autoregressive": True,
}
CPU_PROXY: dict[str, dict[str, Any]] = {
    model: {**settings, **CPU_CHANGES, **(LORA_Q_V if model == "llara" else {})}
    for model, settings in OFFICIAL.items()
}

OFFICIAL_135M: dict[str, dict[str, Any]] = {model: {**settings, "llm": DEFAULT_LLM}
                                            for model, settings in OFFICIAL.items()}

RECIPES: dict[str, dict[str, dict[str, Any]]] = {"official": OFFICIAL, "official-135m": OFFICIAL_135M,
                                                 "cpu-proxy": CPU_PROXY}
CUSTOM = "custom"


def _norm(key: str, value: Any) -> Any:
    """Values as compared: sequences as tuples (JSON reads tuples back as lists); the LLM by its last path
    component, case-folded, so a local folder of the paper's LLM counts as the paper's LLM."""
    if isinstance(value, list | tuple):
        return tuple(value)
    if key == "llm" and isinstance(value, str):
        return Path(value).name.casefold()
    return value


def _matches(table: dict[str, Any], config: dict[str, Any]) -> bool:
    return all(_norm(k, config.get(k)) == _norm(k, v) for k, v in table.items())


def has_recipe(model: str) -> bool:
    """Whether ``model`` has a recipe table: the LLM recommenders, trained by the shared LLM schedule."""
    return model in OFFICIAL


def recipe_changes(model: str, config: dict[str, Any]) -> list[str] | None:
    """The recipe-defining settings of ``config`` that differ from the official recipe (None: no recipe)."""
    official = OFFICIAL.get(model)
    if official is None:
        return None
    return sorted(k for k, v in official.items() if _norm(k, config.get(k)) != _norm(k, v))


def recipe_of(model: str, config: dict[str, Any]) -> str | None:
    """The name of the recipe table an LLM recommender's resolved config matches (``official``, ``official-135m``,
    ``cpu-proxy``), else ``custom``; None for a model without a recipe table."""
    if model not in OFFICIAL:
        return None
    return next((name for name, tables in RECIPES.items() if _matches(tables[model], config)), CUSTOM)
