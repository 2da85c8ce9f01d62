"""The shared LLM-recommender core: resumable training through the ``Checkpointer`` protocol."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from seqbench.context import Checkpointer, RunContext
from seqbench.models import create_model
from seqbench.models.llm.data import training_examples

pytestmark = pytest.mark.usefixtures("one_thread")


class MemoryCheckpointer:
    """Keeps the state as bytes in memory, written and read the way a file-backed checkpointer would
    (``torch.save`` / ``torch.load(weights_only=True)``), so the state is checked to be safely loadable."""

    def __init__(self, every_s: float = 0.0):
        self.every_s = every_s
        self.state: bytes | None = None
        self.saves = 0
        self.cleared = False

    def load(self) -> dict[str, Any] | None:
        return None if self.state is None else torch.load(io.BytesIO(self.state), weights_only=True)

    def save(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self.state = buf.getvalue()
        self.saves += 1

    def clear(self) -> None:
        self.state, self.cleared = None, True


class Interrupted(Exception):
    pass


def test_resumed_fit_equals_uninterrupted(tiny, tmp_path, monkeypatch):
    """CoLLM (LoRA with dropout, teacher, [UserRep]) on 48 users, 6 steps, checks at steps 2, 4, 6: killed after
    step 5, resumed from the check at step 4."""
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    settings = {"llm": "tiny-random", "dtype": "fp32", "teacher_epochs": 1, "max_epochs": 1, "batch_size": 8,
                "val_every_frac": 0.34, "max_valid_users": 3}
    train = tiny.histories("train").take(np.arange(48))
    assert isinstance(MemoryCheckpointer(), Checkpointer)

    def fit(ctx: RunContext):
        torch.manual_seed(0)
        model = create_model("collm", tiny.n_items, settings)
        return model, model.fit(tiny, train, ctx)

    full, full_report = fit(RunContext(seed=0))

    def die_at_step_5(name: str, value: float, step: int) -> None:
        if name == "train_loss" and step == 5:
            raise Interrupted

    ckpt = MemoryCheckpointer()
    with pytest.raises(Interrupted):
        fit(RunContext(seed=0, log_metric=die_at_step_5, checkpoint=ckpt))
    assert ckpt.saves == 2 and ckpt.load()["loop"]["next"] == 4 and not ckpt.cleared
    resumed, report = fit(RunContext(seed=0, checkpoint=ckpt))
    assert ckpt.cleared and ckpt.state is None
    a, b = full.trainable_state(), resumed.trainable_state()
    for part in ("heads", "lora"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert report.curve == full_report.curve and report.best_epoch == full_report.best_epoch
    hist, cands = tiny.histories("test").take(np.arange(4)), tiny.candidates["test"][:4]
    np.testing.assert_array_equal(full.score(hist, cands), resumed.score(hist, cands))


def test_time_based_saves_between_checks(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    model = create_model("tallrec", tiny.n_items, {"llm": "tiny-random", "dtype": "fp32", "max_epochs": 1,
                                                   "batch_size": 16, "val_every_frac": 1.0, "max_valid_users": 2})
    ckpt = MemoryCheckpointer(every_s=1e-9)  # every step is "long enough"
    train = tiny.histories("train").take(np.arange(48))
    model.fit(tiny, train, RunContext(seed=0, checkpoint=ckpt))
    steps = -(-len(training_examples(train, autoregressive=False)[1]) // 16)
    assert ckpt.saves == steps and ckpt.cleared  # one save per step: time-based, then the epoch-end check


def test_teacher_training_never_writes_the_students_checkpoint(tiny, tmp_path, monkeypatch):
    """The SASRec teacher trains inside the student's fit; its CF loop must not save into (or resume from) the
    student's checkpoint, whose file holds the LLM loop's state."""
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))  # empty cache: the teacher really trains here
    saved: list[set[str]] = []

    class Recording(MemoryCheckpointer):
        def save(self, state: dict[str, Any]) -> None:
            saved.append(set(state))
            super().save(state)

    model = create_model("llara", tiny.n_items, {"llm": "tiny-random", "dtype": "fp32", "teacher_epochs": 4,
                                                 "max_epochs": 1, "batch_size": 16, "val_every_frac": 1.0,
                                                 "max_valid_users": 2})
    model.fit(tiny, tiny.histories("train").take(np.arange(48)), RunContext(seed=0, checkpoint=Recording()))
    assert saved and all("loop" in keys for keys in saved)


def test_max_steps_stops_mid_epoch_with_a_check(tiny, tmp_path, monkeypatch):
    """A step budget ends training inside an epoch and validates at the last step, off the regular schedule."""
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    model = create_model("tallrec", tiny.n_items, {"llm": "tiny-random", "dtype": "fp32", "max_epochs": 2,
                                                   "batch_size": 8, "val_every_frac": 0.5, "max_valid_users": 2,
                                                   "max_steps": 5})
    steps_seen: list[int] = []

    def log(name: str, value: float, step: int) -> None:
        if name.startswith("valid_") and name.endswith("ndcg@10"):
            steps_seen.append(step)
        elif name == "train_loss":
            steps_seen.append(-step)

    report = model.fit(tiny, tiny.histories("train").take(np.arange(48)), RunContext(seed=0, log_metric=log))
    assert [-s for s in steps_seen if s < 0] == [1, 2, 3, 4, 5]  # 6 steps per epoch, 12 in all: stopped at 5
    assert [s for s in steps_seen if s > 0] == [3, 5]  # the regular check at 3, the budget's at 5
    assert report.epochs_run == 1 and len(report.curve) == 2
