"""TALLRec (Bao et al., RecSys'23) in the retrieval adaptation (docs/models/llm4rec.md).

Text only: the user prompt lists the last 10 titles with "Item No." and "Time" and no [HistoryEmb]; items get
``The item title is as follows: "{title}", then generate item representation token:[ItemOut]``. No CF signal,
so no SASRec teacher. Trained: LoRA on the LLM (TALLRec's official r 8, alpha 16, dropout 0.05 on q_proj and
v_proj), f_user, f_item, e_U, e_I; loss L_Retrieval over 1 + 3 candidates. The Alpaca instruction stage is
skipped: the default backbone is already an Instruct model (docs/models/llm4rec.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from seqbench.llm.prompts import TEXT_PROMPT, PromptTemplate

from .base import LLMRecommender
from .config import LoRARecConfig


@dataclass
class TALLRecConfig(LoRARecConfig):
    pass


class TALLRec(LLMRecommender):
    name: ClassVar[str] = "tallrec"
    config_cls: ClassVar[type[TALLRecConfig]] = TALLRecConfig
    needs_teacher: ClassVar[bool] = False

    def template(self) -> PromptTemplate:
        return TEXT_PROMPT
