"""LLM-SRec ("Lost in Sequence", KDD'25) as in the official code (docs/MODELS.md §6).

A frozen LLM reads the paper's prompt (last 10 titles, times, "Item No.", SASRec item vectors injected at
[HistoryEmb]) and its final-norm state at [UserOut] becomes the user vector h_U; items get h_I from their own
prompt at [ItemOut]. Trainable: f_I, f_user, f_item, f_CF-user and the two token vectors e_U, e_I. The frozen
pre-trained SASRec teacher (§3.1) gives E_i and O_u; the loss is retrieval CE over 1 positive + 3 negatives,
plus MSE between the L2-normalised f_user(h_U) and f_CF-user(O_u), plus uniformity (§6 "Losses").

Choices where the code and the paper disagree (§10.8, §10.10), all exposed in :class:`LLMSRecConfig`:
* patience 5 validation checks (the code; the paper says 10): with ~11 checks per epoch, 10 would rarely stop
  within the 10-epoch cap.
* lr decay 0.95 per validation check, epoch-end check included (``lr_decay="check"``, the code's behaviour,
  which produced the paper's numbers); ``"epoch"`` and ``"none"`` are options.
* validation metric HR@10 (the code) on the *persisted* validation candidates (never re-sampled, §7), on all
  users or a seeded subset (``max_valid_users``); an epoch-end check is skipped when the last step already
  ran one (the code's stale-value pitfall cannot arise). Ties count as improvements (``>=``, the code).
  The best checkpoint is restored at the end; the test set is never looked at during training.
* teacher: SASRec trained through the registry on the *same* train histories given to ``fit``, so the
  shuffle-train probe retrains the teacher on shuffled data too (§8.1, §10.3 resolved "yes"); cached on disk.
* teacher in eval mode while computing O_u (pitfall a); target never drawn as a negative (§2).
* heads run in fp32 outside the LLM's low precision, in training and evaluation alike (the code autocasts
  the heads in evaluation only); the frozen LLM's weights are stored in the compute dtype, equivalent to
  autocasting them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.config import AT_LEAST_1, FRACTION, NON_NEGATIVE, RATE, setting
from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores
from seqbench.llm.backbone import cache_root, decoder_of, load_llm, resolve_device
from seqbench.llm.prompts import PROMPT_WINDOW, PromptBuilder, UserPrompts, collate, inject, plan_groups, read_at
from seqbench.progress import TrainProgress

from .base import FitReport

TEACHER_MAXLEN = 128  # pitfall (c): the teacher's window equals SASRec's position table


@dataclass
class LLMSRecConfig:
    llm: str = setting("smollm2-135m", "frozen LLM: a seqbench name, a Hugging Face id or a local folder")
    dtype: str = setting("auto", "frozen LLM precision (auto: bf16 on a CPU with native bf16, else fp32)",
                         choices=("auto", "bf16", "fp16", "fp32", "bfloat16", "float16", "float32"))
    device: str = setting("auto", "auto = the run's device; cpu | cuda | hpu")
    batch_size: int = setting(20, "users per optimizer step (§6; 16 for Electronics)", AT_LEAST_1)
    max_epochs: int = setting(10, "most epochs over the training users", AT_LEAST_1)
    lr: float = setting(1e-4, "Adam learning rate of the trainable MLPs", RATE)
    beta2: float = setting(0.98, "Adam beta2", RATE)
    val_every_frac: float = setting(0.1, "validation every floor(steps_per_epoch * frac) steps and at epoch end",
                                    FRACTION)
    patience: int = setting(5, "validation checks without improvement before stopping (code 5, paper 10)",
                            AT_LEAST_1)
    lr_decay: str = setting("check", "check: x factor per validation check (the code); epoch; none",
                            choices=("check", "epoch", "none"))
    lr_decay_factor: float = setting(0.95, "learning-rate multiplier per decay", FRACTION)
    valid_metric: str = setting("hr@10", "model-selection metric on the validation candidates (the code's)",
                                choices=("hr@10", "ndcg@10", "hr@20", "ndcg@20"))
    max_valid_users: int | None = setting(None, "validate on a seeded subset of this many users (None = all)",
                                          AT_LEAST_1)
    distill: bool | str = setting(True, "true = MSE distillation (§6), false = off, contrastive = InfoNCE (App. E.2)")
    uniform: bool = setting(True, "uniformity loss on the user representations")
    user_rep_in_prompt: bool = setting(False, "App. E.1: CoLLM-style prompt with [UserRep] = f_U(O_u)")
    autoregressive: bool = setting(False, "App. E.3: every position of the train sequence is a target")
    n_negatives: int = setting(3, "negatives per training user (§2: 1 positive + 3 negatives)", AT_LEAST_1)
    window: int = setting(PROMPT_WINDOW, "most recent items shown in the prompt", AT_LEAST_1)
    d_proj: int = setting(128, "projection size d' (App. D)", AT_LEAST_1)
    teacher_epochs: int = setting(200, "SASRec teacher: most epochs (official: fixed 200)", AT_LEAST_1)
    teacher_patience: int = setting(10, "SASRec teacher: early stopping on validation NDCG@10", AT_LEAST_1)
    teacher_loss: str = setting("bce", "SASRec teacher loss (official bce; seqbench's sasrec defaults to ce)",
                                choices=("ce", "bce"))
    teacher_cache: bool = setting(True, "reuse a teacher trained on the same data, seed, config and histories")
    item_batch_size: int = setting(128, "item prompts per forward in evaluation (§6: 128)", AT_LEAST_1)
    user_batch_size: int = setting(32, "user prompts per forward in evaluation", AT_LEAST_1)
    max_batch_tokens: int = setting(16384, "padded tokens per forward in evaluation", AT_LEAST_1)
    group_overhead: int = setting(48, "cost of one extra forward, in tokens, for length grouping", NON_NEGATIVE)

def _mlp(d_in: int, d_hidden: int, d_out: int, act: nn.Module) -> nn.Sequential:
    """Linear -> LayerNorm -> act -> Linear with Xavier-normal weights and default biases (§2, §6)."""
    net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.LayerNorm(d_hidden), act, nn.Linear(d_hidden, d_out))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
    return net


class LLMSRecHeads(nn.Module):
    """Everything LLM-SRec trains (§6 "Modules and shapes"); f_U only for the App. E.1 prompt."""

    def __init__(self, d_llm: int, d_cf: int, d_proj: int, emb_mean: float, emb_std: float, user_rep: bool):
        super().__init__()
        self.f_I = _mlp(d_cf, d_llm, d_llm, nn.LeakyReLU())  # item_emb_proj
        self.f_user = _mlp(d_llm, 2048, d_proj, nn.LeakyReLU())  # pred_user
        self.f_item = _mlp(d_llm, 2048, d_proj, nn.LeakyReLU())  # pred_item
        self.f_cf_user = _mlp(d_cf, d_proj, d_proj, nn.GELU())  # pred_user_CF2
        self.f_U = _mlp(d_cf, d_llm, d_llm, nn.LeakyReLU()) if user_rep else None
        # e_U / e_I (CLS / CLS_item): N(mean, std) of the resized input-embedding matrix (§2).
        self.e_U = nn.Parameter(torch.randn(1, d_llm) * emb_std + emb_mean)
        self.e_I = nn.Parameter(torch.randn(1, d_llm) * emb_std + emb_mean)


def uniformity(x: torch.Tensor) -> torch.Tensor:
    """mean over in-batch pairs b < b' of exp(-2 ||x_b - x_b'||^2), no log (§6 L_Uniform)."""
    if len(x) < 2:
        return x.sum() * 0.0
    return torch.pdist(x, p=2).pow(2).mul(-2.0).exp().mean()


def drop_last(hist: Histories) -> Histories:
    """Every row without its last item (training input, §1)."""
    keep = np.maximum(hist.lengths - 1, 0)
    new_off = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    src = np.repeat(hist.offsets[:-1], keep) + (np.arange(new_off[-1]) - np.repeat(new_off[:-1], keep))
    return Histories(hist.users, hist.items[src], hist.times[src], new_off)


def training_examples(train: Histories, autoregressive: bool, maxlen: int = TEACHER_MAXLEN):
    """(histories, targets): one example per user (history = train minus its last item, target = that item)
    or, autoregressive (App. E.3), one per position t >= 1 (history = the <= maxlen items before t)."""
    lens = train.lengths
    if not autoregressive:
        ok = np.flatnonzero(lens >= 2)
        sub = train.take(ok)
        return drop_last(sub), sub.items[sub.offsets[1:] - 1]
    n_ex = np.maximum(lens - 1, 0)
    row = np.repeat(np.arange(len(lens)), n_ex)
    t = np.arange(n_ex.sum()) - np.repeat(np.concatenate([[0], np.cumsum(n_ex)[:-1]]), n_ex) + 1
    start = train.offsets[row]
    hl = np.minimum(t, maxlen)
    new_off = np.concatenate([[0], np.cumsum(hl)]).astype(np.int64)
    src = np.repeat(start + t - hl, hl) + (np.arange(new_off[-1]) - np.repeat(new_off[:-1], hl))
    hist = Histories(train.users[row], train.items[src], train.times[src], new_off)
    return hist, train.items[start + t]


def sample_negatives(avoid: np.ndarray, targets: np.ndarray, n_items: int, k: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(B, k) distinct uniform negatives per row, outside ``avoid`` (B, L; 0 = padding) and never the target
    (§2); vectorised rejection rounds, an exact per-row draw for the rare rows that keep clashing."""
    b = len(targets)
    neg = rng.integers(1, n_items + 1, size=(b, k))
    for _ in range(30):
        bad = (neg[:, :, None] == avoid[:, None, :]).any(-1) | (neg == targets[:, None])
        for j in range(1, k):
            bad[:, j] |= (neg[:, j:j + 1] == neg[:, :j]).any(1)
        if not bad.any():
            return neg
        neg = np.where(bad, rng.integers(1, n_items + 1, size=(b, k)), neg)
    for r in np.flatnonzero(bad.any(1)):
        pool = np.setdiff1d(np.arange(1, n_items + 1), np.concatenate([avoid[r], targets[r:r + 1]]))
        if len(pool) == 0:
            raise SeqbenchError(f"no negative item available for a training example of user row {r}")
        neg[r] = rng.choice(pool, size=k, replace=len(pool) < k)
    return neg


_LLMS: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def shared_llm(name: str, dtype: str, device: torch.device):
    """One frozen copy per (name, dtype, device) per process: fresh models (seeds, shuffle-train) reuse it."""
    key = (name, dtype, str(device))
    if key not in _LLMS:
        _LLMS[key] = load_llm(name, dtype=dtype, device=str(device))
    return _LLMS[key]


class LLMSRec:
    """Recommender protocol on top of a frozen LLM and a frozen SASRec teacher (docs/MODELS.md §6)."""

    name: ClassVar[str] = "llmsrec"
    config_cls: ClassVar[type[LLMSRecConfig]] = LLMSRecConfig

    def __init__(self, n_items: int, config: LLMSRecConfig | None = None):
        self.n_items = n_items
        self.config = config or LLMSRecConfig()
        cfg = self.config
        distill = cfg.distill if isinstance(cfg.distill, bool) else str(cfg.distill).lower()
        self.distill = {True: "mse", "mse": "mse", "true": "mse", False: "none", "false": "none",
                        "none": "none", "contrastive": "contrastive"}.get(distill)
        if self.distill is None:
            raise SeqbenchError(f"llmsrec distill must be true, false or contrastive, got '{cfg.distill}'")
        if cfg.lr_decay not in ("check", "epoch", "none"):
            raise SeqbenchError(f"llmsrec lr_decay must be check, epoch or none, got '{cfg.lr_decay}'")
        if cfg.valid_metric not in ("hr@10", "ndcg@10", "hr@20", "ndcg@20"):
            raise SeqbenchError(f"llmsrec valid_metric must be hr@10 or ndcg@10, got '{cfg.valid_metric}'")
        self.window = cfg.window
        self.device = torch.device("cpu")
        self.llm = self.tok = None
        self.teacher = None
        self.heads: LLMSRecHeads | None = None
        self.E: torch.Tensor | None = None  # frozen SASRec item table (n_items + 1, 64)
        self.titles: list[str] = []
        self.builder: PromptBuilder | None = None
        self.progress = None
        self._version = 0  # bumped whenever trainable weights change; keys the item-vector cache
        self._item_cache: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    # -- setup ----------------------------------------------------------------------------------------
    def _setup_llm(self, device: torch.device) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device) if cfg.device != "auto" else device
        self.llm, self.tok = shared_llm(cfg.llm, cfg.dtype, self.device)
        self.ids = self.llm.soft_ids
        self.body = decoder_of(self.llm)
        self.embed = self.llm.get_input_embeddings()
        self.llm_dtype = self.embed.weight.dtype

    def _setup_prompts(self, titles) -> None:
        self.titles = [str(t) for t in titles]
        if len(self.titles) != self.n_items + 1:
            raise SeqbenchError(f"llmsrec built for {self.n_items} items but the dataset has {len(titles) - 1}")
        self.builder = PromptBuilder(self.tok, self.titles, self.ids, window=self.window,
                                     user_rep=self.config.user_rep_in_prompt)

    def _build_heads(self, seed: int) -> None:
        w = self.embed.weight.detach().float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.heads = LLMSRecHeads(int(w.shape[1]), int(self.E.shape[1]), self.config.d_proj,
                                      float(w.mean()), float(w.std()), self.config.user_rep_in_prompt)
        self.heads.to(self.device)

    def _teacher_layer(self) -> dict[str, Any]:
        return {"maxlen": TEACHER_MAXLEN, "max_epochs": self.config.teacher_epochs,
                "patience": self.config.teacher_patience, "loss": self.config.teacher_loss}

    def _fit_teacher(self, data: SeqDataset, train: Histories, ctx: RunContext):
        """Train (or load from the cache) the SASRec teacher on exactly these train histories."""
        from seqbench.models import create_model

        teacher = create_model("sasrec", data.n_items, self._teacher_layer())
        h = hashlib.sha256()
        for a in (train.users, train.items, train.times, train.offsets):
            h.update(np.ascontiguousarray(a).tobytes())
        key = hashlib.sha256(json.dumps({
            "data": data.content_hash, "seed": ctx.seed, "teacher": dataclasses.asdict(teacher.config),
            "train": h.hexdigest()}, sort_keys=True).encode()).hexdigest()[:20]
        path = cache_root() / "teachers" / f"{data.name}-sasrec-{key}"
        if self.config.teacher_cache and (path / "weights.pt").is_file():
            teacher.load(path)
        else:
            # the teacher's curve is logged as teacher_* so it never mixes with LLM-SRec's own train_loss
            teacher_ctx = dataclasses.replace(ctx, log_metric=lambda name, value, step: ctx.metric(
                f"teacher_{name}", value, step))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                teacher.fit(data, train, teacher_ctx)
            if self.config.teacher_cache:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
                    teacher.save(tmp)
                    shutil.rmtree(path, ignore_errors=True)
                    os.replace(tmp, path)
                except OSError:
                    pass  # an unwritable cache only costs time
        self._set_teacher(teacher)

    def _set_teacher(self, teacher) -> None:
        teacher.net.to(self.device).eval()  # pitfall (a): never in train mode
        teacher.device = self.device
        for p in teacher.net.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.E = teacher.net.item.weight.detach()  # raw rows, not scaled by sqrt(d) (§2)

    def _teacher_user(self, hist: Histories) -> torch.Tensor:
        """O_u on the <= 128-item history (eval mode)."""
        return torch.from_numpy(self.teacher.user_representation(hist)).float().to(self.device)

    # -- LLM passes -----------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, soft: list[tuple[int, torch.Tensor]],
                 out_id: int) -> torch.Tensor:
        """One LLM pass with soft tokens injected; fp32 (B, d_llm) states at ``out_id``."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        x = self.embed(ids)
        for tid, vals in soft:
            x = inject(x, ids, tid, vals.to(self.llm_dtype))
        hidden = self.body(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
        return read_at(hidden, ids, out_id).float()

    def _grouped(self, seqs: list, forward_group, task=None, max_rows: int = 0,
                 max_tokens: int | None = None) -> torch.Tensor:
        """Run ``forward_group(rows, ids, mask)`` over length-grouped batches of token sequences and return
        the (N, d_llm) states in input order."""
        lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        out: list[torch.Tensor] = []
        order: list[np.ndarray] = []
        for g in plan_groups(lens, max_rows, max_tokens, self.config.group_overhead):
            ids, mask = collate([seqs[i] for i in g], self.ids.pad)
            out.append(forward_group(g, ids, mask))
            order.append(g)
            if task is not None:
                self.progress.update(task, advance=len(g))
        inv = np.empty(len(seqs), dtype=np.int64)
        inv[np.concatenate(order)] = np.arange(len(seqs))
        return torch.cat(out)[torch.from_numpy(inv).to(self.device)]

    def _user_states(self, prompts: UserPrompts, o_u: torch.Tensor | None, max_rows: int,
                     max_tokens: int | None, task=None) -> torch.Tensor:
        """h_U for every prompt, forwards grouped by length; rows come back in input order."""
        heads = self.heads

        def forward_group(g: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            items = torch.from_numpy(prompts.shown.take(g).items).to(self.device)
            soft = [(self.ids.history_emb, heads.f_I(self.E[items])), (self.ids.user_out, heads.e_U[0])]
            if o_u is not None and heads.f_U is not None:
                soft.append((self.ids.user_rep, heads.f_U(o_u[torch.from_numpy(g).to(self.device)])))
            return self._forward(ids, mask, soft, self.ids.user_out)

        return self._grouped(prompts.ids, forward_group, task, max_rows, max_tokens)

    def _item_states(self, items: np.ndarray, max_rows: int, max_tokens: int | None, task=None) -> torch.Tensor:
        """h_I for each item id, forwards grouped by length; rows in input order."""
        heads = self.heads

        def forward_group(g: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            it = torch.from_numpy(items[g]).to(self.device)
            soft = [(self.ids.history_emb, heads.f_I(self.E[it])), (self.ids.item_out, heads.e_I[0])]
            return self._forward(ids, mask, soft, self.ids.item_out)

        return self._grouped(self.builder.items(items), forward_group, task, max_rows, max_tokens)

    # -- evaluation -----------------------------------------------------------------------------------
    def _require_ready(self) -> None:
        if self.heads is None or self.builder is None:
            raise SeqbenchError("llmsrec has not been trained or loaded")

    def _weights_version(self) -> tuple[int, int]:
        """Changes whenever a trainable tensor changes: our own counter plus torch's in-place version counters
        (an optimizer step or ``load_state_dict`` outside ``fit`` invalidates the item cache too)."""
        return self._version, sum(p._version for p in self.heads.parameters())

    @torch.no_grad()
    def item_vectors(self, items: np.ndarray) -> torch.Tensor:
        """f_item(h_I) for the given ids, from a cache valid until the weights change: computed once per
        evaluation round for every item any candidate set needs, in large no-grad batches (§6)."""
        self._require_ready()
        items = np.asarray(items, dtype=np.int64)
        version = self._weights_version()
        if self._item_cache is None or self._item_cache[0] != version:
            self._item_cache = (version, torch.zeros(self.n_items + 1, self.config.d_proj, device=self.device),
                                torch.zeros(self.n_items + 1, dtype=torch.bool, device=self.device))
        _, table, have = self._item_cache
        need = np.unique(items)
        need = need[~have[torch.from_numpy(need).to(self.device)].cpu().numpy()]
        if len(need):
            self.heads.eval()
            task = self.progress.add_task("llmsrec items", total=len(need)) if self.progress else None
            h = self._item_states(need, self.config.item_batch_size,
                                  self.config.max_batch_tokens, task)
            idx = torch.from_numpy(need).to(self.device)
            table[idx] = self.heads.f_item(h)
            have[idx] = True
            if task is not None:
                self.progress.remove_task(task)
        return table[torch.from_numpy(items).to(self.device)]

    @torch.no_grad()
    def _user_vectors(self, hist: Histories, raw: bool = False) -> torch.Tensor:
        self._require_ready()
        self.heads.eval()
        prompts = self.builder.users(hist)
        o_u = self._teacher_user(hist) if self.config.user_rep_in_prompt else None
        task = self.progress.add_task("llmsrec users", total=len(hist)) if self.progress else None
        out = []
        step = 4096  # bounds memory of the states kept at once
        for b in range(0, len(hist), step):
            rows = np.arange(b, min(b + step, len(hist)))
            sub = UserPrompts([prompts.ids[i] for i in rows], prompts.shown.take(rows))
            h = self._user_states(sub, None if o_u is None else o_u[b:b + step], self.config.user_batch_size,
                                  self.config.max_batch_tokens, task)
            out.append(h if raw else self.heads.f_user(h))
        if task is not None:
            self.progress.remove_task(task)
        return torch.cat(out) if out else torch.zeros(0, self.config.d_proj)

    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray:
        """<f_item(h_I), f_user(h_U)> for each candidate (raw dot product, §2), target in column 0."""
        cands = np.asarray(candidates, dtype=np.int64)
        if len(cands) != len(hist):
            raise ValueError(f"{len(hist)} histories but {len(cands)} candidate rows")
        self.item_vectors(np.unique(cands))  # one pass for the union of every candidate set
        items = self.item_vectors(cands.reshape(-1)).view(*cands.shape, -1)
        users = self._user_vectors(hist)
        return torch.einsum("bd,bcd->bc", users, items).float().cpu().numpy()

    def user_representation(self, hist: Histories) -> np.ndarray:
        """f_user(h_U): the scoring vector (§8.3)."""
        return self._user_vectors(hist).float().cpu().numpy()

    def raw_user_representation(self, hist: Histories) -> np.ndarray:
        """h_U, the LLM's [UserOut] state before f_user (§8.3 "also log the raw h_U")."""
        return self._user_vectors(hist, raw=True).float().cpu().numpy()

    # -- training -------------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.heads.parameters() if p.requires_grad]

    def batch_loss(self, hist: Histories, targets: np.ndarray, o_u: torch.Tensor,
                   rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """L = L_Retrieval + L_Distill + L_Uniform on one batch of training examples (§6 "Losses")."""
        cfg, heads = self.config, self.heads
        avoid = hist.padded(TEACHER_MAXLEN)
        negs = sample_negatives(avoid, targets, self.n_items, cfg.n_negatives, rng)
        cands = np.concatenate([targets[:, None], negs], axis=1)  # positive at index 0
        prompts = self.builder.users(hist)
        h_u = self._user_states(prompts, o_u if cfg.user_rep_in_prompt else None, len(hist), None)
        uniq, inv = np.unique(cands, return_inverse=True)
        h_i = self._item_states(uniq, len(uniq), None)
        u = heads.f_user(h_u)
        iv = heads.f_item(h_i)[torch.from_numpy(inv.reshape(cands.shape)).to(self.device)]
        logits = torch.einsum("bd,bcd->bc", u, iv)
        loss_ret = F.cross_entropy(logits, torch.zeros(len(u), dtype=torch.long, device=self.device))
        parts = {"retrieval": float(loss_ret.detach())}
        loss = loss_ret
        if self.distill != "none" or cfg.uniform:
            c = heads.f_cf_user(o_u)
            un, cn = F.normalize(u, dim=-1), F.normalize(c, dim=-1)
            if self.distill == "mse":
                loss_d = F.mse_loss(un, cn)
            elif self.distill == "contrastive":  # App. E.2 Eq. 10: InfoNCE with the dot-product score s
                loss_d = F.cross_entropy(u @ c.T, torch.arange(len(u), device=self.device))
            else:
                loss_d = None
            if loss_d is not None:
                loss = loss + loss_d
                parts["distill"] = float(loss_d.detach())
            if cfg.uniform:
                loss_u = uniformity(un) + uniformity(cn)
                loss = loss + loss_u
                parts["uniform"] = float(loss_u.detach())
        return loss, parts

    def _validate(self, hist: Histories, cands: np.ndarray) -> dict[str, float]:
        ranks = ranks_from_scores(self.score(hist, cands))
        return {k: float(np.mean(v)) for k, v in metrics_from_ranks(ranks).items()}

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
        cfg = self.config
        start = time.perf_counter()
        self.progress = ctx.progress
        self._setup_llm(ctx.device)
        self._setup_prompts(data.titles)
        self._fit_teacher(data, train, ctx)
        self._build_heads(ctx.seed)

        ex_hist, ex_target = training_examples(train, cfg.autoregressive)
        ex_hist = ex_hist.tail(TEACHER_MAXLEN)
        if len(ex_target) == 0:
            raise SeqbenchError("llmsrec: no user has two or more train items to build a training example")
        o_all = self._teacher_user(ex_hist)  # frozen teacher: O_u once for every example
        v_hist = data.histories("valid")
        v_cands = data.candidates["valid"]
        if cfg.max_valid_users is not None and cfg.max_valid_users < len(v_hist):
            rows = np.sort(np.random.default_rng(ctx.seed).choice(len(v_hist), cfg.max_valid_users, replace=False))
            v_hist, v_cands = v_hist.take(rows), v_cands[rows]

        params = self.trainable_parameters()
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, cfg.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cfg.lr_decay_factor ** k)
        rng = np.random.default_rng(ctx.seed)
        n = len(ex_target)
        steps = -(-n // cfg.batch_size)
        every = max(1, int(steps * cfg.val_every_frac))
        best, best_state, best_epoch, bad, t_best = -1.0, None, 0, 0, 0.0
        best_ndcg = 0.0
        curve: list[tuple[int, float, float | None]] = []
        bar = TrainProgress(ctx.progress, "llmsrec", cfg.max_epochs * steps, "step", cfg.patience, every,
                            f"valid {cfg.valid_metric}")
        best_step = 0
        check, epoch, stop = 0, 0, False
        for epoch in range(1, cfg.max_epochs + 1):
            order = rng.permutation(n)
            total = 0.0
            for s in range(steps):
                rows = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                self.heads.train()
                loss, parts = self.batch_loss(ex_hist.take(rows), ex_target[rows],
                                              o_all[torch.from_numpy(rows).to(self.device)], rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self._version += 1
                total += float(loss.detach())
                count = s + 1
                gstep = (epoch - 1) * steps + s + 1
                ctx.metric("train_loss", float(loss.detach()), gstep)
                for part, value in parts.items():  # retrieval CE vs chance ln(1 + n_negatives) shows learning
                    ctx.metric(f"train_{part}", value, gstep)
                bar.update(gstep, total / count, best, best_step, cfg.patience - bad)
                last = s == steps - 1
                if (s + 1) % every == 0 or last:
                    check += 1
                    m = self._validate(v_hist, v_cands)
                    value = m[cfg.valid_metric]
                    for key in dict.fromkeys((cfg.valid_metric, "ndcg@10")):
                        ctx.metric(f"valid_{key}", m[key], gstep)
                    curve.append((check, total / count, m["ndcg@10"]))
                    if value >= best:  # ties count as improvements (the code)
                        best, best_ndcg, best_epoch, bad, best_step = value, m["ndcg@10"], epoch, 0, gstep
                        best_state = copy.deepcopy(self.heads.state_dict())
                        t_best = time.perf_counter() - start
                    else:
                        bad += 1
                    if cfg.lr_decay == "check":
                        sched.step()
                    if bad >= cfg.patience:
                        stop = True
                        break
            if cfg.lr_decay == "epoch":
                sched.step()
            if stop:
                break
        bar.close((epoch - 1) * steps + count, "early stop: no improvement" if stop else "max_epochs reached")
        if best_state is not None:
            self.heads.load_state_dict(best_state)
            self._version += 1
        self.heads.eval()
        secs = time.perf_counter() - start
        return FitReport(best_epoch=best_epoch, best_valid=best_ndcg, epochs_run=epoch, seconds=secs,
                         seconds_to_best=t_best, curve=curve)

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Trainable parts, the (small) teacher and the titles; never the LLM."""
        self._require_ready()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.heads.state_dict(), path / "heads.pt")
        self.teacher.save(path / "teacher")
        (path / "titles.json").write_text(json.dumps(self.titles))
        (path / "config.json").write_text(json.dumps(
            {"model": self.name, "n_items": self.n_items, "config": dataclasses.asdict(self.config)}, indent=2))

    def load(self, path: Path) -> None:
        from seqbench.models import create_model

        path = Path(path)
        if self.llm is None:
            self._setup_llm(resolve_device("auto"))
        self._setup_prompts(json.loads((path / "titles.json").read_text()))
        teacher = create_model("sasrec", self.n_items, self._teacher_layer())
        teacher.load(path / "teacher")
        self._set_teacher(teacher)
        self._build_heads(0)
        self.heads.load_state_dict(torch.load(path / "heads.pt", map_location=self.device, weights_only=True))
        self.heads.eval()
        self._version += 1
