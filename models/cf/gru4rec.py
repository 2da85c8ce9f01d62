"""GRU4Rec in this project's recommended setting (docs/models/gru4rec.md) (not the official session-parallel recipe).

Each user's train sequence is one session. Item embedding 64 -> 1-layer tanh GRU (hidden 64) ->
dot product with the *same* item table ("constrained embedding", as the official code ties them).
Full-softmax cross-entropy at every real position (with at most ~31.5k items no sampling is needed).
Dropout on the embedding and on the GRU output, as the official ``dropout_p_embed``/``dropout_p_hidden``.

Choices where the spec was open:
* Left padding is removed exactly: rows are rotated to *right* padding before the GRU, so the recurrence
  starts at the first real item from h0 = 0 and the user state is gathered at the last real item.
  Trailing pads come after every real step of a causal recurrence, so they cannot affect it.
* No output bias (a tied embedding only, as recommended); init is uniform(+-sqrt(6/(rows+cols))) per
  matrix, the official GRU4Rec scheme; GRU biases start at 0.
* Dropout 0.3: the middle of the recommended grid {0.1, 0.3, 0.5}; tune with ``--set dropout=...``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import CFConfig, CFNet, CFRecommender, Dropout


@dataclass
class GRU4RecConfig(CFConfig):
    dropout: float = 0.3  # embedding and hidden dropout (one knob, as the recommended grid)
    patience: int = 5  # validation checks (eval_every=2 epochs each): 10 epochs (docs/models/gru4rec.md)


def right_align(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, L) ids -> (right-padded ids, lengths), trailing all-pad columns dropped."""
    length = (seq != 0).sum(1)
    cols = seq.size(1)
    idx = (torch.arange(cols, device=seq.device) + (cols - length).unsqueeze(1)) % cols
    right = seq.gather(1, idx)
    return right[:, : max(int(length.max()), 1)], length


def _uniform_init(p: torch.Tensor) -> None:
    bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
    nn.init.uniform_(p, -bound, bound)


class GRU4RecNet(CFNet):
    def __init__(self, n_items: int, cfg: GRU4RecConfig):
        super().__init__()
        self.n_items, self.cfg = n_items, cfg
        self.item = nn.Embedding(n_items + 1, cfg.d, padding_idx=0)
        self.gru = nn.GRU(cfg.d, cfg.d, num_layers=1, batch_first=True)
        self.drop_embed = Dropout(cfg.dropout)
        self.drop_hidden = Dropout(cfg.dropout)
        _uniform_init(self.item.weight)
        for name, p in self.gru.named_parameters():
            if name.startswith("weight"):
                for gate in p.data.chunk(3, 0):  # r, z, n gates: one (d, d) matrix each
                    _uniform_init(gate)
            else:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def run(self, right: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids -> (B, T, d) hidden states (exact at real positions)."""
        out, _ = self.gru(self.drop_embed(self.item(right)))
        return self.drop_hidden(out)

    def user_states(self, seq: torch.Tensor) -> torch.Tensor:
        right, length = right_align(seq)
        out = self.run(right)
        last = (length - 1).clamp(min=0)
        state = out[torch.arange(len(seq), device=seq.device), last]
        return state * (length > 0).unsqueeze(1).to(state.dtype)  # an empty history has state h0 = 0

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item(items)

    def loss(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        right, _ = right_align(batch)
        inp, tgt = right[:, :-1], right[:, 1:]
        mask = tgt != 0  # right padding: a real target always follows a real input
        out = self.run(inp)
        if not bool(mask.any()):  # only one-item rows: nothing to predict
            return out.sum() * 0.0
        return F.cross_entropy(out[mask] @ self.item.weight[1:].T, tgt[mask] - 1)


class GRU4Rec(CFRecommender):
    name = "gru4rec"
    config_cls = GRU4RecConfig

    def build_net(self, n_items: int, cfg: GRU4RecConfig) -> GRU4RecNet:
        return GRU4RecNet(n_items, cfg)
