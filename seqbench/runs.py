"""Finding seqbench runs in an MLflow tracking store: list them (`seqbench runs`) and resolve id prefixes.

Every run carries the tags ``dataset``, ``model``, ``probe``, ``seed`` and ``conditions`` (the two compared
conditions, e.g. ``original,probed``), so listing needs no artifact download. Run ids are 32 hex characters;
anywhere a run id is asked for, any prefix that matches exactly one run in the store is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqbench import record
from seqbench.errors import SeqbenchError
from seqbench.tracking import EXPERIMENT, metric_key

MIN_PREFIX = 4  # shorter prefixes are too likely to be ambiguous to be useful


@dataclass
class RunRow:
    run_id: str
    dataset: str
    model: str
    probe: str
    seed: str
    conditions: tuple[str, str]
    ndcg: tuple[float | None, float | None]  # NDCG@10 of the two conditions
    p_value: float | None
    start_time: int  # ms since the epoch
    protocol: str = "sampled"  # ranking protocol (--eval)

    def as_dict(self) -> dict:
        a, b = self.conditions
        return {"run_id": self.run_id, "dataset": self.dataset, "model": self.model, "probe": self.probe,
                "seed": self.seed, "eval": self.protocol, "conditions": [a, b], f"{a}_ndcg@10": self.ndcg[0],
                f"{b}_ndcg@10": self.ndcg[1], "p_value": self.p_value, "start_time": self.start_time}


def _client(tracking_uri: str | None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _all_runs(client, filter_string: str = "") -> list:
    """Every run of the seqbench experiment (all pages), newest first; none if it does not exist yet."""
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=filter_string, max_results=1000,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def resolve_run_id(prefix: str, client) -> str:
    """The full id of the one run whose id starts with ``prefix`` (a full id is returned as is)."""
    prefix = prefix.strip().lower()
    if len(prefix) == 32:
        return prefix
    if len(prefix) < MIN_PREFIX:
        raise SeqbenchError(f"run id prefix '{prefix}' is too short; give at least {MIN_PREFIX} characters")
    hits = [r.info.run_id for r in _all_runs(client) if r.info.run_id.startswith(prefix)]
    if not hits:
        raise SeqbenchError(f"no MLflow run '{prefix}' in this tracking store (see `seqbench runs`)")
    if len(hits) > 1:
        raise SeqbenchError(f"run id prefix '{prefix}' is ambiguous: it matches {', '.join(h[:12] for h in hits)}")
    return hits[0]


def list_runs(tracking_uri: str | None = None, dataset: str | None = None, model: str | None = None,
              probe: str | None = None) -> list[RunRow]:
    """seqbench runs in the store, newest first, optionally filtered by the dataset/model/probe tags."""
    for v in (dataset, model, probe):
        if v and "'" in v:
            raise SeqbenchError(f"filter value {v!r} must not contain a quote")
    rows = []
    for r in _all_runs(_client(tracking_uri), record.filter_string(dataset=dataset, model=model, probe=probe)):
        if not record.is_result(r):  # a sweep's parent run or a live training curve
            continue
        metrics = r.data.metrics
        a, b = record.conditions(r)
        rows.append(RunRow(
            run_id=r.info.run_id, dataset=record.field(r, "dataset", "?"), model=record.field(r, "model", "?"),
            probe=record.field(r, "probe", "?"), seed=record.field(r, "seed", "?"), conditions=(a, b),
            ndcg=(metrics.get(f"{a}_{metric_key('ndcg@10')}"), metrics.get(f"{b}_{metric_key('ndcg@10')}")),
            p_value=metrics.get("p_holm", metrics.get("p_value")), start_time=r.info.start_time or 0,
            protocol=record.protocol(r),
        ))
    return rows
