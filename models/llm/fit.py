"""The training schedule of every LLM recommender (docs/models.md#llm-backbone-and-llm-srec),
resumable through ``RunContext.checkpoint``.

Choices where the LLM-SRec code and paper disagree, all options of :class:`LLMRecConfig`:
* patience 5 validation checks (the code; the paper says 10): with ~11 checks per epoch, 10 would rarely stop
  within the 10-epoch cap.
* lr decay 0.95 per validation check, epoch-end check included (``lr_decay="check"``, the code's behaviour,
  which produced the paper's numbers); ``"epoch"`` and ``"none"`` are options.
* validation metric HR@10 (the code) on the *persisted* validation candidates (never re-sampled), on all
  users or a seeded subset (``max_valid_users``); an epoch-end check is skipped when the last step already
  ran one (the code's stale-value pitfall cannot arise). Ties count as improvements (``>=``, the code).
  The best checkpoint is restored at the end; the test set is never looked at during training.

The loop itself (checks, early stopping, checkpoints and resume, curves, progress) is the shared one,
:mod:`seqbench.train.loop`, at step cadence; this module supplies the step, the validation and the state.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.train.loop import Check, Schedule, Stage, Step, Task
from seqbench.train.loop import train as train_loop

from ..base import FitReport
from .config import LLMRecConfig
from .data import TEACHER_MAXLEN, training_examples


class Trainable(Protocol):
    """What the schedule needs from a model (``LLMRecommender`` is one): it never imports the model's module."""

    name: str
    config: LLMRecConfig
    device: torch.device
    teacher: Any  # the frozen SASRec teacher, or None
    generation: bool  # trained for title generation (validated on HR@1)
    selection_metric: str  # what model selection maximises on validation

    def teacher_user(self, hist: Histories) -> torch.Tensor: ...

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def trainable_state(self) -> dict[str, Any]: ...

    def load_trainable_state(self, state: dict[str, Any]) -> None: ...

    def weights_updated(self) -> None: ...

    def set_training(self, on: bool) -> None: ...

    def batch_loss(self, hist: Histories, targets: np.ndarray, o_u: torch.Tensor | None,
                   rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, hist: Histories, cands: np.ndarray) -> dict[str, float]: ...


def validation_set(data: SeqDataset, max_users: int | None, seed: int,
                   candidates: str = "valid") -> tuple[Histories, np.ndarray]:
    """Validation histories and persisted candidates (``valid``, or ``valid_title`` for generation), or a
    seeded subset of ``max_users`` users."""
    hist, cands = data.histories("valid"), data.candidates[candidates]
    if max_users is not None and max_users < len(hist):
        rows = np.sort(np.random.default_rng(seed).choice(len(hist), max_users, replace=False))
        hist, cands = hist.take(rows), cands[rows]
    return hist, cands


def fit_llm(model: Trainable, data: SeqDataset, train: Histories, ctx: RunContext) -> FitReport:
    """Adam over the trainable parts, retrieval batches of ``batch_size`` examples, validation every
    ``val_every_frac`` of an epoch and at epoch end, early stopping, best state restored."""
    cfg = model.config
    task = LLMTask(model, data, train, ctx)
    steps = -(-len(task.targets) // cfg.batch_size)
    sched = Schedule([Stage(cfg.max_epochs, cfg.patience)], steps, eval_every=max(1, int(steps * cfg.val_every_frac)),
                     unit="step", max_steps=cfg.max_steps, lr_decay=cfg.lr_decay, ties_improve=True,
                     progress_metric=f"valid {model.selection_metric}",
                     valid_metric="hr@1" if model.generation else "ndcg@10")
    return train_loop(task, sched, ctx, model.name)


class LLMTask(Task):
    """Training examples (every user's last train item, or every prefix when ``autoregressive``) in an order
    drawn each epoch from a NumPy generator seeded by the run's seed, which also draws the negatives."""

    def __init__(self, model: Trainable, data: SeqDataset, train: Histories, ctx: RunContext):
        cfg = self.config = model.config
        self.model = model
        hist, self.targets = training_examples(train, cfg.autoregressive)
        self.hist = hist.tail(TEACHER_MAXLEN)
        if len(self.targets) == 0:
            raise SeqbenchError(f"{model.name}: no user has two or more train items to build a training example")
        self.o_all = model.teacher_user(self.hist) if model.teacher is not None else None  # frozen: once
        self.v_hist, self.v_cands = validation_set(data, cfg.max_valid_users, ctx.seed,
                                                   "valid_title" if model.generation else "valid")
        self.optimizer = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda k: cfg.lr_decay_factor ** k)
        self.rng = np.random.default_rng(ctx.seed)

    def begin_epoch(self, stage: int, epoch: int) -> dict[str, Any]:
        # a tensor, so the state loads with torch.load(weights_only=True)
        return {"order": torch.from_numpy(self.rng.permutation(len(self.targets)))}

    def step(self, plan: dict[str, Any], i: int) -> Step:
        model, bs = self.model, self.config.batch_size
        rows = plan["order"].numpy()[i * bs:(i + 1) * bs]
        model.set_training(True)
        o_u = self.o_all[torch.from_numpy(rows).to(model.device)] if self.o_all is not None else None
        loss, parts = model.batch_loss(self.hist.take(rows), self.targets[rows], o_u, self.rng)
        return Step(loss, parts=parts)

    def after_step(self) -> None:
        self.model.weights_updated()

    def validate(self) -> Check:
        """Selection on ``selection_metric`` (ties count as improvements, the code's ``>=``); the reported value
        (FitReport.best_valid) is validation NDCG@10, or HR@1 in the generation task."""
        key = self.model.selection_metric
        m = self.model.validate(self.v_hist, self.v_cands)
        logged = {name: m[name] for name in dict.fromkeys((key, "ndcg@10", "invalid")) if name in m}
        return Check(m[key], m.get("ndcg@10", m[key]), logged)

    def snapshot(self) -> dict[str, Any]:
        return self.model.trainable_state()

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_trainable_state(snapshot)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.trainable_state(), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_trainable_state(state["model"])
        self.rng.bit_generator.state = state["rng"]

    def finish(self) -> None:
        self.model.set_training(False)
