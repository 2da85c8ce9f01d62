"""Resumable training in the shared loop: a run killed after a save and started again ends exactly where an
uninterrupted run at the same seed ends, for one model of each family."""

import io

import numpy as np
import pytest
import torch

from seqbench.context import RunContext, seed_everything
from seqbench.models import create_model
from seqbench.models.store import FileCheckpointer
from seqbench.train.loop import Check, Schedule, Stage, Step, Task, train

CFG = {"max_epochs": "6", "eval_every": "1", "d": "16", "maxlen": "16", "patience": "10"}


class Crash(Exception):
    pass


class CrashAfter(FileCheckpointer):
    """Saves like the file checkpointer, then dies after ``n`` saves (a killed process, simulated)."""

    def __init__(self, path, n):
        super().__init__(path)
        self.n = n

    def save(self, state):
        super().save(state)
        self.n -= 1
        if self.n == 0:
            raise Crash


def _fit(tiny, model_name, checkpoint):
    seed_everything(0)
    model = create_model(model_name, tiny.n_items, CFG)
    fit = model.fit(tiny, tiny.histories("train"), RunContext(seed=0, checkpoint=checkpoint))
    return fit, model.score(tiny.histories("test"), tiny.candidates["test"])


@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec"])
def test_resume_after_crash_equals_uninterrupted(tiny, tmp_path, model_name):
    ref_fit, ref_scores = _fit(tiny, model_name, None)
    path = tmp_path / "state.pt"
    with pytest.raises(Crash):
        _fit(tiny, model_name, CrashAfter(path, 3))
    assert FileCheckpointer(path).load()["loop"]["epoch"] == 3
    # the restart begins from a fresh seed-0 RNG state, not the crashed run's: the checkpoint must restore it
    fit, scores = _fit(tiny, model_name, FileCheckpointer(path))
    assert fit.curve == ref_fit.curve and fit.best_epoch == ref_fit.best_epoch
    assert fit.best_valid == ref_fit.best_valid and fit.epochs_run == ref_fit.epochs_run
    np.testing.assert_array_equal(scores, ref_scores)


class Recorder:
    """Saves like a file checkpointer (serialised bytes, read back with ``weights_only=True``, so every family's
    state is checked to load safely) and keeps every saved state; a fresh fit resumes from a chosen one, which
    is what a process killed right after that save and started again sees."""

    def __init__(self, every_s: float = 0.0, resume_from: bytes | None = None):
        self.every_s, self.resume_from = every_s, resume_from
        self.states: list[bytes] = []

    def load(self):
        return None if self.resume_from is None else torch.load(io.BytesIO(self.resume_from), weights_only=True)

    def save(self, state) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self.states.append(buf.getvalue())

    def clear(self) -> None:
        pass


def _state(raw: bytes) -> dict:
    return torch.load(io.BytesIO(raw), weights_only=True)


# one model per family, tiny; every_s ~0 saves after every optimizer step, so mid-epoch states exist too
FAMILIES = {
    "sasrec": ({"max_epochs": 4, "eval_every": 2, "d": 16, "maxlen": 16, "batch_size": 64}, None),
    "recformer": ({"encoder": "tiny-random", "maxlen": 6, "max_item_tokens": 10, "n_layers": 1, "max_epochs": 2,
                   "stage2_epochs": 1, "lr": 1e-3, "warmup_steps": 2, "batch_size": 64}, None),
    "tallrec": ({"llm": "tiny-random", "dtype": "fp32", "max_epochs": 2, "batch_size": 16, "val_every_frac": 0.5,
                 "max_valid_users": 3}, 48),
    "ctrl": ({"variant": "contrastive", "text_encoder": "tiny-random", "align_epochs": 2, "align_batch_size": 64,
              "max_epochs": 2, "eval_every": 1, "d": 16, "maxlen": 16, "batch_size": 64}, None),
}


def _family_fit(tiny, name: str, ckpt):
    settings, n_users = FAMILIES[name]
    train = tiny.histories("train") if n_users is None else tiny.histories("train").take(np.arange(n_users))
    seed_everything(0)
    model = create_model(name, tiny.n_items, settings)
    fit = model.fit(tiny, train, RunContext(seed=0, checkpoint=ckpt))
    hist, cands = tiny.histories("test").take(np.arange(16)), tiny.candidates["test"][:16]
    return fit, model.score(hist, cands)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_resumed_family_equals_uninterrupted(tiny, tmp_path, monkeypatch, name):
    """For one model of each family (CF, LM-based RECFORMER and CTRL's aligner + fine-tuning, LLM4Rec): a run
    resumed from a saved state, mid-epoch (a time-based save) or at a validation check, in each phase, ends with
    the curve, best epoch and scores of the uninterrupted run; the uninterrupted run equals one without
    checkpoints."""
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    plain_fit, plain_scores = _family_fit(tiny, name, None)
    rec = Recorder(every_s=1e-9)
    ref_fit, ref_scores = _family_fit(tiny, name, rec)
    assert ref_fit.curve == plain_fit.curve
    np.testing.assert_array_equal(ref_scores, plain_scores)
    states = [_state(raw) for raw in rec.states]
    phases = {s["phase"] for s in states}
    assert phases == ({"align", "fit"} if name == "ctrl" else {"fit"})
    mid = [k for k, s in enumerate(states) if s["loop"]["next"] == 1]  # one step into an epoch
    at_check = [k for k, s in enumerate(states) if s["loop"]["check"] > 0 and s["phase"] == "fit"]
    points = {mid[0], mid[-1], at_check[0]}
    if name == "ctrl":  # inside the aligner, and the fine-tuning's first save (the aligner is skipped then)
        points |= {next(k for k, s in enumerate(states) if s["phase"] == "fit")}
    for k in sorted(points):
        again = Recorder(every_s=1e-9, resume_from=rec.states[k])
        fit, scores = _family_fit(tiny, name, again)
        assert len(again.states) == len(rec.states) - k - 1  # it went on from state k, not from the start
        assert fit.curve == ref_fit.curve and fit.best_epoch == ref_fit.best_epoch, (name, k)
        assert fit.best_valid == ref_fit.best_valid and fit.epochs_run == ref_fit.epochs_run
        np.testing.assert_array_equal(scores, ref_scores)


class Toy(Task):
    """One weight; validation reads the scores from a list, so a test chooses when it improves."""

    def __init__(self, scores: list[float]):
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.optimizer = torch.optim.SGD([self.w], lr=0.1)
        self.scores, self.stages_begun = list(scores), []

    def begin_epoch(self, stage, epoch):
        return {}

    def step(self, plan, i):
        return Step((self.w - 1) ** 2)

    def validate(self):
        v = self.scores.pop(0)
        return Check(v, v, {"x": v})

    def snapshot(self):
        return self.w.detach().clone()

    def restore(self, snapshot):
        with torch.no_grad():
            self.w.copy_(snapshot)

    def begin_stage(self, stage, best):
        self.stages_begun.append((stage, float(best)))


def test_step_cadence_checks_every_n_steps_at_epoch_end_and_at_max_steps():
    logged = []
    ctx = RunContext(log_metric=lambda n, v, s: logged.append((n, s)))
    fit = train(Toy([0.1] * 10), Schedule([Stage(3, 10)], 5, eval_every=2, unit="step", max_steps=12), ctx, "toy")
    assert [s for n, s in logged if n == "valid_x"] == [2, 4, 5, 7, 9, 10, 12]  # max_steps 12 ends epoch 3
    assert [row[0] for row in fit.curve] == list(range(1, 8)) and fit.epochs_run == 3
    assert [s for n, s in logged if n == "train_loss"] == list(range(1, 13))


def test_stages_carry_the_best_and_restart_patience():
    """Stage 1 stops after 2 checks without improvement; stage 2 starts from its best state, numbers its epochs
    after stage 1's maximum and must beat stage 1's best."""
    task = Toy([0.5, 0.4, 0.3, 0.45, 0.6, 0.55])
    fit = train(task, Schedule([Stage(4, 2), Stage(3, 2)], 2), RunContext(), "toy")
    assert [stage for stage, _ in task.stages_begun] == [1]
    assert [row[0] for row in fit.curve] == [1, 2, 3, 5, 6, 7]
    assert fit.best_epoch == 6 and fit.best_valid == 0.6 and fit.epochs_run == 6
