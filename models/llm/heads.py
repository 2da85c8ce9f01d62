"""The trainable heads of the "Next Item Retrieval" task and LLM-SRec's uniformity term
(docs/models.md#llm4rec-baselines-tallrec-llara-collm-a-llmrec)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def mlp(d_in: int, d_hidden: int, d_out: int, act: nn.Module) -> nn.Sequential:
    """Linear -> LayerNorm -> act -> Linear with Xavier-normal weights and default biases (the official code's)."""
    net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.LayerNorm(d_hidden), act, nn.Linear(d_hidden, d_out))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
    return net


class RetrievalHeads(nn.Module):
    """The retrieval heads: f_I (item embedding -> [HistoryEmb]) when the prompt has that token, f_user, f_item,
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
        # e_U / e_I (CLS / CLS_item): N(mean, std) of the resized input-embedding matrix.
        self.e_U = nn.Parameter(torch.randn(1, d_llm) * emb_std + emb_mean)
        self.e_I = nn.Parameter(torch.randn(1, d_llm) * emb_std + emb_mean)


def retrieval_loss(u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """L_Retrieval: cross-entropy of the raw dot products of users (B, d) with their candidates (B, C, d),
    the positive in column 0."""
    logits = torch.einsum("bd,bcd->bc", u, items)
    return F.cross_entropy(logits, torch.zeros(len(u), dtype=torch.long, device=u.device))


def in_batch_retrieval_loss(u: torch.Tensor, items: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each user (B, d) against every candidate of the batch (B, C, d): its own positive (column
    b * C of the flattened candidates) against its own and the other users' candidates, except those
    ``exclude`` (B, B * C) marks (another user's candidate that is this user's target or in its history)."""
    b, c, d = items.shape
    logits = (u @ items.reshape(b * c, d).T).masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, torch.arange(b, device=u.device) * c)


@torch.no_grad()
def centre_mlp(net: nn.Sequential, mean: torch.Tensor, out_scale: float = 0.1) -> None:
    """``head_init=centred``: the first Linear sees its inputs minus ``mean`` (its bias absorbs -W mean) and the
    last Linear's weights shrink by ``out_scale``. The function class is unchanged; only where training starts.

    Why: the LLM's [UserOut] / [ItemOut] states share one large component (SmolLM2: one feature near 50, about
    99 % of the squared norm; ``reports/llm_state_spread.json``). With the official initialisation the
    LayerNorm after the first Linear then sees that constant, every user and item maps to nearly the same
    vector, and Adam at 1e-4 needs thousands of steps to learn the bias that removes it."""
    first, last = net[0], net[-1]
    first.bias.sub_(first.weight @ mean.to(first.weight))
    last.weight.mul_(out_scale)


def uniformity(x: torch.Tensor) -> torch.Tensor:
    """mean over in-batch pairs b < b' of exp(-2 ||x_b - x_b'||^2), no log (LLM-SRec's L_Uniform)."""
    if len(x) < 2:
        return x.sum() * 0.0
    return torch.pdist(x, p=2).pow(2).mul(-2.0).exp().mean()
