"""`seqbench run`: dataset -> trained model -> probes -> statistics -> MLflow runs -> result dicts.

For each seed the model trains once; every requested probe then runs on it and gets its own MLflow run
(one per dataset, model, probe and seed). Several probes reported together get Holm-adjusted p-values;
several seeds get an aggregate (mean ± CI over seeds, paired t-test over seeds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from seqbench import record
from seqbench.atomic import write_json_atomic
from seqbench.config import resolve
from seqbench.context import RunContext, resolve_device, seed_everything
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.data.store import data_home, load_dataset
from seqbench.eval.evaluator import PRIMARY_METRIC, check_protocol
from seqbench.models import FitReport, create_model, get_spec
from seqbench.models.store import ModelStore, Stored, histories_hash, identity
from seqbench.planner import (
    DEFAULT,
    check_task,
    config_label,
    ensure_dataset,
    is_tuned,
    model_layers,
    resolved_config,
    tuned_layer,
)
from seqbench.probes import ProbeContext, ProbeResult, get_probe, validate_probe_options
from seqbench.probes.options import declared
from seqbench.stats.multiple import aggregate_seeds, holm
from seqbench.tracking import Tracker, code_version
from seqbench.tracking_live import LiveCurves


@dataclass
class RunSpec:
    model: str = "sasrec"
    probes: list[str] = field(default_factory=lambda: ["shuffle-infer"])
    dataset: str | None = None  # None: the embedded synthetic default, prepared on first use
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, str] = field(default_factory=dict)
    probe_options: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    data_home: Path | None = None
    tracking_uri: str | None = None
    device: str = "auto"
    output: Path | None = None
    retrain: bool = False  # train even when the model store holds this trained model
    checkpoint_every_s: float = 0.0  # also checkpoint at most this far apart (0: only at checks)
    task: str = "retrieval"  # or generation: 20 title candidates, HR@1 (docs/models.md, "Title generation")
    evals: list[str] = field(default_factory=lambda: ["sampled"])  # ranking protocols, each runs every probe
    # several option sets (a study's list of probe_set tables): every probe runs once per distinct set of the
    # options it reads (e.g. shuffle-infer at window=10 and at its own window); None: probe_options only
    probe_option_sets: list[dict[str, str]] | None = None
    recipe: str | None = None  # a named training recipe for LLM models (models/llm/recipes.py), under --set

    def probe_runs(self) -> list[tuple[str, dict[str, str]]]:
        """(probe, the options it reads) for every probe run of a seed pass, each distinct pair once."""
        runs: list[tuple[str, dict[str, str]]] = []
        for options in self.probe_option_sets or [self.probe_options]:
            for name in self.probes:
                mine = {k: v for k, v in options.items() if k in declared(get_probe(name))}
                if (name, mine) not in runs:
                    runs.append((name, mine))
        return runs


@dataclass
class SeedPass:
    """One seed of one model on one dataset: the (stored or fresh) trained model and every probe's result."""

    config: dict[str, Any]
    fit: FitReport
    reused: bool
    identity: str
    results: list[ProbeResult]
    steps: list[tuple[str, float, int]]  # what the model reported while training (empty when reused)
    recipe: str | None = None  # an LLM model's training recipe (models/llm/recipes.py); None for other models
    recipe_changes: list[str] | None = None  # its recipe-defining settings that differ from the official recipe
    placement: dict[str, str] = field(default_factory=dict)  # a sweep task's node and device (MLflow tags)

    @property
    def recipe_fields(self) -> dict[str, Any]:
        """What the result JSON records of the recipe (every model: None where there is no recipe)."""
        return {"recipe": self.recipe, "recipe_changes": self.recipe_changes}

    @property
    def recipe_tags(self) -> dict[str, str]:
        """The MLflow ``recipe`` tag, for models that have a recipe."""
        return {} if self.recipe is None else {"recipe": self.recipe}


MetricSink = Callable[[str, str, float, int], None]  # (model identity, name, value, step)


def train_or_reuse(model: str, layers: list[dict[str, Any]], data: SeqDataset, train: Histories, seed: int,
                   device: Any, store: ModelStore, metric: MetricSink | None = None, progress: Progress | None = None,
                   retrain: bool = False, checkpoint_every_s: float = 0.0, config: dict[str, Any] | None = None,
                   code: str | None = None) -> tuple[Stored, RunContext]:
    """The trained model of (``model``, ``layers``, ``data``, ``train``, ``seed``): from the store, else trained
    (resuming a checkpoint) and stored. ``metric`` gets (identity, name, value, step) as training reports them.
    The one training path of `seqbench run`, the sweep's tasks and `seqbench tune`'s trials."""
    config = config if config is not None else resolved_config(model, layers)
    code = code or code_version()
    train_hash = histories_hash(train)
    ident = identity(model, config, data.content_hash, train_hash, seed, code)

    def build():
        seed_everything(seed, device)
        return create_model(model, data.n_items, *layers)

    sink = (lambda name, value, step: metric(ident, name, value, step)) if metric is not None else None
    ctx = RunContext(seed=seed, device=device, progress=progress, log_metric=sink)
    meta = {"model": model, "dataset": data.name, "dataset_hash": data.content_hash, "seed": seed,
            "config": config, "code_version": code, "train_hash": train_hash}
    got = store.get_or_fit(ident, build, lambda m, c: m.fit(data, train, c), ctx, meta, retrain, checkpoint_every_s)
    return got, ctx


def seed_pass(spec: RunSpec, data: SeqDataset, layers: list[dict[str, Any]], seed: int, device: Any,
              home: Path, store: ModelStore, progress: Progress | None = None,
              live: MetricSink | None = None, fit_done: Callable[[str], None] | None = None) -> SeedPass:
    """Train (or reuse from ``store``) the model for ``seed`` and run every probe of ``spec`` on it.

    Shared by ``seqbench run`` and the sweep's Ray tasks. A probe that trains another model (shuffle-train)
    goes through the store too, under that model's own identity (its train histories differ). ``live``
    receives training metrics as they happen (the live training curve in MLflow); ``fit_done`` is told a
    model's identity as soon as its fit (or store lookup) returns, before the probes evaluate it, so its
    training run can close then: an LLM's test evaluation takes tens of minutes, and a process killed during
    it must not leave the run open with its last validation point unwritten.
    """
    config = resolved_config(spec.model, layers)
    code = code_version()
    steps: list[tuple[str, float, int]] = []

    def trained(d: SeqDataset, train: Histories, keep: bool):
        def metric(ident: str, name: str, value: float, step: int) -> None:
            if keep:
                steps.append((name, value, step))
            if live is not None:
                live(ident, name, value, step)

        got, ctx = train_or_reuse(spec.model, layers, d, train, seed, device, store, metric, progress, spec.retrain,
                                  spec.checkpoint_every_s, config, code)
        if fit_done is not None:
            fit_done(got.identity)
        return got, ctx

    main, ctx = trained(data, data.histories("train"), keep=True)
    results = []
    for protocol in spec.evals:  # the same trained model under each ranking protocol
        batch = []
        for name, options in spec.probe_runs():
            probe = get_probe(name)
            shown = name + "".join(f" {k}={v}" for k, v in options.items()) if spec.probe_option_sets else name
            label = f"probe {shown} ({protocol}, seed {seed})" if len(spec.evals) > 1 else \
                f"probe {shown} (seed {seed})"
            task = progress.add_task(label, total=None) if progress else None
            pc = ProbeContext(model=main.model, data=data, run=ctx, fit=lambda d, t: trained(d, t, False)[0].model,
                              load_dataset=lambda n: load_dataset(n, home), options=options,
                              task=spec.task, protocol=protocol)
            batch.append(probe.run(pc))
            batch[-1].protocol = protocol
            batch[-1].probe_stats["options"] = options
            if task is not None:
                progress.update(task, total=1, completed=1)
        if len(batch) > 1:  # several hypotheses about one model: control the family-wise error
            for r, p in zip(batch, holm([r.test.p_value for r in batch]), strict=True):
                r.test.p_holm = float(p)
        results += batch
    from seqbench.models.llm.recipes import recipe_changes, recipe_of

    return SeedPass(config, main.fit, main.reused, main.identity, results, steps, recipe_of(spec.model, config),
                    recipe_changes(spec.model, config))


def result_dict(data: SeqDataset, model: str, seed: int, res: ProbeResult, fit: FitReport,
                task: str = "retrieval", config: str = DEFAULT) -> dict:
    """The machine-readable result of one (dataset, model, probe, seed); ``config``: its config layer."""
    test = res.test
    return {
        "dataset": data.name,
        "model": model,
        "config": config,
        "probe": res.probe,
        "seed": seed,
        "task": task,
        "eval": res.protocol,
        "split": data.split_kind,
        "metrics": {name: cond.summary for name, cond in res.conditions.items()},
        "test": {
            "compare": list(res.compare),
            "kind": test.kind,
            "metric": test.metric,
            "relative_change": test.relative_change,
            "ci95": list(test.ci95),
            "p_value": test.p_value,
            "p_holm": test.p_holm,
            "effect_size": test.effect_size,
            "mean_diff": test.mean_diff,
            "diff_ci95": list(test.diff_ci95),
            "n_users": test.n_users,
            "n_nonzero": test.n_nonzero,
        },
        "probe_stats": res.probe_stats,
        "fit": {"best_epoch": fit.best_epoch, f"best_valid_{fit.valid_metric}": fit.best_valid,
                "epochs_run": fit.epochs_run,
                "seconds": fit.seconds, "seconds_to_best": fit.seconds_to_best},
        "mlflow_run_id": None,
    }


def log_result(tracker: Tracker, spec: RunSpec, data: SeqDataset, config: dict, seed: int, fit: FitReport,
               res: ProbeResult, out: dict, steps: list[tuple[str, float, int]], extra_tags: dict | None = None) -> str:
    params = {"dataset": data.name, "model": spec.model, "probe": res.probe, "seed": seed, "device": spec.device,
              "task": spec.task, "eval": res.protocol, "split": data.split_kind,
              "model_config": config, "probe_options": res.probe_stats.get("options", {}),
              "data": data.meta.get("params", {})}
    tags = record.result_tags(dataset=data.name, model=spec.model, family=get_spec(spec.model).family,
                              probe=res.probe, seed=seed, task=spec.task, protocol=res.protocol,
                              split=data.split_kind, conditions=res.compare, dataset_hash=data.content_hash,
                              code_version=code_version(), **(extra_tags or {}))
    with tracker.run(f"{data.name}/{spec.model}/{res.probe}/seed{seed}", params, tags):
        # what the model reported while training (per step for LLM-SRec, per epoch for CF); else its curve
        if not steps:
            steps = [("train_loss", loss, epoch) for epoch, loss, _ in fit.curve]
            steps += [(f"valid_{fit.valid_metric}", valid, epoch) for epoch, _, valid in fit.curve if valid is not None]
        tracker.curve(steps + res.steps)  # + what the probe reports per step (order-horizon: step = K)
        for cond, summary in out["metrics"].items():
            tracker.metrics({f"{cond}_{k}": v for k, v in summary.items()})
        t = out["test"]
        tracker.metrics({"relative_change": t["relative_change"], "p_value": t["p_value"],
                         "p_holm": t["p_holm"], "ci95_low": t["ci95"][0], "ci95_high": t["ci95"][1],
                         "effect_size": t["effect_size"], "best_epoch": fit.best_epoch,
                         f"best_valid_{fit.valid_metric}": fit.best_valid, "train_seconds": fit.seconds,
                         "seconds_to_best": fit.seconds_to_best})
        tracker.metrics({f"probe_{k}": v for k, v in res.probe_stats.items()
                         if isinstance(v, int | float) and not isinstance(v, bool)})
        frames = [pd.DataFrame({"condition": name, "user": cond.users, **cond.per_user})
                  for name, cond in res.conditions.items()]
        tracker.table_artifact(pd.concat(frames, ignore_index=True), record.PER_USER)
        generated = [pd.DataFrame({"condition": name, "user": cond.users, "output": cond.outputs,
                                   "hr@1": cond.per_user["hr@1"], "hr@1_lenient": cond.per_user["hr@1_lenient"],
                                   "invalid": cond.per_user["invalid"]})
                     for name, cond in res.conditions.items() if cond.outputs is not None]
        if generated:  # the decoded titles, to read what the model answered
            tracker.table_artifact(pd.concat(generated, ignore_index=True), record.GENERATIONS)
        tracker.json_artifact({"run": {k: str(v) if isinstance(v, Path) else v
                                       for k, v in dataclasses.asdict(spec).items()},
                               "seed": seed, "model_config": config, "dataset_meta": data.meta},
                              record.CONFIG)
        tracker.json_artifact(dataclasses.asdict(fit), record.FIT)
        run_id = tracker.run_id
        tracker.json_artifact({**out, "mlflow_run_id": run_id}, record.RESULT)
    return run_id


def run(spec: RunSpec, console: Console | None = None) -> dict:
    """Run every (seed, probe) of ``spec``; returns {"runs": [...], "holm": bool, "seed_summary": {...}}."""
    console = console or Console(stderr=True)
    get_spec(spec.model)  # fail fast on unknown names, before any work
    probes = [get_probe(p) for p in spec.probes]
    validate_probe_options(probes, spec.probe_options)  # unknown keys or bad values fail before training
    check_task(spec.model, probes, spec.task)
    for protocol in spec.evals:
        check_protocol(protocol, spec.task)
    home = data_home(spec.data_home)
    data = ensure_dataset(spec.dataset, home, console)
    tuned = tuned_layer(home, data, spec.model) if is_tuned(spec.config_file) else None
    layers = model_layers(spec.model, spec.overrides, spec.config_file, data.meta.get("run_defaults"), spec.task,
                          spec.recipe, tuned)
    resolve(get_spec(spec.model).load_class().config_cls, *layers)  # bad settings fail before anything is logged
    device = resolve_device(spec.device)
    tracker = Tracker(spec.tracking_uri)
    store = ModelStore()
    runs: list[dict] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console) as progress, LiveCurves(tracker, data.name, spec.model) as live:
        for seed in spec.seeds:
            sp = seed_pass(spec, data, layers, seed, device, home, store, progress, live.add, live.finish)
            for res in sp.results:
                out = result_dict(data, spec.model, seed, res, sp.fit, spec.task, config_label(spec.config_file))
                out.update(reused=sp.reused, model_identity=sp.identity, **sp.recipe_fields)
                out["mlflow_run_id"] = log_result(tracker, spec, data, sp.config, seed, sp.fit, res, out, sp.steps,
                                                  {**record.reuse_tags(sp.reused, sp.identity), **sp.recipe_tags,
                                                   record.CONFIG_LAYER: out["config"]})
                runs.append(out)
    summary = {}
    if len(spec.seeds) > 1:
        metric = PRIMARY_METRIC[spec.task]
        for name, protocol in ((n, e) for e in spec.evals for n in spec.probes):
            rs = [r for r in runs if r["probe"] == name and r["eval"] == protocol]
            a, b = rs[0]["test"]["compare"]
            key = name if len(spec.evals) == 1 else f"{name} ({protocol})"
            summary[key] = aggregate_seeds([r["metrics"][a][metric] for r in rs],
                                            [r["metrics"][b][metric] for r in rs],
                                            [r["test"]["relative_change"] for r in rs],
                                            [r["test"]["p_value"] for r in rs]).as_dict() | {"probe": name}
    result = {"runs": runs, "holm": len(probes) > 1, "seed_summary": summary, "tracking": tracker.describe()}
    if spec.output:
        write_json_atomic(runs[0] if len(runs) == 1 else result, spec.output)
    return result
