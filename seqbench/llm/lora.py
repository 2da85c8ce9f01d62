"""LoRA adapters on a private copy of the shared frozen LLM, through peft (docs/models/llm4rec.md).

The frozen backbone is shared by every model in a process (one load per name/dtype/device); peft injects its
adapter layers *in place*, so a LoRA model always wraps its own deep copy and can never leak adapters into
LLM-SRec or another LoRA model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


def add_lora(base: nn.Module, r: int, alpha: int, dropout: float, targets: Sequence[str], seed: int):
    """(peft model, inner causal LM) with fresh seeded adapters on a copy of ``base``; only adapters train."""
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(base)
    soft_ids = getattr(base, "soft_ids", None)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, cfg)
    inner = peft_model.get_base_model()
    inner.soft_ids = soft_ids
    return peft_model, inner


def lora_state(peft_model) -> dict[str, torch.Tensor]:
    """The adapter weights only (what save/load and best-checkpoint snapshots need)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_lora_state(peft_model, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA state has keys the model lacks: {unexpected[:3]}")
