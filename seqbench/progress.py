"""Honest training progress: position n/max, best so far, patience left and an ETA from the measured pace.

Training loops report here instead of driving rich directly. With early stopping, the number that matters is
not ``max_epochs`` but the point where training stops if nothing improves any more ("stop-by"); the bar runs
toward that point and the text gives both ETAs: to the early stop and (an upper bound) to the maximum. When
the console is not a terminal (a log file, CI, nohup), rich draws nothing live, so plain timestamped lines
are written instead: the first report, then at most one every ``SEQBENCH_PROGRESS_EVERY`` seconds (default
30), and the final one.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from rich.progress import Progress

DEFAULT_EVERY_S = 30.0


def log_every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SEQBENCH_PROGRESS_EVERY", DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class TrainProgress:
    """One training run's progress in ``unit`` s (epochs for CF models, optimizer steps for LLMs).

    ``patience`` is the number of validation checks without improvement that stops training and
    ``check_every`` the units between checks; both None: no early stopping (stop-by = total).
    """

    def __init__(self, progress: Progress | None, label: str, total: int, unit: str = "epoch",
                 patience: int | None = None, check_every: int = 1, metric: str = "valid ndcg@10"):
        self.progress, self.label, self.total, self.unit = progress, label, max(1, total), unit
        self.patience, self.check_every, self.metric = patience, max(1, check_every), metric
        self.start = time.perf_counter()
        self.resumed_at, self.before_s = 0, 0.0  # see resume()
        self.plain = progress is not None and not progress.console.is_terminal
        self.every_s = log_every_s()
        self.last_log: float | None = None
        self.task = progress.add_task(f"train {label}", total=self.total) if progress and not self.plain else None

    def resume(self, done: int, elapsed_s: float) -> None:
        """A run resumed from a checkpoint at unit ``done`` after ``elapsed_s`` seconds of earlier training:
        the pace counts only this process's units (else a resumed run's ETA looks almost finished) and the
        final report the whole training time."""
        self.resumed_at, self.before_s = done, elapsed_s

    def stop_by(self, done: int, patience_left: int | None) -> int:
        """The unit at which training ends if validation never improves again."""
        if patience_left is None:
            return self.total
        return min(self.total, (done // self.check_every + patience_left) * self.check_every)

    def text(self, done: int, loss: float | None = None, best: float | None = None, best_at: int | None = None,
             patience_left: int | None = None) -> str:
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.unit} {done}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if best is not None and best >= 0:
            parts.append(f"best {self.metric} {best:.4f} at {self.unit} {best_at}")
        if patience_left is not None and self.patience is not None:
            parts.append(f"patience {patience_left}/{self.patience} checks left")
        if done > self.resumed_at:
            pace = elapsed / (done - self.resumed_at)
            parts.append(f"{pace:.2f} s/{self.unit}" if pace < 10 else f"{fmt_seconds(pace)}/{self.unit}")
            stop = self.stop_by(done, patience_left)
            eta = f"ETA {fmt_seconds(pace * (stop - done))}"
            if stop < self.total:
                eta += f" if it stops early at {self.unit} {stop}, at most {fmt_seconds(pace * (self.total - done))}"
            parts.append(eta)
        return f"train {self.label}: " + ", ".join(parts)

    def update(self, done: int, loss: float | None = None, best: float | None = None, best_at: int | None = None,
               patience_left: int | None = None) -> None:
        if self.progress is None:
            return
        line = self.text(done, loss, best, best_at, patience_left)
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=self.stop_by(done, patience_left),
                                 description=line)
            return
        now = time.perf_counter()
        if self.last_log is None or now - self.last_log >= self.every_s:
            self._log(line)
            self.last_log = now

    def close(self, done: int, reason: str) -> None:
        """Final report: how many units ran and why training ended (early stop, maximum reached)."""
        if self.progress is None:
            return
        line = f"train {self.label}: finished after {done} {self.unit}s in " \
               f"{fmt_seconds(self.before_s + time.perf_counter() - self.start)} ({reason})"
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=max(done, 1), description=line)
        else:
            self._log(line)

    def _log(self, line: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        self.progress.console.print(f"{stamp} {line}", highlight=False, markup=False, soft_wrap=True)
