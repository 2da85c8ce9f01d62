"""Training progress: n/max, best, patience left, ETA; plain log lines when the console is not a terminal."""

import io

import torch
from rich.console import Console
from rich.progress import Progress

from seqbench.context import RunContext
from seqbench.progress import TrainProgress, fmt_seconds
from seqbench.train.loop import Check, Schedule, Stage, Step, Task, train


def _plain_progress() -> tuple[Progress, io.StringIO]:
    buf = io.StringIO()
    return Progress(console=Console(file=buf, force_terminal=False, width=300)), buf


def test_text_has_position_best_patience_and_both_etas():
    bar = TrainProgress(None, "m", 200, "epoch", patience=5, check_every=2)
    bar.start -= 10.0  # 10 s elapsed after 10 epochs: 1 s per epoch
    text = bar.text(10, loss=1.5, best=0.4, best_at=8, patience_left=4)
    assert "epoch 10/200" in text and "best valid ndcg@10 0.4000 at epoch 8" in text
    assert "patience 4/5 checks left" in text
    # no improvement in the next 4 checks (every 2 epochs) stops at epoch 18: 8 s; the maximum is 190 s away
    assert "ETA 0:08 if it stops early at epoch 18, at most 3:10" in text
    assert bar.stop_by(10, None) == 200 and bar.stop_by(199, 5) == 200
    assert fmt_seconds(3725) == "1:02:05"


class _ConstantTask(Task):
    """A linear toy whose validation NDCG@10 never changes."""

    def __init__(self):
        self.net = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=0.1)

    def begin_epoch(self, stage, epoch):
        return {}

    def step(self, plan, i):
        return Step(self.net(torch.ones(4, 3)).pow(2).mean())

    def validate(self):
        return Check(1.0, 1.0, {"ndcg@10": 1.0})

    def snapshot(self):
        return {k: v.clone() for k, v in self.net.state_dict().items()}

    def restore(self, snapshot):
        self.net.load_state_dict(snapshot)


def test_plain_lines_without_a_terminal(monkeypatch):
    monkeypatch.setenv("SEQBENCH_PROGRESS_EVERY", "0")
    progress, buf = _plain_progress()
    with progress:
        train(_ConstantTask(), Schedule([Stage(6, 2)], 2), RunContext(seed=0, progress=progress), "toy")
    lines = [line for line in buf.getvalue().splitlines() if "train toy" in line]
    # constant validation: best at epoch 1, then 2 checks without improvement stop training at epoch 3
    assert [line.split("train toy: ")[1].split(",")[0] for line in lines[:3]] == [
        "epoch 1/6", "epoch 2/6", "epoch 3/6"]
    assert "patience 1/2 checks left" in lines[1] and "s/epoch" in lines[0] and "ETA" in lines[0]
    assert "finished after 3 epochs" in lines[-1] and "early stop" in lines[-1]
    assert all(line[:8].count(":") == 2 for line in lines)  # each line starts with a HH:MM:SS stamp


def test_plain_lines_are_rate_limited(monkeypatch):
    monkeypatch.setenv("SEQBENCH_PROGRESS_EVERY", "3600")
    progress, buf = _plain_progress()
    bar = TrainProgress(progress, "m", 100, "step")
    for step in range(1, 51):
        bar.update(step, loss=1.0)
    bar.close(50, "max_epochs reached")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and "step 1/100" in lines[0] and "finished after 50 steps" in lines[1]


def test_terminal_bar_runs_toward_the_early_stop():
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    bar = TrainProgress(progress, "m", 200, "epoch", patience=3, check_every=2)
    bar.update(10, loss=1.0, best=0.5, best_at=10, patience_left=3)
    task = progress.tasks[0]
    assert task.completed == 10 and task.total == 16 and "epoch 10/200" in task.description
    bar.close(16, "early stop")
    assert progress.tasks[0].total == 16 and "finished after 16 epochs" in progress.tasks[0].description


def test_a_resumed_run_paces_on_its_own_units_and_reports_the_whole_time(monkeypatch):
    monkeypatch.setenv("SEQBENCH_PROGRESS_EVERY", "0")
    progress, buf = _plain_progress()
    bar = TrainProgress(progress, "m", 200, "step")
    bar.resume(100, elapsed_s=3600.0)  # killed at step 100 after an hour
    bar.start -= 10.0  # this process: 10 steps in 10 s
    assert "1.00 s/step" in bar.text(110) and "ETA 1:30" in bar.text(110)
    bar.close(200, "max_steps reached")
    assert "finished after 200 steps in 1:00:10" in buf.getvalue()
