"""The one training loop of every family: epochs of optimizer steps, validation checks, early stopping with the
best state restored, checkpoints and resume, curves, progress and the :class:`FitReport`.

A family plugs in a :class:`Task` (its step, validation and state) and a :class:`Schedule` (how long, how often
to validate). Two cadences cover all of them:

* ``unit="epoch"`` (CF models, RECFORMER, CTRL's aligner, A-LLMRec's stage 1): checks every ``eval_every``
  epochs of a stage and at its last epoch; one curve row per epoch; the epoch's mean loss is logged per epoch.
* ``unit="step"`` (LLM recommenders): checks every ``eval_every`` steps, at each epoch's end and when
  ``max_steps`` is spent; one curve row per check; each step's loss is logged at its global step.

Stages run one after another with their own epoch budget and patience (RECFORMER's stage 2 starts from the
best stage-1 state; :meth:`Task.begin_stage`); the best value is carried over, so a later stage must beat it.

Resuming: the state (the task's tensors and RNGs, optimizer, scheduler, global RNGs, the position in the epoch
and the epoch's plan, best-so-far and curve) is saved at every check, and whenever ``Checkpointer.every_s``
seconds have passed since the last save; a resumed run continues bit-identically. Each loop tags its state
with a ``phase``, so two loops of one fit (CTRL's aligner, then SASRec) share the run's checkpoint slot.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seqbench.context import Checkpointer, RunContext
from seqbench.progress import TrainProgress


@dataclass
class FitReport:
    """What training did; ``curve`` holds (epoch, train_loss, validation value or None) rows, the validation
    value being ``valid_metric`` (NDCG@10; HR@1 for a model trained for title generation). Step-cadence loops
    (LLMs) write one row per validation check, numbered by check."""

    best_epoch: int
    best_valid: float
    epochs_run: int
    seconds: float
    seconds_to_best: float
    curve: list[tuple[int, float, float | None]] = field(default_factory=list)
    valid_metric: str = "ndcg@10"


@dataclass
class Stage:
    epochs: int  # most epochs of this stage
    patience: int  # validation checks without improvement that end the stage


@dataclass
class Check:
    """One validation: ``score`` is maximised by model selection, ``report`` goes to the curve and the
    FitReport, ``logged`` to the run's metrics as ``valid_<name>``."""

    score: float
    report: float
    logged: dict[str, float]


@dataclass
class Step:
    """One batch's loss; ``weight`` weighs it in the epoch's mean loss, ``parts`` are logged per step."""

    loss: torch.Tensor
    weight: float = 1.0
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class Schedule:
    stages: list[Stage]
    steps_per_epoch: int
    eval_every: int = 1  # epochs (unit "epoch") or steps (unit "step") between checks
    unit: str = "epoch"  # "epoch" or "step": the cadence above, the progress unit and the metrics' x axis
    max_steps: int | None = None  # stop (with a check) once this many optimizer steps ran
    lr_decay: str = "none"  # scheduler.step() after every "step", "check" or "epoch"; "none": never
    ties_improve: bool = False  # a check equal to the best counts as an improvement (``>=``)
    validates: bool = True  # False: no checks (no early stopping); the state is saved at each epoch end
    loss_metric: str = "train_loss"
    progress_metric: str = "valid ndcg@10"
    valid_metric: str = "ndcg@10"  # FitReport.valid_metric
    phase: str = "fit"  # the checkpoint's tag; a state of another phase is not resumed
    clear: bool = True  # clear the checkpoint after a finished run (False: a later phase overwrites it)


class Task:
    """A family's side of the loop. ``optimizer`` (and ``scheduler``) are stepped by the loop."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def begin_epoch(self, stage: int, epoch: int) -> dict[str, Any]:
        """The epoch's plan (a dict of tensors, e.g. the seeded order), saved with a mid-epoch checkpoint."""
        raise NotImplementedError

    def step(self, plan: dict[str, Any], i: int) -> Step | None:
        """The loss of batch ``i`` of the epoch (None: skip the batch)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """After each optimizer step (caches of derived weights)."""

    def end_epoch(self, stage: int, epoch: int, ctx: RunContext) -> None:
        """After the epoch's last step and its loss metric, before its check."""

    def validate(self) -> Check:
        raise NotImplementedError

    def snapshot(self) -> Any:
        """A detached copy of the trained weights (the best state)."""
        raise NotImplementedError

    def restore(self, snapshot: Any) -> None:
        raise NotImplementedError

    def begin_stage(self, stage: int, best: Any) -> None:
        """A stage after the first starts (not on resume inside it); ``best`` is the best snapshot so far."""

    def state(self) -> dict[str, Any]:
        """Everything besides optimizer, scheduler and global RNGs that a resumed run needs: weights, own RNGs."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After training, the best state restored: eval mode and the like."""


def train(task: Task, sched: Schedule, ctx: RunContext, label: str) -> FitReport:
    """Run ``task`` to the end of its schedule (or its early stop) and restore the best state."""
    return _Loop(task, sched, ctx, label).run()


class _Loop:
    def __init__(self, task: Task, sched: Schedule, ctx: RunContext, label: str):
        self.task, self.sched, self.ctx, self.label = task, sched, ctx, label
        self.steps = sched.steps_per_epoch
        self.firsts = [1 + sum(st.epochs for st in sched.stages[:k]) for k in range(len(sched.stages))]
        n_epochs = sum(st.epochs for st in sched.stages)
        self.full = n_epochs * self.steps
        self.cap = self.full if sched.max_steps is None else min(self.full, sched.max_steps)
        self.units = self.cap if sched.unit == "step" else n_epochs
        self.units_full = self.full if sched.unit == "step" else n_epochs
        # s: the loop's whole position; ``next`` is the step of ``epoch`` to run next
        self.s: dict[str, Any] = {
            "stage": 0, "epoch": 0, "next": 0, "plan": None, "total": 0.0, "weight": 0.0, "epochs_run": 0,
            "check": 0, "best": -math.inf, "best_report": 0.0, "best_epoch": 0, "best_at": 0, "bad": 0,
            "t_best": 0.0, "best_state": None, "curve": [], "stop": False, "early": False, "capped": False,
            "done": 0, "elapsed": 0.0}
        self.start = time.perf_counter()
        self.last_save = time.monotonic()

    # -- checkpoints --------------------------------------------------------------------------------
    def _resume(self) -> bool:
        ckpt = self.ctx.checkpoint
        saved = ckpt.load() if ckpt is not None else None
        if saved is None or saved.get("phase") != self.sched.phase:
            return False
        self.s = copy.deepcopy(saved["loop"])
        self.task.load_state(saved["task"])
        self.task.optimizer.load_state_dict(saved["opt"])
        if self.task.scheduler is not None:
            self.task.scheduler.load_state_dict(saved["sched"])
        restore_rng_states(saved["rng"])
        self.start -= self.s["elapsed"]
        return True

    def _save(self) -> None:
        ckpt = self.ctx.checkpoint
        if ckpt is None:
            return
        self.s["elapsed"] = time.perf_counter() - self.start
        sched = self.task.scheduler
        ckpt.save({"phase": self.sched.phase, "loop": copy.deepcopy(self.s), "task": self.task.state(),
                   "opt": self.task.optimizer.state_dict(), "sched": sched.state_dict() if sched else None,
                   "rng": rng_states()})
        self.last_save = time.monotonic()

    def _save_due(self) -> bool:
        ckpt = self.ctx.checkpoint
        return ckpt is not None and ckpt.every_s > 0 and time.monotonic() - self.last_save >= ckpt.every_s

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> FitReport:
        sched = self.sched
        resumed = self._resume()
        s = self.s
        bar = TrainProgress(self.ctx.progress, self.label, self.units, sched.unit, None, sched.eval_every,
                            sched.progress_metric)
        if resumed:
            bar.resume(s["done"], s["elapsed"])
        while s["stage"] < len(sched.stages) and not s["capped"]:
            k = s["stage"]
            stage = sched.stages[k]
            first, last = self.firsts[k], self.firsts[k] + stage.epochs - 1
            bar.patience = stage.patience if sched.validates else None  # "patience left" counts this stage's
            if s["epoch"] < first and stage.epochs > 0:  # the stage starts (a resumed run may be inside it)
                if k > 0:
                    self.task.begin_stage(k, s["best_state"])
                s.update(epoch=first, next=0, plan=None, bad=0, stop=False, early=False)
            while first <= s["epoch"] <= last and not s["stop"]:
                self._epoch(k, first, last, stage, bar)
                if s["stop"]:
                    break
                if sched.lr_decay == "epoch" and self.task.scheduler is not None:
                    self.task.scheduler.step()
                s["epoch"], s["plan"] = s["epoch"] + 1, None
            s.update(stage=k + 1, stop=False)
        bar.close(s["done"], "max_steps reached" if s["capped"] and s["done"] < self.units_full else
                  "early stop: no improvement" if s["early"] else "max_epochs reached")
        if s["best_state"] is not None:
            self.task.restore(s["best_state"])
        self.task.finish()
        if sched.clear and self.ctx.checkpoint is not None:
            self.ctx.checkpoint.clear()
        return FitReport(best_epoch=s["best_epoch"], best_valid=s["best_report"], epochs_run=s["epochs_run"],
                         seconds=time.perf_counter() - self.start, seconds_to_best=s["t_best"],
                         curve=[tuple(row) for row in s["curve"]], valid_metric=sched.valid_metric)

    def _epoch(self, k: int, first: int, last: int, stage: Stage, bar: TrainProgress) -> None:
        sched, s, task, ctx = self.sched, self.s, self.task, self.ctx
        epoch, by_step = s["epoch"], sched.unit == "step"
        if s["plan"] is None:
            s.update(plan=task.begin_epoch(k, epoch), next=0, total=0.0, weight=0.0,
                     epochs_run=s["epochs_run"] + 1)
        while s["next"] < self.steps:
            i = s["next"]
            out = task.step(s["plan"], i)
            if out is not None:
                task.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                task.optimizer.step()
                task.after_step()
                if sched.lr_decay == "step" and task.scheduler is not None:
                    task.scheduler.step()
                s["total"] += float(out.loss.detach()) * out.weight
                s["weight"] += out.weight
            s["next"] = i + 1
            gstep = (epoch - 1) * self.steps + i + 1
            end = i == self.steps - 1
            s["capped"] = gstep >= self.cap
            mean = s["total"] / s["weight"] if s["weight"] else 0.0
            if by_step and out is not None:
                ctx.metric(sched.loss_metric, float(out.loss.detach()), gstep)
                for part, v in out.parts.items():  # retrieval CE vs chance ln(1 + n_negatives) shows learning
                    ctx.metric(f"train_{part}", v, gstep)
            if end and not by_step:
                ctx.metric(sched.loss_metric, mean, epoch)
            if end:
                task.end_epoch(k, epoch, ctx)
            if by_step:
                due = (i + 1) % sched.eval_every == 0 or end or s["capped"]
            else:
                due = end and ((epoch - first + 1) % sched.eval_every == 0 or epoch == last)
            due = due and sched.validates
            report = None
            if due:
                report = self._check(gstep if by_step else epoch, epoch, mean)
                if sched.lr_decay == "check" and task.scheduler is not None:
                    task.scheduler.step()
                s["early"] = s["bad"] >= stage.patience
            s["stop"] = s["early"] or s["capped"]
            if end and not by_step:
                s["curve"].append((epoch, mean, report))
            if by_step or end:
                s["done"] = gstep if by_step else epoch
            if due or (end and not sched.validates) or s["stop"] or self._save_due():
                self._save()
            if by_step or end:
                bar.update(s["done"], mean, s["best"] if sched.validates else None, s["best_at"],
                           stage.patience - s["bad"] if sched.validates else None)
            if s["stop"]:
                return

    def _check(self, at: int, epoch: int, mean: float) -> float:
        """One validation check: log it, keep the best state; returns the reported value."""
        s, task = self.s, self.task
        s["check"] += 1
        v = task.validate()
        for name, value in v.logged.items():
            self.ctx.metric(f"valid_{name}", value, at)
        if self.sched.unit == "step":
            s["curve"].append((s["check"], mean, v.report))
        if v.score > s["best"] or (self.sched.ties_improve and v.score == s["best"]):
            s.update(best=v.score, best_report=v.report, best_epoch=epoch, best_at=at, bad=0,
                     best_state=task.snapshot(), t_best=time.perf_counter() - self.start)
        else:
            s["bad"] += 1
        return v.report


def saved_phase(ckpt: Checkpointer | None) -> str | None:
    """The phase whose state the checkpoint holds (None: none saved), so a fit can skip a finished phase."""
    saved = ckpt.load() if ckpt is not None else None
    return None if saved is None else saved.get("phase")


def saved_checks(ckpt: Checkpointer | None) -> list[tuple[int, float]]:
    """(epoch or check, reported value) of every validation check the saved state has done (empty: none saved),
    so a caller that reports checks as they happen (a tune trial) can first repeat the ones a resumed fit skips."""
    saved = ckpt.load() if ckpt is not None else None
    rows = [] if saved is None else saved["loop"]["curve"]
    return [(int(at), float(report)) for at, _mean, report in rows if report is not None]


def rng_states() -> dict[str, Any]:
    """Global RNG states (dropout draws from torch's default generator), so a resumed run is bit-identical;
    NumPy's key array as a tensor, so the state loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached),
            "python": random.getstate()}


def restore_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys), pos, has_gauss, cached))
    random.setstate(state["python"])
