"""Model registry: name -> family, one-line summary, declared capabilities and a lazily imported class
(`seqbench models`).

Code layout (docs/models.md "Code layout"): one folder per family with its common module (``cf/common.py``,
``llm/base.py``) and family-independent modules here (``base``, ``pop``, ``store``, ``item_text``). Whatever
depends on what a model can do (an accelerator in a sweep, the generation task, a CF user representation)
reads the capabilities declared here, never the family, which is a display and grouping label.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from seqbench.config import resolve
from seqbench.errors import SeqbenchError, UnknownNameError

from .base import FitReport, Recommender

CF, LM, LLM, BASELINE = "CF-SRec", "LM-based", "LLM4Rec", "baseline"  # family labels


@dataclass(frozen=True)
class ModelSpec:
    """A registered model. ``family`` is a label for display and grouping; decisions read the capabilities:

    * ``needs_accelerator``: training is sized for a GPU/HPU (a sweep task gets one when the grid has them);
    * ``generation``: works in ``--task generation`` (LLM models decode a title; models that rank any candidate
      set rank the 20 title candidates);
    * ``cf_user_rep``: the model's input can carry a CF user representation (SASRec's O_u at [UserRep]) that
      ``pinned_user_rep`` can pin (probe option ``user_rep=original``).
    """

    name: str
    family: str
    summary: str
    target: str  # "module:Class" inside seqbench.models, imported on first use
    needs_accelerator: bool = False
    generation: bool = True
    cf_user_rep: bool = False

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("retrieval", "generation") if self.generation else ("retrieval",)

    def load_class(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(f"seqbench.models.{module}"), cls)


def _llm(name: str, summary: str, target: str, **capabilities: bool) -> ModelSpec:
    return ModelSpec(name, LLM, summary, target, needs_accelerator=True, **capabilities)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("sasrec", CF, "causal self-attention over item ids (Kang & McAuley 2018)", "cf.sasrec:SASRec"),
        ModelSpec("gru4rec", CF, "GRU over item ids, tied embedding, softmax CE (Hidasi et al. 2016)",
                  "cf.gru4rec:GRU4Rec"),
        ModelSpec("bert4rec", CF, "bidirectional Transformer, Cloze-masked training (Sun et al. 2019)",
                  "cf.bert4rec:BERT4Rec"),
        ModelSpec("nextitnet", CF, "causal dilated residual CNN over item ids (Yuan et al. 2019)",
                  "cf.nextitnet:NextItNet"),
        ModelSpec("ctrl", LM, "SASRec whose item table starts from PCA'd title embeddings (Li et al. 2023)",
                  "lm.ctrl:CTRL"),
        ModelSpec("recformer", LM, "one text encoder over items as key-value sentences (Li et al. KDD'23)",
                  "lm.recformer:RECFormer", needs_accelerator=True),
        # Retrieval only: its distillation aligns f_user(h_U) at [UserOut] with SASRec's O_u, and a generation
        # prompt has no [UserOut]; "LLM-SRec in generation" would be LLaRA's generation model without LoRA.
        _llm("llmsrec", "frozen LLM + distilled frozen SASRec user representation (KDD'25)",
             "llm.llmsrec:LLMSRec", generation=False, cf_user_rep=True),
        _llm("tallrec", "LoRA-tuned LLM on text-only prompts (Bao et al. 2023), retrieval heads",
             "llm.tallrec:TALLRec"),
        _llm("llara", "LoRA LLM, titles + SASRec item embeddings as soft tokens (Liao et al. 2024)",
             "llm.llara:LLaRA"),
        _llm("collm", "LoRA LLM, LLaRA's prompt + SASRec user representation token (Zhang et al. 2023)",
             "llm.collm:CoLLM", cf_user_rep=True),
        _llm("a-llmrec", "frozen LLM, SASRec-text aligned item tokens + user token (Kim et al. 2024)",
             "llm.allmrec:ALLMRec", cf_user_rep=True),
        ModelSpec("pop", BASELINE, "ranks candidates by training popularity; a floor every model must beat",
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


__all__ = ["BASELINE", "CF", "LLM", "LM", "MODELS", "FitReport", "ModelSpec", "Recommender", "create_model",
           "get_spec", "settings_per_model"]
