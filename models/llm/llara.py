"""LLaRA (Liao et al., SIGIR'24) in the retrieval adaptation (docs/models/llm4rec.md).

Hybrid item tokens: LLM-SRec's prompts, each title followed by [HistoryEmb] = f_I(E_i), E_i the frozen SASRec
item row (the shared teacher). Trained: LoRA on the LLM (LLaRA's official r 8, alpha 32, dropout 0.1 on every
linear layer of a Llama block), f_I, f_user, f_item, e_U, e_I; loss L_Retrieval only. It equals LLM-SRec's
ablation (a) of Table 8 plus LoRA. LLaRA's curriculum (text-only prompts early on) is not used: the hybrid prompt
always (docs/models/llm4rec.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import LLMRecommender
from .config import LoRARecConfig
from .recipes import LLAMA_LINEAR


@dataclass
class LLaRAConfig(LoRARecConfig):
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = LLAMA_LINEAR


class LLaRA(LLMRecommender):
    name: ClassVar[str] = "llara"
    config_cls: ClassVar[type[LLaRAConfig]] = LLaRAConfig
