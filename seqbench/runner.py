"""`seqbench run`: dataset -> trained model -> probe -> paired test -> MLflow run -> result dict."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from seqbench.config import load_config_file
from seqbench.context import RunContext, resolve_device, seed_everything
from seqbench.data.dataset import SeqDataset
from seqbench.data.pipeline import DEFAULT_DATASET, prepare_source
from seqbench.data.store import data_home, list_datasets, load_dataset
from seqbench.eval.metrics import METRIC_KEYS
from seqbench.models import create_model, get_spec
from seqbench.probes import ProbeResult, get_probe
from seqbench.tracking import Tracker, code_version


@dataclass
class RunSpec:
    model: str = "sasrec"
    probe: str = "shuffle-infer"
    dataset: str | None = None  # None: the embedded synthetic default, prepared on first use
    seed: int = 0
    overrides: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    data_home: Path | None = None
    tracking_uri: str | None = None
    device: str = "auto"
    output: Path | None = None


def ensure_dataset(name: str | None, home: Path, console: Console | None = None) -> SeqDataset:
    """Load a prepared dataset; the synthetic default is prepared on first use."""
    name = name or DEFAULT_DATASET
    if name == DEFAULT_DATASET and name not in list_datasets(home):
        if console:
            console.print(f"[dim]preparing the default synthetic dataset in {home / name}[/dim]")
        prepare_source("synthetic", None, name, home)
    return load_dataset(name, home)


def _model_layers(spec: RunSpec) -> list[dict[str, Any]]:
    """Config precedence: model defaults < config file ([model] or [models.<name>] table) < --set."""
    file_cfg = load_config_file(spec.config_file)
    layers = []
    if isinstance(file_cfg.get("model"), dict):
        layers.append(file_cfg["model"])
    if isinstance(file_cfg.get("models"), dict) and isinstance(file_cfg["models"].get(spec.model), dict):
        layers.append(file_cfg["models"][spec.model])
    layers.append(spec.overrides)
    return layers


def result_dict(spec: RunSpec, data: SeqDataset, res: ProbeResult, run_id: str | None) -> dict:
    return {
        "dataset": data.name,
        "model": spec.model,
        "probe": res.probe,
        "seed": spec.seed,
        "metrics": {
            "original": {k: res.original.summary[k] for k in METRIC_KEYS},
            "probed": {k: res.probed.summary[k] for k in METRIC_KEYS},
        },
        "test": {
            "metric": res.test.metric,
            "relative_change": res.test.relative_change,
            "ci95": list(res.test.ci95),
            "p_value": res.test.p_value,
            "effect_size": res.test.effect_size,
            "mean_diff": res.test.mean_diff,
            "diff_ci95": list(res.test.diff_ci95),
            "n_users": res.test.n_users,
            "n_nonzero": res.test.n_nonzero,
        },
        "probe_stats": res.probe_stats,
        "mlflow_run_id": run_id,
    }


def write_json_atomic(obj: Any, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(spec: RunSpec, console: Console | None = None) -> dict:
    console = console or Console(stderr=True)
    get_spec(spec.model)  # fail fast on unknown names, before any work
    probe = get_probe(spec.probe)
    home = data_home(spec.data_home)
    data = ensure_dataset(spec.dataset, home, console)
    seed_everything(spec.seed)
    model = create_model(spec.model, data.n_items, *_model_layers(spec))
    config = dataclasses.asdict(model.config)
    tracker = Tracker(spec.tracking_uri)
    params = {"dataset": data.name, "model": spec.model, "probe": spec.probe, "seed": spec.seed,
              "device": spec.device, "model_config": config, "data": data.meta.get("params", {})}
    tags = {"dataset_hash": data.content_hash, "code_version": code_version(),
            "family": get_spec(spec.model).family}
    run_name = f"{data.name}/{spec.model}/{spec.probe}/seed{spec.seed}"
    with tracker.run(run_name, params, tags), Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        ctx = RunContext(seed=spec.seed, device=resolve_device(spec.device), progress=progress,
                         log_metric=tracker.metric)
        fit = model.fit(data, data.histories("train"), ctx)
        task = progress.add_task(f"probe {probe.name}", total=None)
        res = probe.run(model, data, ctx)
        progress.update(task, total=1, completed=1)
        out = result_dict(spec, data, res, tracker.run_id)
        tracker.metrics({f"original_{k}": v for k, v in out["metrics"]["original"].items()})
        tracker.metrics({f"probed_{k}": v for k, v in out["metrics"]["probed"].items()})
        tracker.metrics({"relative_change": res.test.relative_change, "p_value": res.test.p_value,
                         "ci95_low": res.test.ci95[0], "ci95_high": res.test.ci95[1],
                         "effect_size": res.test.effect_size, "best_epoch": fit.best_epoch,
                         "best_valid_ndcg_at_10": fit.best_valid, "train_seconds": fit.seconds,
                         "seconds_to_best": fit.seconds_to_best})
        tracker.metrics({f"probe_{k}": v for k, v in res.probe_stats.items() if isinstance(v, int | float)})
        per_user = pd.DataFrame({"user": res.original.users,
                                 **{f"original_{k}": v for k, v in res.original.per_user.items()},
                                 **{f"probed_{k}": v for k, v in res.probed.per_user.items()}})
        tracker.table_artifact(per_user, "per_user_metrics.parquet")
        tracker.json_artifact({"run": {k: str(v) if isinstance(v, Path) else v
                                       for k, v in dataclasses.asdict(spec).items()},
                               "model_config": config, "dataset_meta": data.meta}, "resolved_config.json")
        tracker.json_artifact({"curve": fit.curve, **dataclasses.asdict(fit)}, "fit_report.json")
        tracker.json_artifact(out, "result.json")
    out["fit"] = {"best_epoch": fit.best_epoch, "best_valid_ndcg@10": fit.best_valid,
                  "epochs_run": fit.epochs_run, "seconds": fit.seconds}
    if spec.output:
        write_json_atomic(out, spec.output)
    return out
