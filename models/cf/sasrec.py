"""SASRec (Kang & McAuley 2018) as in the LLM-SRec repository (docs/models/sasrec.md).

Faithful details: sqrt(d)-scaled item embeddings plus learned positions on a left-padded window, pre-LN
blocks whose attention residual adds the *normalised* query, point-wise FFN with its own residual, final
LayerNorm(eps 1e-8), tied input/output item table, BCE with one uniform negative per position.
Deviation, on purpose: keys at padded slots are masked out of attention (the official code attends to
zeroed pad vectors); each position may always attend to itself so fully padded rows stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.config import AT_LEAST_1, DROPOUT, setting
from seqbench.space import integer, uniform

from .common import CFConfig, CFNet, CFRecommender, Dropout, sample_negatives, trim_left_padding


@dataclass
class SASRecConfig(CFConfig):
    n_blocks: int = setting(2, "self-attention blocks", AT_LEAST_1, space=integer(1, 3))
    n_heads: int = setting(1, "attention heads (must divide d)", AT_LEAST_1)
    attn_dropout: float = setting(0.1, "dropout on attention weights", DROPOUT, space=uniform(0.0, 0.5))
    # "ce" (full softmax, as RecBole's reference; reaches higher NDCG sooner on ml-100k) or "bce" (the official
    # recipe: 1 uniform negative per position; what LLM-SRec's frozen teacher uses)
    loss: str = setting("ce", "ce: full softmax over all items; bce: one uniform negative per position (official)",
                        choices=("ce", "bce"))


class _Block(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln_attn = nn.LayerNorm(d, eps=1e-8)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.attn_dropout = attn_dropout
        self.ln_ffn = nn.LayerNorm(d, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(d, d), Dropout(dropout), nn.ReLU(), nn.Linear(d, d), Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        h = self.n_heads
        q_in = self.ln_attn(x)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, h, d // h).transpose(1, 2)

        att = F.scaled_dot_product_attention(
            heads(self.q(q_in)), heads(self.k(x)), heads(self.v(x)), attn_mask=allowed,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        x = q_in + self.o(att.transpose(1, 2).reshape(b, length, d))
        x = self.ln_ffn(x)
        x = x + self.ffn(x)
        return x * keep


class SASRecNet(CFNet):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        if cfg.d % cfg.n_heads:
            raise ValueError(f"d={cfg.d} is not divisible by n_heads={cfg.n_heads}")
        self.n_items, self.cfg = n_items, cfg
        self.item = nn.Embedding(n_items + 1, cfg.d, padding_idx=0)
        self.pos = nn.Embedding(cfg.maxlen, cfg.d)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            _Block(cfg.d, cfg.n_heads, cfg.dropout, cfg.attn_dropout) for _ in range(cfg.n_blocks)
        )
        self.ln_out = nn.LayerNorm(cfg.d, eps=1e-8)
        for name, p in self.named_parameters():  # official init: Xavier-normal on every matrix
            if p.dim() >= 2:
                nn.init.xavier_normal_(p)
            del name
        with torch.no_grad():
            self.item.weight[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded ids -> (B, L, d) states F_t; L <= maxlen, positions attached to slots."""
        length = seq.size(1)
        keep = (seq != 0).unsqueeze(-1).to(self.item.weight.dtype)
        x = self.item(seq) * math.sqrt(self.cfg.d) + self.pos.weight[-length:]
        x = self.drop(x) * keep
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        allowed = causal & (seq != 0)[:, None, :]  # no attention to padded keys ...
        allowed = (allowed | torch.eye(length, dtype=torch.bool, device=seq.device))[:, None]  # ... but self
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.ln_out(x)

    def user_states(self, seq: torch.Tensor) -> torch.Tensor:
        return self.encode(trim_left_padding(seq))[:, -1]

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item(items)

    def loss(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batch = trim_left_padding(batch)
        inp, pos = batch[:, :-1], batch[:, 1:]
        states = self.encode(inp)
        mask = (pos != 0) & (inp != 0)  # a user's first item is never a target (nothing precedes it)
        if self.cfg.loss == "ce":
            logits = states[mask] @ self.item.weight[1:].T
            return F.cross_entropy(logits, pos[mask] - 1)
        neg = sample_negatives(pos.cpu(), self.n_items, gen, batch.cpu()).to(pos.device)
        pos_logit = (states * self.item(pos)).sum(-1)[mask]
        neg_logit = (states * self.item(neg)).sum(-1)[mask]
        return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + \
            F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))


class SASRec(CFRecommender):
    name = "sasrec"
    config_cls = SASRecConfig

    def build_net(self, n_items: int, cfg: SASRecConfig) -> SASRecNet:
        if cfg.loss not in ("bce", "ce"):
            raise ValueError(f"sasrec loss must be 'bce' or 'ce', got '{cfg.loss}'")
        return SASRecNet(n_items, cfg)
