"""MLflow runs -> one record per (dataset, model variant, probe, seed), read the same way for any store.

A run is identified by params ``dataset``/``model``/``probe``/``seed``, falling back to tags of the same names
(both layouts exist); ``result.json`` carries the metrics, test and probe statistics. Each record carries its
task (``retrieval`` or ``generation``); :meth:`RunSource.collect` reads retrieval runs unless asked for more. Runs
of one dataset name with different ``dataset_hash`` (another split or other candidates) are refused, or split into
separate datasets on request, exactly as ``seqbench compare`` never mixes them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqbench import record
from seqbench.errors import SeqbenchError
from seqbench.models.llm.recipes import has_recipe
from seqbench.planner import DEFAULT
from seqbench.record import CONFIG, MODEL_CONFIG, PER_USER, PROBE_OPTIONS, RESULT

UNRECORDED = "unrecorded"  # an LLM run logged before runs recorded their training recipe


@dataclass
class RunRecord:
    run_id: str
    dataset: str  # the name shown in the report (name, or name@hash when split)
    dataset_hash: str
    model: str
    family: str
    probe: str  # probe name plus its options when any were set, e.g. "shuffle-infer (window=5)"
    seed: int
    code_version: str
    start_time: int
    config: dict[str, str]  # model_config.* params, prefix removed
    result: dict
    variant: str = ""  # model, plus the config values that tell its variants apart (filled by label_variants)
    dataset_meta: dict = field(default_factory=dict)
    protocol: str = "sampled"  # ranking protocol (--eval); runs logged before protocols existed are sampled
    task: str = "retrieval"  # retrieval or generation (--task); runs logged before tasks existed are retrieval
    recipe: str | None = None  # an LLM model's training recipe (models/llm/recipes.py); None for other models
    config_layer: str = DEFAULT  # default or tuned (`seqbench tune`'s winner): a study's `config` row

    @property
    def proxy(self) -> bool:
        """Trained with another recipe than the official one (or logged before runs recorded theirs)."""
        return self.recipe is not None and self.recipe != "official"


class RunSource:
    """Reads runs and their artifacts through an MlflowClient; per-user frames are loaded once, on demand."""

    def __init__(self, tracking_uri: str | None, experiment: str = "seqbench"):
        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact otherwise
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.experiment = experiment
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self._per_user: dict[str, pd.DataFrame] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="seqbench-report-")  # downloaded artifacts, removed on close

    def __enter__(self) -> RunSource:
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def _artifact(self, run_id: str, name: str) -> Path | None:
        import mlflow

        dest = Path(self._tmp.name) / run_id
        dest.mkdir(exist_ok=True)
        try:
            return Path(self.client.download_artifacts(run_id, name, str(dest)))
        except (mlflow.exceptions.MlflowException, OSError):
            return None

    def per_user(self, run_id: str) -> pd.DataFrame:
        if run_id not in self._per_user:
            path = self._artifact(run_id, PER_USER)
            if path is None:
                raise SeqbenchError(f"run '{run_id}' has no {PER_USER} artifact")
            self._per_user[run_id] = pd.read_parquet(path)
        return self._per_user[run_id]

    def per_user_metric(self, run_id: str, condition: str, metric: str = "ndcg@10") -> pd.Series:
        frame = self.per_user(run_id)
        rows = frame[frame["condition"] == condition]
        return rows.set_index("user")[metric].astype(np.float64).sort_index()

    def curve(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """A logged metric's history as (step, value), in step order."""
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def collect(self, datasets: list[str] | None = None, models: list[str] | None = None, split_hashes: bool = False,
                tasks: tuple[str, ...] = ("retrieval",), keep: Callable[[RunRecord], bool] | None = None,
                ) -> tuple[list[RunRecord], list[str]]:
        """The experiment's finished seqbench runs of ``tasks`` (filtered by dataset/model name, and by ``keep``
        before repeats are dropped and variants labelled) and notes on what was skipped."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            names = [e.name for e in self.client.search_experiments()]
            raise SeqbenchError(f"no MLflow experiment '{self.experiment}' at {self.tracking_uri}; "
                                f"experiments there: {', '.join(names) or '(none)'}")
        notes: list[str] = []
        records: list[RunRecord] = []
        for run in self._runs(exp.experiment_id):
            rec = self._record(run, notes, datasets, models, tasks)
            if rec is not None and (keep is None or keep(rec)):
                records.append(rec)
        records = split_or_refuse(records, split_hashes)
        records = drop_repeats(records, notes)
        label_variants(records)
        return records, notes

    def _runs(self, experiment_id: str):
        """All runs of the experiment, oldest first, page by page."""
        token = None
        while True:
            page = self.client.search_runs([experiment_id], max_results=1000, order_by=["start_time ASC"],
                                           page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def _record(self, run, notes: list[str], datasets: list[str] | None, models: list[str] | None,
                tasks: tuple[str, ...] = ("retrieval",)) -> RunRecord | None:
        info = run.info

        def key(name: str) -> str | None:
            return record.field(run, name)

        if not record.is_result(run):  # a sweep's parent run or a live training curve
            return None
        if key("model") is None or key("probe") is None or key("dataset") is None:
            notes.append(f"run {info.run_id} skipped: no dataset/model/probe param or tag (not a seqbench run)")
            return None
        if datasets and key("dataset") not in datasets or models and key("model") not in models:
            return None
        task = key("task") or "retrieval"
        if task not in tasks:
            notes.append(f"run {info.run_id} skipped: task {task} (this reading covers {', '.join(tasks)}; "
                         "`seqbench report` shows title-generation runs in their own section)")
            return None
        if info.status != "FINISHED":
            notes.append(f"run {info.run_id} skipped: status {info.status}")
            return None
        path = self._artifact(info.run_id, RESULT)
        if path is None:
            notes.append(f"run {info.run_id} skipped: no {RESULT} artifact")
            return None
        result = json.loads(path.read_text())
        options = record.prefixed(run, PROBE_OPTIONS)
        probe = key("probe") + (f" ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})" if options else "")
        recipe = record.recipe(run) or result.get("recipe")
        if recipe is None and has_recipe(key("model")):
            recipe = UNRECORDED
        return RunRecord(
            task=task, run_id=info.run_id, dataset=key("dataset"), dataset_hash=record.dataset_hash(run),
            model=key("model"), family=key("family") or "?", probe=probe, seed=int(key("seed") or 0),
            code_version=record.code_version(run), start_time=info.start_time or 0,
            config=record.prefixed(run, MODEL_CONFIG), result=result, protocol=record.protocol(run), recipe=recipe,
            config_layer=record.config_layer(run))

    def dataset_meta(self, record: RunRecord) -> dict:
        """The prepared dataset's meta.json as the run recorded it (counts, source, parameters)."""
        path = self._artifact(record.run_id, CONFIG)
        return json.loads(path.read_text()).get("dataset_meta", {}) if path else {}


def split_or_refuse(records: list[RunRecord], split: bool) -> list[RunRecord]:
    """One dataset name must mean one dataset_hash; with ``split`` each hash becomes its own dataset."""
    hashes: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        hashes[r.dataset][r.dataset_hash].append(r.run_id)
    for name, by_hash in hashes.items():
        if len(by_hash) < 2:
            continue
        if not split:
            detail = "; ".join(f"{h[:12] or '(none)'}: {len(ids)} runs, e.g. {ids[0]}" for h, ids in by_hash.items())
            raise SeqbenchError(f"dataset '{name}' has runs on {len(by_hash)} different dataset_hash values "
                                f"(another split or other candidates): {detail}. Pass --split-hashes to report "
                                f"them as separate datasets, or --dataset to choose.")
        for r in records:
            if r.dataset == name:
                r.dataset = f"{name}@{r.dataset_hash[:8]}"
    return records


def drop_repeats(records: list[RunRecord], notes: list[str]) -> list[RunRecord]:
    """The same (dataset, model, config, probe, seed) run twice: keep the latest, say which was dropped. A default and
    a tuned row with the same settings are two rows (a study's ``config: [default, tuned]``), not a repeat."""
    latest: dict[tuple, RunRecord] = {}
    for r in records:  # in start-time order
        k = (r.dataset, r.model, tuple(sorted(r.config.items())), r.probe, r.seed, r.protocol, r.task, r.config_layer)
        if k in latest:
            notes.append(f"run {latest[k].run_id} superseded by the later run {r.run_id} "
                         f"({r.dataset}/{r.model}/{r.probe}/seed {r.seed})")
        latest[k] = r
    return list(latest.values())


ALWAYS_NAMED = ("llm",)  # an LLM model's backbone is part of what the numbers mean: always in its label
PROXY = "proxy"  # the label's mark of a row trained with a non-official recipe
PROXY_NOTE = (f"`{PROXY}` in a model's label: an LLM recommender trained with another recipe than the official one "
              "(the paper's LLM and the official code's settings, `models/llm/recipes.py`), such as the CPU recipe; "
              "its numbers stand in for the official recipe's, they do not reproduce them. The Runs covered table "
              f"names each run's recipe (`{UNRECORDED}`: logged before runs recorded it).")


def label_variants(records: list[RunRecord]) -> None:
    """A model run with several configs gets one label per config, naming only the values that differ (and the
    LLM of LLM-based models, always); a config any of whose runs is a proxy (``RunRecord.proxy``) is marked
    ``proxy``. A model with rows of several config layers names the layer first: ``sasrec (tuned, lr=0.003)``, so
    a tuned row equal to the default stays its own row."""
    by_model: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:  # per task: a table of one task never shows the other task's configurations
        by_model[(r.task, r.model)].append(r)
    for (_, model), runs in by_model.items():
        configs = {tuple(sorted(r.config.items())) for r in runs}
        keys = sorted({k for c in configs for k, _ in c})
        differing = [k for k in keys if k in ALWAYS_NAMED or len({dict(c).get(k) for c in configs}) > 1]
        proxies = {tuple(sorted(r.config.items())) for r in runs if r.proxy}
        layered = len({r.config_layer for r in runs}) > 1
        # floats to 4 significant digits (a tuned learning rate is not 0.001904767808428205 in a table), unless
        # that would give two configs one label
        rounded = {c: tuple((k, short_value(v.get(k, "-"))) for k in differing) for c, v in
                   ((c, dict(c)) for c in configs)}
        exact = len(set(rounded.values())) < len(configs)
        for r in runs:
            c = tuple(sorted(r.config.items()))
            values = [r.config_layer] if layered else []
            values += [f"{k}={r.config.get(k, '-') if exact else v}" for k, v in rounded[c]]
            values += [PROXY] if c in proxies else []
            r.variant = f"{model} ({', '.join(values)})" if values else model


def short_value(text: str) -> str:
    """A logged setting as a label shows it: a float to 4 significant digits, anything else as logged."""
    if not isinstance(text, str) or not any(ch in text for ch in ".eE"):  # whole numbers stay as logged
        return str(text)
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text
