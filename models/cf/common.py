"""What all CF-SRec models share: config, batching, scoring, user representation, fit and save/load, and
the small building blocks of their networks (:class:`Dropout`, :func:`trim_left_padding`,
:func:`sample_negatives`).

A model file only defines its network (a :class:`CFNet`) and its defaults (a :class:`CFConfig` subclass).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from seqbench.config import AT_LEAST_1, DROPOUT, NON_NEGATIVE, RATE, setting
from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.eval.evaluator import evaluate
from seqbench.space import choice, loguniform, uniform
from seqbench.train.loop import Check, Schedule, Stage, Step, Task
from seqbench.train.loop import train as train_loop

from ..base import FitReport


@dataclass
class CFConfig:
    d: int = setting(64, "embedding / hidden size", AT_LEAST_1, space=choice(32, 64, 128))
    maxlen: int = setting(128, "history window: the most recent items the model reads", AT_LEAST_1)
    dropout: float = setting(0.1, "dropout on embeddings and hidden layers", DROPOUT, space=uniform(0.0, 0.5))
    lr: float = setting(1e-3, "Adam learning rate", RATE, space=loguniform(1e-4, 1e-2))
    batch_size: int = setting(128, "users per training batch", AT_LEAST_1)
    max_epochs: int = setting(200, "most epochs (passes over all users); early stopping usually ends sooner",
                              AT_LEAST_1)
    patience: int = setting(10, "validation checks without improvement before stopping", AT_LEAST_1)
    eval_every: int = setting(2, "epochs between validation checks (NDCG@10 on the validation candidates)",
                              AT_LEAST_1)
    weight_decay: float = setting(0.0, "Adam weight decay", NON_NEGATIVE)
    beta2: float = setting(0.98, "Adam beta2", RATE)
    eval_batch_size: int = setting(512, "users per scoring batch (memory, not results)", AT_LEAST_1)
    valid_eval: str = setting("sampled", "validation ranking for early stopping: sampled (the persisted 99 "
                              "negatives) or full (all items, seen kept)", choices=("sampled", "full"))


class CFNet(nn.Module):
    """A network over left-padded item-id sequences (0 = padding)."""

    def user_states(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) history -> (B, d) user representation used for scoring."""
        raise NotImplementedError

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(...,) item ids -> (..., d) output-side item vectors."""
        raise NotImplementedError

    def score(self, seq: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,bcd->bc", self.user_states(seq), self.item_vectors(cands))

    def score_shared(self, seq: torch.Tensor, table: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, L) histories against one item list ``items`` whose vectors are ``table`` (full ranking): a matmul
        instead of a (B, C, d) gather. Models that add a per-item bias to ``score`` add it here too."""
        return self.user_states(seq) @ table.T

    def loss(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Training loss on (B, maxlen + 1) sequences: inputs are [:, :-1], next items [:, 1:]."""
        raise NotImplementedError


class CFRecommender:
    """Adapts a :class:`CFNet` to the :class:`~seqbench.models.base.Recommender` protocol."""

    name: ClassVar[str] = "cf"
    config_cls: ClassVar[type[CFConfig]] = CFConfig

    def __init__(self, n_items: int, config: CFConfig | None = None):
        self.n_items = n_items
        self.config = config or self.config_cls()
        self.device = torch.device("cpu")
        self.net = self.build_net(n_items, self.config)

    def build_net(self, n_items: int, cfg: CFConfig) -> CFNet:
        raise NotImplementedError

    @property
    def window(self) -> int:
        return self.config.maxlen

    # -- inference -----------------------------------------------------------------------------------
    def _batches(self, hist: Histories):
        seqs = torch.from_numpy(hist.padded(self.window))
        bs = self.config.eval_batch_size
        for b in range(0, len(seqs), bs):
            yield b, seqs[b : b + bs].to(self.device)

    @torch.no_grad()
    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray:
        self.net.eval()
        cands = torch.from_numpy(np.asarray(candidates, dtype=np.int64))
        out = [self.net.score(seq, cands[b : b + len(seq)].to(self.device)).float().cpu()
               for b, seq in self._batches(hist)]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def score_all(self, hist: Histories, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of every item (column 0 is padding) for ``rows`` of ``hist``, for full-ranking evaluation."""
        hist = hist if rows is None else hist.take(rows)
        self.net.eval()
        items = torch.arange(self.n_items + 1, device=self.device)
        table = self.net.item_vectors(items)
        out = [self.net.score_shared(seq, table, items).float().cpu() for _, seq in self._batches(hist)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_items + 1), dtype=np.float32)

    @torch.no_grad()
    def user_representation(self, hist: Histories) -> np.ndarray:
        self.net.eval()
        return torch.cat([self.net.user_states(seq).float().cpu() for _, seq in self._batches(hist)]).numpy()

    # -- training ------------------------------------------------------------------------------------
    def train_rows(self, train: Histories) -> torch.Tensor:
        """Rows that ``net.loss`` trains on, one padded sequence each. Default: every user's last
        maxlen + 1 items, all positions training at once (the original SASRec way)."""
        return torch.from_numpy(train.padded(self.config.maxlen + 1))

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
        """Adam over users in a seeded order, validation NDCG@10 every ``eval_every`` epochs, early stopping,
        best state restored (the shared loop, :mod:`seqbench.train.loop`)."""
        cfg = self.config
        self.device = ctx.device
        self.net.to(ctx.device)
        task = CFTask(self, self.train_rows(train), data, ctx)
        sched = Schedule([Stage(cfg.max_epochs, cfg.patience)], -(-len(task.seqs) // cfg.batch_size),
                         eval_every=cfg.eval_every)
        return train_loop(task, sched, ctx, self.name)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "weights.pt")
        (path / "config.json").write_text(json.dumps(
            {"model": self.name, "n_items": self.n_items, "config": dataclasses.asdict(self.config)}, indent=2))

    def load(self, path: Path) -> None:
        path = Path(path)
        self.net.load_state_dict(torch.load(path / "weights.pt", map_location=self.device, weights_only=True))
        self.net.eval()


class CFTask(Task):
    """One epoch: every training row once, in an order drawn from a generator seeded by the run's seed, which
    ``net.loss`` also draws from (negatives, masks); dropout draws from torch's global RNG."""

    def __init__(self, model: CFRecommender, seqs: torch.Tensor, data: SeqDataset, ctx: RunContext):
        cfg = model.config
        self.model, self.net, self.seqs, self.device = model, model.net, seqs, ctx.device
        self.batch_size, self.protocol = cfg.batch_size, cfg.valid_eval
        self.valid_hist, self.valid_cands = data.histories("valid"), data.candidates["valid"]
        self.gen = torch.Generator().manual_seed(ctx.seed)
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay)

    def begin_epoch(self, stage: int, epoch: int) -> dict[str, Any]:
        return {"order": torch.randperm(len(self.seqs), generator=self.gen)}

    def step(self, plan: dict[str, Any], i: int) -> Step:
        self.net.train()
        rows = plan["order"][i * self.batch_size:(i + 1) * self.batch_size]
        return Step(self.net.loss(self.seqs[rows].to(self.device), self.gen))

    def validate(self) -> Check:
        self.net.eval()
        with torch.no_grad():
            ndcg = float(evaluate(self.model, self.valid_hist, self.valid_cands, protocol=self.protocol)
                         .summary["ndcg@10"])
        return Check(ndcg, ndcg, {"ndcg@10": ndcg})

    def snapshot(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.net.state_dict())

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(snapshot)

    def state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "gen": self.gen.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.gen.set_state(state["gen"])

    def finish(self) -> None:
        self.net.eval()


def trim_left_padding(seq: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row. Exact for models whose positions are
    attached to slots counted from the right and that never attend to padding (SASRec), and it saves
    most of the work on short-history data."""
    used = (seq != 0).any(0)
    if not bool(used.any()):
        return seq[:, -1:]
    first = int(used.to(torch.int8).argmax())
    return seq[:, first:] if first else seq


def sample_negatives(pos: torch.Tensor, n_items: int, gen: torch.Generator, avoid: torch.Tensor) -> torch.Tensor:
    """Uniform negatives shaped like ``pos``, redrawn (a few vectorised rounds) where they hit ``avoid``
    (the row's items, (B, L)); padding positions keep whatever was drawn since their loss is masked."""
    neg = torch.randint(1, n_items + 1, pos.shape, generator=gen)
    for _ in range(3):
        clash = (neg.unsqueeze(-1) == avoid.unsqueeze(-2)).any(-1)
        if not clash.any():
            break
        neg = torch.where(clash, torch.randint(1, n_items + 1, pos.shape, generator=gen), neg)
    return neg.to(pos.device)


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
