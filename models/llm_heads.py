"""The trainable heads of the §2 "Next Item Retrieval" task and LLM-SRec's uniformity term."""

from __future__ import annotations

from typing import Any

import torch
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
        self.standardized = False

    def standardize(self, d_llm: int, h_u: torch.Tensor | None = None, h_i: torch.Tensor | None = None) -> None:
        """Fix ``h -> (h - mean) / std`` per feature before f_user and f_item (the ``standardize`` setting).

        A frozen LLM's last-layer states share most of their norm: SmolLM2-135M's [UserOut] states of 64
        synthetic-control users have mean pairwise cosine 0.994; what differs between users is 0.6 % of the
        squared norm, and one feature's mean is 50. The official heads pass that shared part on (f_user's
        outputs keep pairwise cosine 0.994), and a few hundred CPU steps do not learn to remove it. The map
        is affine, so f_user / f_item can express exactly what they could before (it folds into their first
        Linear); it changes only how an optimiser sees them. The statistics come from samples of states
        (``h_u``, ``h_i``) under the initial weights and are buffers saved with the heads; without samples,
        the buffers are placeholders for ``load_state_dict``.
        """
        for side, h in (("u", h_u), ("i", h_i)):
            if h is None:
                mean, std = torch.zeros(d_llm), torch.ones(d_llm)
            else:
                h = h.detach().float()
                mean, std = h.mean(0), h.std(0)
                std = std.clamp_min(1e-3 * float(std.mean()) + 1e-12)  # a constant feature stays finite
            self.register_buffer(f"{side}_mean", mean.to(self.e_U.device))
            self.register_buffer(f"{side}_std", std.to(self.e_U.device))
        self.standardized = True

    def user(self, h_u: torch.Tensor) -> torch.Tensor:
        """f_user(h_U), after the fixed standardisation when there is one."""
        return self.f_user((h_u - self.u_mean) / self.u_std if self.standardized else h_u)

    def item(self, h_i: torch.Tensor) -> torch.Tensor:
        """f_item(h_I), after the fixed standardisation when there is one."""
        return self.f_item((h_i - self.i_mean) / self.i_std if self.standardized else h_i)


def uniformity(x: torch.Tensor) -> torch.Tensor:
    """mean over in-batch pairs b < b' of exp(-2 ||x_b - x_b'||^2), no log (§6 L_Uniform)."""
    if len(x) < 2:
        return x.sum() * 0.0
    return torch.pdist(x, p=2).pow(2).mul(-2.0).exp().mean()
