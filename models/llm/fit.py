"""The training schedule of every LLM recommender (docs/MODELS.md §2 "Shared recipe", §6 "Training recipe"),
resumable through ``RunContext.checkpoint``.

Choices where the LLM-SRec code and paper disagree (§10.8), all options of :class:`LLMRecConfig`:
* patience 5 validation checks (the code; the paper says 10): with ~11 checks per epoch, 10 would rarely stop
  within the 10-epoch cap.
* lr decay 0.95 per validation check, epoch-end check included (``lr_decay="check"``, the code's behaviour,
  which produced the paper's numbers); ``"epoch"`` and ``"none"`` are options.
* validation metric HR@10 (the code) on the *persisted* validation candidates (never re-sampled, §7), on all
  users or a seeded subset (``max_valid_users``); an epoch-end check is skipped when the last step already
  ran one (the code's stale-value pitfall cannot arise). Ties count as improvements (``>=``, the code).
  The best checkpoint is restored at the end; the test set is never looked at during training.

Resuming: the state (trained tensors, optimizer, scheduler, NumPy and torch RNGs, position in the epoch, the
epoch's order, best-so-far and curve) is saved at every validation check and whenever ``every_s`` seconds
passed since the last save; a resumed fit continues bit-identically (tests check the final weights).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.progress import TrainProgress

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
    cfg, name = model.config, model.name
    start = time.perf_counter()
    ex_hist, ex_target = training_examples(train, cfg.autoregressive)
    ex_hist = ex_hist.tail(TEACHER_MAXLEN)
    if len(ex_target) == 0:
        raise SeqbenchError(f"{name}: no user has two or more train items to build a training example")
    o_all = model.teacher_user(ex_hist) if model.teacher is not None else None  # frozen: once per example
    v_hist, v_cands = validation_set(data, cfg.max_valid_users, ctx.seed,
                                     "valid_title" if model.generation else "valid")

    opt = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cfg.lr_decay_factor ** k)
    rng = np.random.default_rng(ctx.seed)
    n = len(ex_target)
    steps = -(-n // cfg.batch_size)
    every = max(1, int(steps * cfg.val_every_frac))
    # s: the loop's whole position; ``next`` = (epoch, step) of the next optimizer step
    s: dict[str, Any] = {"epoch": 1, "next": 0, "order": None, "total": 0.0, "check": 0, "best": -1.0,
                         "best_ndcg": 0.0, "best_epoch": 0, "best_step": 0, "bad": 0, "t_best": 0.0, "best_state": None,
                         "curve": [], "stop": False, "elapsed": 0.0}
    ckpt = ctx.checkpoint
    saved = ckpt.load() if ckpt is not None else None
    if saved is not None:
        s = copy.deepcopy(saved["loop"])
        model.load_trainable_state(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        start -= s["elapsed"]
    last_save = time.monotonic()

    def save() -> None:
        nonlocal last_save
        if ckpt is None:
            return
        s["elapsed"] = time.perf_counter() - start
        ckpt.save({"loop": copy.deepcopy(s), "model": model.trainable_state(), "opt": opt.state_dict(),
                   "sched": sched.state_dict(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()})
        last_save = time.monotonic()

    total = cfg.max_epochs * steps if cfg.max_steps is None else min(cfg.max_epochs * steps, cfg.max_steps)
    bar = TrainProgress(ctx.progress, name, total, "step", cfg.patience, every,
                        f"valid {model.selection_metric}")
    if saved is not None:
        bar.resume((s["epoch"] - 1) * steps + s["next"], s["elapsed"])
    while s["epoch"] <= cfg.max_epochs and not s["stop"]:
        epoch = s["epoch"]
        if s["order"] is None:  # a tensor, so the state loads with torch.load(weights_only=True)
            s["order"], s["next"], s["total"] = torch.from_numpy(rng.permutation(n)), 0, 0.0
        order = s["order"].numpy()
        while s["next"] < steps:
            i = s["next"]
            rows = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            model.set_training(True)
            o_u = o_all[torch.from_numpy(rows).to(model.device)] if o_all is not None else None
            loss, parts = model.batch_loss(ex_hist.take(rows), ex_target[rows], o_u, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.weights_updated()
            s["total"] += float(loss.detach())
            s["next"] = i + 1
            gstep = (epoch - 1) * steps + i + 1
            ctx.metric("train_loss", float(loss.detach()), gstep)
            for part, value in parts.items():  # retrieval CE vs chance ln(1 + n_negatives) shows learning
                ctx.metric(f"train_{part}", value, gstep)
            bar.update(gstep, s["total"] / (i + 1), s["best"], s["best_step"], cfg.patience - s["bad"])
            capped = gstep >= total  # max_steps spent (or the last step of the last epoch)
            if (i + 1) % every == 0 or i == steps - 1 or capped:
                _check(model, s, v_hist, v_cands, ctx, gstep, epoch, i + 1, start)
                if cfg.lr_decay == "check":
                    sched.step()
                s["stop"] = s["bad"] >= cfg.patience or capped
                save()
                if s["stop"]:
                    break
            elif ckpt is not None and ckpt.every_s > 0 and time.monotonic() - last_save >= ckpt.every_s:
                save()
        if s["stop"]:
            break
        if cfg.lr_decay == "epoch":
            sched.step()
        s["epoch"], s["order"] = epoch + 1, None
    epochs_run = min(s["epoch"], cfg.max_epochs)
    done = (s["epoch"] - 1) * steps + s["next"] if s["stop"] else min(s["epoch"] - 1, cfg.max_epochs) * steps
    bar.close(done, "max_steps reached" if total <= done < cfg.max_epochs * steps else
              "early stop: no improvement" if s["stop"] else "max_epochs reached")
    if s["best_state"] is not None:
        model.load_trainable_state(s["best_state"])
    model.set_training(False)
    if ckpt is not None:
        ckpt.clear()
    return FitReport(best_epoch=s["best_epoch"], best_valid=s["best_ndcg"], epochs_run=epochs_run,
                     seconds=time.perf_counter() - start, seconds_to_best=s["t_best"], curve=s["curve"],
                     valid_metric="hr@1" if model.generation else "ndcg@10")


def _check(model: Trainable, s: dict[str, Any], v_hist: Histories, v_cands: np.ndarray, ctx: RunContext,
           gstep: int, epoch: int, count: int, start: float) -> None:
    """One validation check: log, keep the best state (ties count as improvements, the code's ``>=``).
    ``best_ndcg`` (FitReport.best_valid) is validation NDCG@10, or HR@1 in the generation task."""
    key = model.selection_metric
    s["check"] += 1
    m = model.validate(v_hist, v_cands)
    report = m.get("ndcg@10", m[key])
    for name in dict.fromkeys((key, "ndcg@10", "invalid")):
        if name in m:
            ctx.metric(f"valid_{name}", m[name], gstep)
    s["curve"].append((s["check"], s["total"] / count, report))
    if m[key] >= s["best"]:
        s.update(best=m[key], best_ndcg=report, best_epoch=epoch, best_step=gstep, bad=0,
                 best_state=model.trainable_state(), t_best=time.perf_counter() - start)
    else:
        s["bad"] += 1
