"""Training curves that grow in MLflow while a model trains: one run per trained model (tag ``run_kind=train``).

A probe run is logged when its numbers are final; a training run must be visible while it lasts (an LLM
fit takes hours). Points are buffered and written in batches at most every ``flush_s`` seconds, so an LLM
loop logging every optimizer step does not make one database transaction per step. The run is created on
the first point, so a model taken from the store (no training) makes no training run. A fit resumed from its
checkpoint (an earlier process was killed) continues that process's unfinished training run instead of opening a
second one: resumed means its first point comes after step 1 (a fresh fit starts at step 0 or 1) while a run of
the same identity is unfinished. The points between the checkpoint and the kill then appear twice in that
run's history, the resumed ones later. ``seqbench run`` closes a training run when its fit returns (``finish``),
before the probes evaluate the model, so the last buffered points are written then, not an hour later.
"""

from __future__ import annotations

import time
from typing import Any

from seqbench import record
from seqbench.models import get_spec
from seqbench.tracking import EXPERIMENT, Tracker, metric_key


class LiveCurves:
    """Per model identity, an MLflow run that receives training metrics as they are reported."""

    def __init__(self, tracker: Tracker, dataset: str | None = None, model: str | None = None,
                 experiment: str = EXPERIMENT, parent_run_id: str | None = None, flush_s: float = 2.0):
        self.client = tracker.mlflow.MlflowClient()
        self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        self.defaults = {"dataset": dataset, "model": model}
        self.parent = parent_run_id
        self.flush_s = flush_s
        self.labels: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, str] = {}
        self.buffer: dict[str, list] = {}
        self.last_flush = time.monotonic()

    def label(self, ident: str, **labels: Any) -> None:
        """Name the dataset/model/seed of an identity before its first point (the sweep driver does this)."""
        self.labels[ident] = labels

    def _run_for(self, ident: str, first_step: int) -> str:
        if ident not in self.runs:
            lab = {**{k: v for k, v in self.defaults.items() if v is not None}, **self.labels.get(ident, {})}
            tags = record.train_tags(ident, lab)
            if "model" in lab:
                tags["family"] = get_spec(str(lab["model"])).family
            if self.parent:
                tags["mlflow.parentRunId"] = self.parent
            name = "train/" + "/".join(str(lab[k]) for k in ("dataset", "model") if k in lab) + f"/{ident[:8]}"
            unfinished = self._unfinished_run(ident) if first_step > 1 else None
            if unfinished is not None:
                self.client.update_run(unfinished, status="RUNNING")
                self.runs[ident] = unfinished
            else:
                self.runs[ident] = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            self.buffer[ident] = []
        return self.runs[ident]

    def _unfinished_run(self, ident: str) -> str | None:
        """The newest training run of this identity that did not finish (its process was killed or failed)."""
        runs = self.client.search_runs([self.experiment_id], order_by=["attributes.start_time DESC"],
                                       filter_string=record.filter_string(run_kind=record.TRAIN_RUN,
                                                                          model_identity=ident))
        for run in runs:
            if run.info.status != "FINISHED":
                return run.info.run_id
        return None

    def add(self, ident: str, name: str, value: float, step: int) -> None:
        from mlflow.entities import Metric

        self._run_for(ident, step)
        self.buffer[ident].append(Metric(metric_key(name), float(value), int(time.time() * 1000), int(step)))
        self.flush_due()

    def flush_due(self) -> None:
        """Write the buffered points if ``flush_s`` has passed: a point is otherwise written only when a later one
        arrives, and a fit's last validation point has none (the sweep driver calls this while it waits)."""
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        for ident, points in self.buffer.items():
            for i in range(0, len(points), 1000):  # MLflow caps a batch at 1000 metrics
                self.client.log_batch(self.runs[ident], metrics=points[i : i + 1000])
            points.clear()
        self.last_flush = time.monotonic()

    def finish(self, ident: str, status: str = "FINISHED") -> None:
        """Close one identity's training run (the sweep driver calls it when that task ends)."""
        if ident in self.runs:
            self.flush()
            self.client.set_terminated(self.runs.pop(ident), status=status)
            self.buffer.pop(ident, None)

    def __enter__(self) -> LiveCurves:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for ident in list(self.runs):
            self.finish(ident, "FAILED" if exc_type else "FINISHED")
