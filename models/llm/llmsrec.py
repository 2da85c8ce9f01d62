"""LLM-SRec ("Lost in Sequence", KDD'25) as in the official code (docs/models/llmsrec.md).

A frozen LLM reads the paper's prompt (last 10 titles, times, "Item No.", SASRec item vectors injected at
[HistoryEmb]) and its final-norm state at [UserOut] becomes the user vector h_U; items get h_I from their own
prompt at [ItemOut]. Trainable: f_I, f_user, f_item, f_CF-user and the two token vectors e_U, e_I. The frozen
pre-trained SASRec teacher (docs/models/sasrec.md) gives E_i and O_u; the loss is retrieval CE over 1 positive
+ 3 negatives, plus MSE between the L2-normalised f_user(h_U) and f_CF-user(O_u), plus uniformity.

Everything but the distillation lives in the shared core (``base``, schedule in ``fit``). Choices:
* teacher: SASRec trained through the registry on the *same* train histories given to ``fit``, so the
  shuffle-train probe retrains the teacher on shuffled data too; cached on disk.
* teacher in eval mode while computing O_u (never train mode); target never drawn as a negative.
* heads run in fp32 outside the LLM's low precision, in training and evaluation alike (the code autocasts
  the heads in evaluation only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.config import setting
from seqbench.errors import SeqbenchError
from seqbench.llm.prompts import LLMSREC_PROMPT, USER_REP_PROMPT, PromptTemplate

from .base import LLMRecommender, shared_llm
from .config import LLMRecConfig
from .data import TEACHER_MAXLEN, drop_last, sample_negatives, training_examples
from .heads import mlp, uniformity

__all__ = ["TEACHER_MAXLEN", "LLMSRec", "LLMSRecConfig", "drop_last", "sample_negatives", "shared_llm",
           "training_examples", "uniformity"]


@dataclass
class LLMSRecConfig(LLMRecConfig):
    distill: bool | str = setting(True, "true = MSE distillation, false = off, contrastive = InfoNCE (App. E.2)")
    uniform: bool = setting(True, "uniformity loss on the user representations")
    user_rep_in_prompt: bool = setting(False, "App. E.1: CoLLM-style prompt with [UserRep] = f_U(O_u)")


class LLMSRec(LLMRecommender):
    """Frozen LLM + frozen SASRec teacher distilled through small MLPs (docs/models/llmsrec.md)."""

    name: ClassVar[str] = "llmsrec"
    config_cls: ClassVar[type[LLMSRecConfig]] = LLMSRecConfig

    def __init__(self, n_items: int, config: LLMSRecConfig | None = None):
        super().__init__(n_items, config)
        distill = self.config.distill
        distill = distill if isinstance(distill, bool) else str(distill).lower()
        self.distill = {True: "mse", "mse": "mse", "true": "mse", False: "none", "false": "none",
                        "none": "none", "contrastive": "contrastive"}.get(distill)
        if self.distill is None:
            raise SeqbenchError(f"llmsrec distill must be true, false or contrastive, got '{self.config.distill}'")

    def template(self) -> PromptTemplate:
        return USER_REP_PROMPT if self.config.user_rep_in_prompt else LLMSREC_PROMPT

    def extra_heads(self, d_cf: int) -> dict[str, Any]:
        d = self.config.d_proj
        return {"f_cf_user": lambda: mlp(d_cf, d, d, nn.GELU())}  # pred_user_CF2

    def extra_losses(self, u: torch.Tensor, o_u: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """L_Distill (MSE of the L2-normalised f_user(h_U) and f_CF-user(O_u), or App. E.2's InfoNCE) and
        L_Uniform on both."""
        out: dict[str, torch.Tensor] = {}
        if self.distill == "none" and not self.config.uniform:
            return out
        c = self.heads.f_cf_user(o_u)
        un, cn = F.normalize(u, dim=-1), F.normalize(c, dim=-1)
        if self.distill == "mse":
            out["distill"] = F.mse_loss(un, cn)
        elif self.distill == "contrastive":  # App. E.2 Eq. 10: InfoNCE with the dot-product score s
            out["distill"] = F.cross_entropy(u @ c.T, torch.arange(len(u), device=self.device))
        if self.config.uniform:
            out["uniform"] = uniformity(un) + uniformity(cn)
        return out
