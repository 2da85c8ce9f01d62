"""The core every LLM recommender shares (docs/models.md#llm4rec-baselines-tallrec-llara-collm-a-llmrec):
prompts with soft tokens, the [UserOut]/[ItemOut] retrieval heads, 1 + 3 candidate cross-entropy, the training
schedule (``fit``), save/load, and through the ``LLMVectors`` mixin (``vectors``) the evaluation side: item and
user vectors with their caches, scoring.

Dependencies point one way: this module uses ``fit``, ``generation`` and ``vectors``; none of them imports
it (``fit`` and ``generation`` state what they need from a model as a ``Protocol``).

A model (LLM-SRec, TALLRec, LLaRA, CoLLM, A-LLMRec) is a subclass stating only what differs:
* ``template()``: its prompt strings (whether [HistoryEmb] / [UserRep] appear decides which soft tokens exist);
* ``needs_teacher`` and ``prepare()``: which frozen CF parts it uses (the shared SASRec teacher, A-LLMRec's
  stage 1);
* ``lora_settings()``: LoRA on a private LLM copy, or the shared frozen LLM;
* ``extra_heads()`` / ``extra_losses()``: anything trained beyond the shared heads (LLM-SRec's distillation).

Heads run in fp32 outside the LLM's low precision, in training and evaluation alike; the frozen LLM's weights
are stored in the compute dtype, equivalent to autocasting them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.llm.backbone import attention_kernels, decoder_of, load_llm, resolve_device
from seqbench.llm.lora import add_lora, load_lora_state, lora_state
from seqbench.llm.prompts import (
    LLMSREC_PROMPT,
    PromptBuilder,
    PromptTemplate,
    UserPrompts,
    collate,
    group_overhead,
    inject,
    plan_groups,
    read_at,
)
from seqbench.models import get_spec

from ..base import FitReport
from .config import LLMRecConfig, LoRARecConfig
from .data import TEACHER_MAXLEN, centre_sample, in_batch_exclusions, training_candidates, training_examples
from .fit import fit_llm
from .generation import generation_loss
from .heads import RetrievalHeads, centre_mlp, in_batch_retrieval_loss, retrieval_loss
from .teacher import load_teacher, sasrec_teacher, teacher_layer
from .vectors import LLMVectors

_LLMS: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def shared_llm(name: str, dtype: str, device: torch.device):
    """One frozen copy per (name, dtype, device) per process: fresh models (seeds, shuffle-train) reuse it."""
    key = (name, dtype, str(device))
    if key not in _LLMS:
        _LLMS[key] = load_llm(name, dtype=dtype, device=str(device))
    return _LLMS[key]


class LLMRecommender(LLMVectors):
    """Recommender protocol for an LLM read at [UserOut]/[ItemOut]; see the module doc."""

    name: ClassVar[str] = "llm"
    config_cls: ClassVar[type[LLMRecConfig]] = LLMRecConfig
    needs_teacher: ClassVar[bool] = True  # frozen SASRec: E_i for [HistoryEmb], O_u for [UserRep] / losses
    item_act: ClassVar[type[nn.Module]] = nn.LeakyReLU  # f_I's activation

    def __init__(self, n_items: int, config: LLMRecConfig | None = None):
        super().__init__()  # LLMVectors: its caches and weights version
        self.n_items = n_items
        self.config = config or self.config_cls()
        cfg = self.config
        if cfg.lr_decay not in ("check", "epoch", "none"):
            raise SeqbenchError(f"{self.name} lr_decay must be check, epoch or none, got '{cfg.lr_decay}'")
        if cfg.valid_metric not in ("hr@10", "ndcg@10", "hr@20", "ndcg@20"):
            raise SeqbenchError(f"{self.name} valid_metric must be hr@10 or ndcg@10, got '{cfg.valid_metric}'")
        if cfg.task != "retrieval" and cfg.task not in (tasks := get_spec(self.name).tasks):  # the registry's
            raise SeqbenchError(f"{self.name} supports --task {' or '.join(tasks)}, not '{cfg.task}'")
        self.window = cfg.window
        self.device = torch.device("cpu")
        self.llm = self.tok = self.peft = None
        self.teacher = None
        self.teacher_identity: str | None = None  # the teacher's model-store identity (None: loaded with a model)
        self.heads: RetrievalHeads | None = None
        self.E: torch.Tensor | None = None  # frozen item table feeding f_I (SASRec's, or A-LLMRec's z)
        self.titles: list[str] = []
        self.builder: PromptBuilder | None = None
        self.progress = None

    # -- what a model states --------------------------------------------------------------------------
    def template(self) -> PromptTemplate:
        return LLMSREC_PROMPT

    def lora_settings(self) -> dict[str, Any] | None:
        """LoRA hyper-parameters, or None for a frozen LLM."""
        cfg = self.config
        if not isinstance(cfg, LoRARecConfig):
            return None
        return {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout, "targets": cfg.lora_targets}

    def extra_heads(self, d_cf: int) -> dict[str, Any]:
        """name -> module factory for trainable parts beyond the shared heads."""
        return {}

    def extra_losses(self, u: torch.Tensor, o_u: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Loss terms added to L_Retrieval; ``u`` = f_user(h_U) of the batch, ``o_u`` the teacher's O_u."""
        return {}

    def prepare(self, data: SeqDataset, train: Histories, ctx: RunContext) -> None:
        """Hook after the teacher is ready and before the heads are built (A-LLMRec's stage 1)."""

    @property
    def generation(self) -> bool:
        return self.config.task == "generation"

    @property
    def selection_metric(self) -> str:
        """What model selection maximises on validation: HR@1 of the decoded titles in generation."""
        return "hr@1" if self.generation else self.config.valid_metric

    @property
    def history_emb(self) -> bool:
        return "[HistoryEmb]" in self.template().item or "[HistoryEmb]" in self.template().history_line

    @property
    def user_rep(self) -> bool:
        return "[UserRep]" in self.template().user_prefix + self.template().user_suffix

    # -- setup ----------------------------------------------------------------------------------------
    def _setup_llm(self, device: torch.device) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device) if cfg.device != "auto" else device
        self.llm, self.tok = shared_llm(cfg.llm, cfg.dtype, self.device)
        self.peft = None  # a LoRA copy, if any, is made fresh by _build_heads
        self.ids = self.llm.soft_ids
        self._bind_llm(self.llm)

    def _bind_llm(self, llm: nn.Module) -> None:
        self.llm = llm
        self.body = decoder_of(llm)
        self.embed = llm.get_input_embeddings()
        self.llm_dtype = self.embed.weight.dtype

    def _setup_prompts(self, titles) -> None:
        self.titles = [str(t) for t in titles]
        if len(self.titles) != self.n_items + 1:
            raise SeqbenchError(f"{self.name} built for {self.n_items} items but the dataset has {len(titles) - 1}")
        self.builder = PromptBuilder(self.tok, self.titles, self.ids, window=self.window, template=self.template())

    def _build_heads(self, seed: int) -> None:
        """Fresh trainable parts, seeded: the heads, and LoRA adapters on a private copy of the LLM."""
        w = self.embed.weight.detach().float()
        d_item = int(self.E.shape[1]) if self.E is not None else 0  # f_I's input (A-LLMRec: z_i, 128)
        d_cf = int(self.teacher.net.item.weight.shape[1]) if self.teacher is not None else 0  # O_u (64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.heads = RetrievalHeads(int(w.shape[1]), self.config.d_proj, float(w.mean()), float(w.std()),
                                        d_item if self.history_emb else None, d_cf if self.user_rep else None,
                                        self.item_act, self.extra_heads(d_cf))
        self.heads.to(self.device)
        lora = self.lora_settings()
        if lora is not None:
            base, _ = shared_llm(self.config.llm, self.config.dtype, self.device)
            self.peft, inner = add_lora(base, seed=seed, **lora)
            self._bind_llm(inner)
            self.llm.eval()

    def _fit_teacher(self, data: SeqDataset, train: Histories, ctx: RunContext) -> None:
        """Train (or load from the cache) the SASRec teacher on exactly these train histories."""
        cfg = self.config
        layer = teacher_layer(cfg.teacher_epochs, cfg.teacher_patience, cfg.teacher_loss)
        stored = sasrec_teacher(data, train, ctx, layer, cfg.teacher_cache)
        self._set_teacher(stored.model)
        self.teacher_identity = stored.identity

    def _set_teacher(self, teacher) -> None:
        teacher.net.to(self.device).eval()  # never in train mode (its dropout would move O_u)
        teacher.device = self.device
        for p in teacher.net.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.E = teacher.net.item.weight.detach()  # raw rows, not scaled by sqrt(d)

    def teacher_user(self, hist: Histories) -> torch.Tensor:
        """O_u on the <= 128-item history (eval mode); inside ``pinned_user_rep``, the pinned user's O_u."""
        pinned = self.pinned_o_u(hist)
        if pinned is not None:
            return pinned
        return torch.from_numpy(self.teacher.user_representation(hist)).float().to(self.device)

    # -- LLM passes -----------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, soft: list[tuple[int, torch.Tensor]],
                 out_id: int) -> torch.Tensor:
        """One LLM pass with soft tokens injected; fp32 (B, d_llm) states at ``out_id``."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        with attention_kernels(self.device):
            hidden = self.body(inputs_embeds=self.embed_with_soft(ids, soft), attention_mask=mask,
                               use_cache=False).last_hidden_state
        return read_at(hidden, ids, out_id).float()

    def embed_with_soft(self, ids: torch.Tensor, soft: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        """Input embeddings of ``ids`` with each soft token's positions replaced by its (projected) vectors."""
        ids = ids.to(self.device)
        x = self.embed(ids)
        for tid, vals in soft:
            x = inject(x, ids, tid, vals.to(self.llm_dtype))
        return x

    def _grouped(self, seqs: list, forward_group, task=None, max_rows: int = 0,
                 max_tokens: int | None = None) -> torch.Tensor:
        """Run ``forward_group(rows, ids, mask)`` over length-grouped batches of token sequences and return
        the (N, d_llm) states in input order."""
        lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        out: list[torch.Tensor] = []
        order: list[np.ndarray] = []
        overhead = group_overhead(self.config.group_overhead, self.device)
        for g in plan_groups(lens, max_rows, max_tokens, overhead):
            ids, mask = collate([seqs[i] for i in g], self.ids.pad)
            out.append(forward_group(g, ids, mask))
            order.append(g)
            if task is not None:
                self.progress.update(task, advance=len(g))
        inv = np.empty(len(seqs), dtype=np.int64)
        inv[np.concatenate(order)] = np.arange(len(seqs))
        return torch.cat(out)[torch.from_numpy(inv).to(self.device)]

    def user_states(self, prompts: UserPrompts, o_u: torch.Tensor | None, max_rows: int,
                     max_tokens: int | None, task=None) -> torch.Tensor:
        """h_U for every prompt, forwards grouped by length; rows come back in input order."""
        heads = self.heads

        def forward_group(g: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            soft = []
            if heads.f_I is not None:
                items = torch.from_numpy(prompts.shown.take(g).items).to(self.device)
                soft.append((self.ids.history_emb, heads.f_I(self.E[items])))
            soft.append((self.ids.user_out, heads.e_U[0]))
            if o_u is not None and heads.f_U is not None:
                soft.append((self.ids.user_rep, heads.f_U(o_u[torch.from_numpy(g).to(self.device)])))
            return self._forward(ids, mask, soft, self.ids.user_out)

        return self._grouped(prompts.ids, forward_group, task, max_rows, max_tokens)

    def item_states(self, items: np.ndarray, max_rows: int, max_tokens: int | None, task=None) -> torch.Tensor:
        """h_I for each item id, forwards grouped by length; rows in input order."""
        heads = self.heads

        def forward_group(g: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            soft = []
            if heads.f_I is not None:
                soft.append((self.ids.history_emb, heads.f_I(self.E[torch.from_numpy(items[g]).to(self.device)])))
            soft.append((self.ids.item_out, heads.e_I[0]))
            return self._forward(ids, mask, soft, self.ids.item_out)

        return self._grouped(self.builder.items(items), forward_group, task, max_rows, max_tokens)

    # -- modes ----------------------------------------------------------------------------------------
    def require_ready(self, retrieval: bool = False) -> None:
        if self.heads is None or self.builder is None:
            raise SeqbenchError(f"{self.name} has not been trained or loaded")
        if retrieval and self.generation:
            raise SeqbenchError(f"{self.name} was trained for --task generation: it names a title among the listed "
                                "candidates and has no [UserOut]/[ItemOut] vectors to score or compare")

    def set_training(self, on: bool) -> None:
        """Heads and (LoRA models' private) LLM in train or eval mode; the shared frozen LLM stays in eval."""
        self.heads.train(on)
        if self.peft is not None:
            self.llm.train(on)

    # -- training -------------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Heads (in generation only the soft-token projections f_I / f_U: the retrieval heads are unused)
        and, for LoRA models, the adapters."""
        heads = [p for p in self.heads.parameters() if p.requires_grad]
        if self.generation:
            heads = [p for part in (self.heads.f_I, self.heads.f_U) if part is not None for p in part.parameters()]
        return heads + ([p for p in self.llm.parameters() if p.requires_grad] if self.peft is not None else [])

    def trainable_state(self) -> dict[str, Any]:
        """A detached copy of every trained tensor (best-checkpoint snapshots, resumable state)."""
        state = {"heads": {k: v.detach().clone() for k, v in self.heads.state_dict().items()}}
        if self.peft is not None:
            state["lora"] = lora_state(self.peft)
        return state

    def load_trainable_state(self, state: dict[str, Any]) -> None:
        self.heads.load_state_dict(state["heads"])
        if self.peft is not None:
            load_lora_state(self.peft, state["lora"])
        self.weights_updated()

    def batch_loss(self, hist: Histories, targets: np.ndarray, o_u: torch.Tensor | None,
                   rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """L_Retrieval over the positive + ``n_negatives`` uniform negatives, plus the model's extras; in
        generation the LM loss on the target title (``generation``)."""
        if self.generation:
            return generation_loss(self, hist, targets, o_u, rng)
        cfg, heads = self.config, self.heads
        avoid = hist.padded(TEACHER_MAXLEN)
        cands = training_candidates(avoid, targets, self.n_items, cfg.n_negatives, rng)
        prompts = self.builder.users(hist)
        h_u = self.user_states(prompts, o_u if self.user_rep else None, len(hist), None)
        uniq, inv = np.unique(cands, return_inverse=True)
        h_i = self.item_states(uniq, len(uniq), None)
        u = heads.f_user(h_u)
        iv = heads.f_item(h_i)[torch.from_numpy(inv.reshape(cands.shape)).to(self.device)]
        loss = retrieval_loss(u, iv)
        parts = {"retrieval": float(loss.detach())}  # the 1 + 3 CE, logged against chance ln 4 in either case
        if cfg.in_batch_negatives:
            exclude = torch.from_numpy(in_batch_exclusions(avoid, cands)).to(self.device)
            loss = in_batch_retrieval_loss(u, iv, exclude)
            parts["retrieval_in_batch"] = float(loss.detach())
        for name, term in self.extra_losses(u, o_u).items():
            loss = loss + term
            parts[name] = float(term.detach())
        return loss, parts

    def setup(self, data: SeqDataset, train: Histories, ctx: RunContext) -> None:
        """Everything before the training loop: LLM, prompts, frozen CF parts, fresh seeded trainable parts."""
        self.progress = ctx.progress
        self._setup_llm(ctx.device)
        self._setup_prompts(data.titles)
        if self.needs_teacher:
            self._fit_teacher(data, train, ctx)
        self.prepare(data, train, ctx)
        self._build_heads(ctx.seed)
        if self.config.head_init == "centred" and not self.generation:
            self._centre_heads(train, ctx.seed)

    def _centre_heads(self, train: Histories, seed: int) -> None:
        """``head_init=centred`` (see ``heads.centre_mlp``) on the means of :meth:`state_means`."""
        means = self.state_means(train, seed)
        if means is not None:
            centre_mlp(self.heads.f_user, means[0])
            centre_mlp(self.heads.f_item, means[1])

    @torch.no_grad()
    def state_means(self, train: Histories, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mean h_U over a seeded sample of training examples and mean h_I over a seeded sample of items
        (``data.centre_sample``), in eval mode with the current trainable parts; deterministic, so a resumed
        fit centres its fresh heads exactly as the interrupted one did before the checkpoint is loaded. None
        without training examples (``fit_llm`` reports that)."""
        cfg = self.config
        ex_hist, _ = training_examples(train, cfg.autoregressive)
        if len(ex_hist) == 0:
            return None
        rows, items = centre_sample(len(ex_hist), self.n_items, seed)
        hist = ex_hist.take(rows).tail(TEACHER_MAXLEN)
        self.set_training(False)
        o_u = self.teacher_user(hist) if self.user_rep else None
        h_u = self.user_states(self.builder.users(hist), o_u, cfg.user_batch_size, cfg.max_batch_tokens)
        h_i = self.item_states(items, cfg.item_batch_size, cfg.max_batch_tokens)
        return h_u.mean(0), h_i.mean(0)

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
        self.setup(data, train, ctx)
        return fit_llm(self, data, train, ctx)

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Trainable parts, the (small) teacher and the titles; never the LLM."""
        self.require_ready()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.heads.state_dict(), path / "heads.pt")
        if self.peft is not None:
            torch.save(lora_state(self.peft), path / "lora.pt")
        if self.teacher is not None:
            self.teacher.save(path / "teacher")
        self.save_extra(path)
        (path / "titles.json").write_text(json.dumps(self.titles))
        (path / "config.json").write_text(json.dumps(
            {"model": self.name, "n_items": self.n_items, "config": dataclasses.asdict(self.config)}, indent=2))

    def save_extra(self, path: Path) -> None:
        """Model-specific frozen parts (A-LLMRec's stage 1)."""

    def load_extra(self, path: Path) -> None:
        """Counterpart of ``save_extra``; runs after the teacher is loaded, before the heads are built."""

    def load(self, path: Path) -> None:
        path = Path(path)
        if self.llm is None:
            self._setup_llm(resolve_device("auto"))
        self._setup_prompts(json.loads((path / "titles.json").read_text()))
        if self.needs_teacher:
            cfg = self.config
            layer = teacher_layer(cfg.teacher_epochs, cfg.teacher_patience, cfg.teacher_loss)
            self._set_teacher(load_teacher(self.n_items, layer, path / "teacher"))
        self.load_extra(path)
        self._build_heads(0)
        state = {"heads": torch.load(path / "heads.pt", map_location=self.device, weights_only=True)}
        if self.peft is not None:
            state["lora"] = torch.load(path / "lora.pt", map_location=self.device, weights_only=True)
        self.load_trainable_state(state)
        self.set_training(False)
