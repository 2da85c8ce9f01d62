"""Small building blocks shared by the CF networks."""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout from a uniform draw; about 2x faster than nn.Dropout's bernoulli on CPU here,
    and equally deterministic under ``torch.manual_seed``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) / (1.0 - self.p)
