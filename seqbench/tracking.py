"""MLflow tracking: one run per (dataset, model, probe, seed); the MLflow UI is how users compare runs."""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqbench.version import code_version  # noqa: F401  (re-exported: runs record it)

EXPERIMENT = "seqbench"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(tracking_uri[len(prefix):].split("?", 1)[0]).resolve()


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a sqlite store live beside the database (``<db dir>/mlartifacts``), never in whatever
    directory the command happened to run from (MLflow's default is ``./mlruns``). None: MLflow decides."""
    db = sqlite_path(tracking_uri)
    return (db.parent / "mlartifacts").as_uri() if db is not None else None


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """Create the experiment on first use with the artifact location above; returns its id."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri))
    except MlflowException:  # another process created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def metric_key(name: str) -> str:
    """MLflow metric names cannot contain '@'."""
    return name.replace("@", "_at_")


class Tracker:
    """Thin wrapper so the runner logs through one object (and tests can point it at a temp store)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = EXPERIMENT):
        import mlflow

        for noisy in ("mlflow", "alembic"):  # keep the terminal for progress bars and results
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.mlflow = mlflow
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        self.uri = mlflow.get_tracking_uri()
        self.experiment = experiment
        ensure_experiment(experiment, self.uri)
        mlflow.set_experiment(experiment)
        self.run_id: str | None = None

    def describe(self) -> dict[str, str | None]:
        """Where runs go: the store, the experiment and its artifact root (what `seqbench run` prints)."""
        exp = self.mlflow.get_experiment_by_name(self.experiment)
        return {"tracking_uri": self.uri, "experiment": self.experiment,
                "experiment_id": exp.experiment_id if exp else None,
                "artifact_location": exp.artifact_location if exp else None}

    @contextmanager
    def run(self, name: str, params: dict, tags: dict):
        with self.mlflow.start_run(run_name=name) as active:
            self.run_id = active.info.run_id
            flat = {k: (json.dumps(v) if isinstance(v, list | tuple) else v) for k, v in _flatten(params).items()}
            self.mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})
            self.mlflow.set_tags(tags)
            yield self

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.mlflow.log_metric(metric_key(name), float(value), step=step)

    def curve(self, points: list[tuple[str, float, int]]) -> None:
        """Many (name, value, step) points in one batched write instead of one transaction per point."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_key(n), float(v), now, int(step)) for n, v, step in points]
        client = self.mlflow.MlflowClient()
        for i in range(0, len(batch), 1000):  # MLflow caps a batch at 1000 metrics
            client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def metrics(self, values: dict[str, float]) -> None:
        clean = {metric_key(k): float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
        self.mlflow.log_metrics(clean)

    def json_artifact(self, obj: Any, name: str) -> None:
        self.mlflow.log_dict(obj, name)

    def table_artifact(self, frame: pd.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            frame.to_parquet(path, index=False)
            self.mlflow.log_artifact(str(path))
