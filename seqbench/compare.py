"""Paired per-user comparison of models across MLflow runs (``seqbench compare``).

Every run stores each user's metrics (``per_user_metrics.parquet``), so two models evaluated on the same
prepared dataset (same ``dataset_hash``: same split and the same persisted candidates) can be compared user
by user with the same Wilcoxon test and bootstrap CIs the probes use; with several challengers the
p-values are Holm-adjusted. Runs on different datasets or candidate sets are refused, never silently mixed.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqbench import record
from seqbench.errors import SeqbenchError
from seqbench.runs import resolve_run_id
from seqbench.stats.multiple import holm
from seqbench.stats.paired import PairedTest, paired_test


@dataclass
class RunMetrics:
    run_id: str
    label: str  # "model/probe/seed (run id prefix)"
    dataset_hash: str
    per_user: pd.Series  # metric value per user id, for the chosen condition
    protocol: str = "sampled"  # how the run ranked its targets (runs logged before protocols: sampled)


@contextmanager
def quiet_downloads():
    """MLflow draws a tqdm "Downloading artifacts" bar per download; it would land between our tables."""
    import os

    old = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = old


def load_run(run_id: str, metric: str, condition: str, client) -> RunMetrics:
    """The per-user ``metric`` of ``condition`` in one run, read from its artifact."""
    import mlflow

    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException as e:
        raise SeqbenchError(f"no MLflow run '{run_id}' in this tracking store") from e
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        try:
            path = client.download_artifacts(run_id, record.PER_USER, tmp)
        except (mlflow.exceptions.MlflowException, OSError) as e:
            raise SeqbenchError(f"run '{run_id}' has no {record.PER_USER} artifact (not a seqbench run?)") from e
        frame = pd.read_parquet(path)
    if metric not in frame.columns:
        metrics = sorted(c for c in frame.columns if c not in ("condition", "user"))
        raise SeqbenchError(f"run '{run_id}' has no per-user '{metric}'; it has: {', '.join(metrics)}")
    rows = frame[frame["condition"] == condition]
    if rows.empty:
        raise SeqbenchError(f"run '{run_id}' has no condition '{condition}'; it has: "
                            f"{', '.join(sorted(frame['condition'].unique()))}")
    label = "/".join(record.field(run, k, "?") for k in ("model", "probe")) + \
        f"/seed{record.field(run, 'seed', '?')} ({run_id[:8]})"
    return RunMetrics(run_id, label, record.dataset_hash(run),
                      rows.set_index("user")[metric].astype(np.float64).sort_index(), record.protocol(run))


def compare_series(reference: pd.Series, others: list[pd.Series], metric: str = "ndcg@10",
                   seed: int = 0) -> list[PairedTest]:
    """Paired test of each per-user series (indexed by user) against ``reference``; Holm-adjusted when there
    are several. Shared by ``seqbench compare`` and ``seqbench report``; callers check the users match."""
    tests = [paired_test(reference.to_numpy(), o.to_numpy(), metric=metric, seed=seed) for o in others]
    if len(tests) > 1:
        for t, p in zip(tests, holm([t.p_value for t in tests]), strict=True):
            t.p_holm = float(p)
    return tests


def compare_runs(run_ids: list[str], metric: str = "ndcg@10", condition: str = "original",
                 tracking_uri: str | None = None, seed: int = 0) -> dict:
    """Compare every run against the first (the reference) on the users they share, which must be all."""
    import mlflow

    if len(run_ids) < 2:
        raise SeqbenchError("compare needs a reference run and at least one other run")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    runs = [load_run(resolve_run_id(r, client), metric, condition, client) for r in run_ids]
    ref = runs[0]
    for r in runs[1:]:
        if r.dataset_hash != ref.dataset_hash:
            raise SeqbenchError(f"runs '{ref.run_id}' and '{r.run_id}' were evaluated on different data "
                                f"(dataset_hash {ref.dataset_hash[:12]} vs {r.dataset_hash[:12]})")
        if r.protocol != ref.protocol:
            raise SeqbenchError(f"runs '{ref.run_id}' and '{r.run_id}' ranked under different protocols "
                                f"(--eval {ref.protocol} vs {r.protocol}): their metrics are not comparable")
        if not r.per_user.index.equals(ref.per_user.index):
            raise SeqbenchError(f"runs '{ref.run_id}' and '{r.run_id}' evaluated different users")
    tests = compare_series(ref.per_user, [r.per_user for r in runs[1:]], metric, seed)
    rows = []
    for r, t in zip(runs[1:], tests, strict=True):
        test = t.as_dict()  # the paired test speaks of original/probed; here they are reference/challenger
        test["mean_reference"], test["mean_challenger"] = test.pop("mean_original"), test.pop("mean_probed")
        rows.append({"run_id": r.run_id, "label": r.label, "test": test})
    return {"metric": metric, "condition": condition, "dataset_hash": ref.dataset_hash, "eval": ref.protocol,
            "reference": {"run_id": ref.run_id, "label": ref.label, "mean": float(ref.per_user.mean())},
            "n_users": len(ref.per_user), "holm": len(tests) > 1, "comparisons": rows}

