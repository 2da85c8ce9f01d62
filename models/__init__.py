"""Model registry: name -> family, one-line summary and a lazily imported class (`seqbench models`)."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from seqbench.config import resolve
from seqbench.errors import SeqbenchError, UnknownNameError

from .base import FitReport, Recommender


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    summary: str
    target: str  # "module:Class" inside seqbench.models, imported on first use

    def load_class(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(f"seqbench.models.{module}"), cls)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("sasrec", "CF-SRec", "causal self-attention over item ids (Kang & McAuley 2018)",
                  "sasrec:SASRec"),
        ModelSpec("gru4rec", "CF-SRec", "GRU over item ids, tied embedding, softmax CE (Hidasi et al. 2016)",
                  "gru4rec:GRU4Rec"),
        ModelSpec("bert4rec", "CF-SRec", "bidirectional Transformer, Cloze-masked training (Sun et al. 2019)",
                  "bert4rec:BERT4Rec"),
        ModelSpec("nextitnet", "CF-SRec", "causal dilated residual CNN over item ids (Yuan et al. 2019)",
                  "nextitnet:NextItNet"),
        ModelSpec("ctrl", "LM-based", "SASRec whose item table starts from PCA'd title embeddings (Li et al. 2023)",
                  "ctrl:CTRL"),
        ModelSpec("recformer", "LM-based", "one text encoder over items as key-value sentences (Li et al. KDD'23)",
                  "recformer:RECFormer"),
        ModelSpec("llmsrec", "LLM4Rec", "frozen LLM + distilled frozen SASRec user representation (KDD'25)",
                  "llmsrec:LLMSRec"),
        ModelSpec("tallrec", "LLM4Rec", "LoRA-tuned LLM on text-only prompts (Bao et al. 2023), retrieval heads",
                  "tallrec:TALLRec"),
        ModelSpec("llara", "LLM4Rec", "LoRA LLM, titles + SASRec item embeddings as soft tokens (Liao et al. 2024)",
                  "llara:LLaRA"),
        ModelSpec("collm", "LLM4Rec", "LoRA LLM, LLaRA's prompt + SASRec user representation token (Zhang et al. 2023)",
                  "collm:CoLLM"),
        ModelSpec("a-llmrec", "LLM4Rec", "frozen LLM, SASRec-text aligned item tokens + user token (Kim et al. 2024)",
                  "allmrec:ALLMRec"),
        ModelSpec("pop", "baseline", "ranks candidates by training popularity; a floor every model must beat",
                  "pop:Pop"),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UnknownNameError("model", name, list(MODELS))
    return MODELS[name]


def create_model(name: str, n_items: int, *layers: dict[str, Any]) -> Recommender:
    """Instantiate a registered model with its config resolved from defaults and ``layers`` in order."""
    cls = get_spec(name).load_class()
    return cls(n_items, resolve(cls.config_cls, *layers))


def settings_per_model(models: list[str], settings: dict[str, str]) -> dict[str, dict[str, str]]:
    """One ``--set`` for several models (scripts): each model gets the keys its config has (``stage1_epochs``
    is A-LLMRec's, ``distill`` LLM-SRec's); a key no model has is an error, so a typo never passes silently."""
    if not models:  # e.g. a script run with CF models only: nothing takes these settings
        return {}
    fields = {m: {f.name for f in dataclasses.fields(get_spec(m).load_class().config_cls)} for m in models}
    unknown = [k for k in settings if not any(k in f for f in fields.values())]
    if unknown:
        raise SeqbenchError(f"--set {unknown[0]}: no model among {', '.join(models)} has this setting")
    return {m: {k: v for k, v in settings.items() if k in fields[m]} for m in models}


__all__ = ["MODELS", "FitReport", "ModelSpec", "Recommender", "create_model", "get_spec", "settings_per_model"]
