"""CoLLM (Zhang et al., 2023) in the retrieval adaptation (paper Table 2(c); docs/models/llm4rec.md).

LLaRA's hybrid item tokens plus the frozen SASRec user representation O_u (on the <= 128-item history) as a
[UserRep] soft token through f_U, in CoLLM's prompt. Under shuffle-infer O_u is computed on the permuted ids
(docs/probes.md, `user_rep`). Trained in one joint stage (the paper's description; CoLLM's original two-step
schedule is not used): LoRA (CoLLM's official r 8, alpha 16, dropout 0.05 on q_proj and v_proj), f_I, f_U, f_user,
f_item, e_U, e_I; loss L_Retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from seqbench.llm.prompts import USER_REP_PROMPT, PromptTemplate

from .base import LLMRecommender
from .config import LoRARecConfig


@dataclass
class CoLLMConfig(LoRARecConfig):
    pass


class CoLLM(LLMRecommender):
    name: ClassVar[str] = "collm"
    config_cls: ClassVar[type[CoLLMConfig]] = CoLLMConfig

    def template(self) -> PromptTemplate:
        return USER_REP_PROMPT
