"""The trainable heads of the §2 "Next Item Retrieval" task and LLM-SRec's uniformity term."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def mlp(d_in: int, d_hidden: int, d_out: int, act: nn.Module) -> nn.Sequential:
    """Linear -> LayerNorm -> act -> Linear with Xavier-normal weights and default biases (§2, §6)."""
    net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.LayerNorm(d_hidden), act, nn.Linear(d_hidden, d_out))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
    return net


class RetrievalHeads(nn.Module):
    """The §2 heads: f_I (item embedding -> [HistoryEmb]) when the prompt has that token, f_user, f_item,
    model-specific extras, f_U (CF user -> [UserRep]) when the prompt has that token, and e_U / e_I.

    Creation order is fixed (it decides the seeded initial values): f_I, f_user, f_item, extras, f_U, e_U, e_I.
    """

    def __init__(self, d_llm: int, d_proj: int, emb_mean: float, emb_std: float, d_item_in: int | None,
                 d_user_in: int | None, item_act: type[nn.Module] = nn.LeakyReLU,
                 extras: dict[str, Any] | None = None):
        super().__init__()
        self.f_I = mlp(d_item_in, d_llm, d_llm, item_act()) if d_item_in else None  # item_emb_proj
        self.f_user = mlp(d_llm, 2048, d_proj, nn.LeakyReLU())  # pred_user
        self.f_item = mlp(d_llm, 2048, d_proj, nn.LeakyReLU())  # pred_item
        for name, make in (extras or {}).items():
            setattr(self, name, make())
        self.f_U = mlp(d_user_in, d_llm, d_llm, nn.LeakyReLU()) if d_user_in else None
        # e_U / e_I (CLS / CLS_item): N(mean, std) of the resized input-embedding matrix (§2).
        self.e_U = nn.Parameter(torch.randn(1, d_llm) * emb_std + emb_mean)
        self.e_I = nn.Parameter(torch.randn(1, d_llm) * emb_std + emb_mean)


def retrieval_loss(u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """L_Retrieval: cross-entropy of the raw dot products of users (B, d) with their candidates (B, C, d),
    the positive in column 0 (§2)."""
    logits = torch.einsum("bd,bcd->bc", u, items)
    return F.cross_entropy(logits, torch.zeros(len(u), dtype=torch.long, device=u.device))


def uniformity(x: torch.Tensor) -> torch.Tensor:
    """mean over in-batch pairs b < b' of exp(-2 ||x_b - x_b'||^2), no log (§6 L_Uniform)."""
    if len(x) < 2:
        return x.sum() * 0.0
    return torch.pdist(x, p=2).pow(2).mul(-2.0).exp().mean()
