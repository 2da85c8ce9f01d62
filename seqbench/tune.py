"""`seqbench tune`: one model on one dataset, tuned on validation data only with Ray Tune, the winner kept as the
``tuned`` config layer of that (model, dataset).

* A trial is the run planner's config (:func:`seqbench.planner.model_layers`) with the sampled values as the top
  layer; it trains through the runner's one training path (:func:`seqbench.runner.train_or_reuse`), so its model
  lands in the trained-model store and the winner is never trained twice.
* Every validation check of the shared training loop reaches Tune (``tune.report``), so ASHA stops weak trials
  at its rungs; Optuna's TPE, seeded, proposes the settings.
* The trials get :func:`seqbench.data.guard.validation_only` of the dataset: any read of the test split raises.
* ``<data home>/tuned/<dataset>/<model>/``: ``config.json`` (the winning layer), ``search.json`` (every
  trial), ``ray/<search id>/`` (Tune's experiment: the same command after a kill restores it, finished trials
  are not rerun).
* MLflow (written by the driver only): a parent run per tune, a child run per trial with its sampled settings and
  its validation curve.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console

from seqbench import record
from seqbench.atomic import write_json_atomic
from seqbench.config import search_space
from seqbench.context import resolve_device
from seqbench.data.guard import validation_only
from seqbench.data.store import data_home, load_dataset
from seqbench.errors import SeqbenchError
from seqbench.eval.evaluator import PRIMARY_METRIC
from seqbench.models import get_spec
from seqbench.models.store import ModelStore
from seqbench.planner import ensure_dataset, model_layers, planned_identity, resolved_config, tuned_dir
from seqbench.space import Space
from seqbench.sweep import device_for, start_ray, threads_for
from seqbench.tracking import Tracker, code_version

SCORE = "score"  # the validation metric of a check, as reported to Tune (maximised)
STEP = "step"  # the check's epoch (or step, for step-cadence models)
REDUCTION_FACTOR = 3  # ASHA keeps the best third of the trials at each rung


@dataclass
class TuneSpec:
    model: str
    dataset: str | None = None
    trials: int = 20
    budget_minutes: float | None = None
    seed: int = 0  # the training seed of every trial and the searcher's seed
    spaces: dict[str, Space] = field(default_factory=dict)  # overrides of the declared spaces
    overrides: dict[str, str] = field(default_factory=dict)  # --set: fixed settings under the sampled ones
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    tracking_uri: str | None = None
    data_home: Path | None = None
    grace_checks: int = 1  # validation checks every trial gets before ASHA may stop it


@dataclass
class TuneReport:
    best_layer: dict[str, Any]
    best_score: float
    best_identity: str
    best_stored: bool
    trials: list[dict[str, Any]]
    folder: Path
    resumed: bool
    parent_run_id: str | None
    seconds: float


def _space_key(space: dict[str, Space]) -> dict[str, str]:
    return {k: str(v) for k, v in sorted(space.items())}


def search_id(spec: TuneSpec, space: dict[str, Space], base: dict[str, Any], dataset_hash: str) -> str:
    """Same search, same id: rerunning the command restores that Tune experiment instead of starting another."""
    desc = {"model": spec.model, "dataset": dataset_hash, "trials": spec.trials, "seed": spec.seed,
            "space": _space_key(space), "base": base, "grace": spec.grace_checks, "code": code_version()}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def max_checks(config: dict[str, Any]) -> int:
    """The most validation checks a trial can report (epoch-cadence models). ASHA's ``max_t`` is one more: a
    trial that reaches its last check must end on its own, so its trained model reaches the store (at ``max_t``
    Tune would stop it between that check and the store's write)."""
    epochs, every = config.get("max_epochs"), config.get("eval_every")
    if isinstance(epochs, int) and isinstance(every, int) and every > 0:
        return max(1, math.ceil(epochs / every))
    return 100


def _trial(sampled: dict[str, Any], *, model: str, dataset: str, home: str, store_root: str,
           base_layers: list[dict[str, Any]], seed: int, metric: str) -> None:
    """One Ray Tune trial: the planned config with ``sampled`` on top, trained on the validation-only dataset;
    every validation check goes to Tune."""
    import ray
    import torch
    from ray import tune

    from seqbench.runner import train_or_reuse

    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(threads_for(assigned))
    device = resolve_device(device_for(assigned))
    data = validation_only(load_dataset(dataset, Path(home)))
    node = ray.get_runtime_context().get_node_id()
    layers = [*base_layers, dict(sampled)]
    reported = []

    def on_metric(ident: str, name: str, value: float, step: int) -> None:
        if name == f"valid_{metric}":
            reported.append(step)
            tune.report({SCORE: float(value), STEP: int(step), record.NODE: node})

    got, _ = train_or_reuse(model, layers, data, data.histories("train"), seed, device,
                            ModelStore(Path(store_root)), on_metric)
    if not reported:  # taken from the store: its curve stands in for the checks
        for epoch, _loss, valid in got.fit.curve:
            if valid is not None:
                tune.report({SCORE: float(valid), STEP: int(epoch), record.NODE: node})


class _Progress(Callback):
    """Prints trials done / running / failed and the best validation score so far, as trials report."""

    def __init__(self, total: int):
        self.total = total
        self.best: float | None = None

    def _line(self, trials: list, note: str) -> None:
        done = sum(t.status == "TERMINATED" for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        errors = sum(t.status == "ERROR" for t in trials)
        best = "-" if self.best is None else f"{self.best:.4f}"
        Console(stderr=True).print(f"[dim]tune: {done}/{self.total} ended (run out or stopped early), {running} "
                                   f"running, {errors} failed; best valid {best} ({note})[/dim]", highlight=False)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        score = result.get(SCORE)
        if score is not None and (self.best is None or score > self.best):
            self.best = float(score)
            self._line(trials, f"new best: trial {trial.trial_id} at step {result.get(STEP)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trials, f"trial {trial.trial_id} ended")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trials, f"trial {trial.trial_id} failed")


def run_tune(spec: TuneSpec, console: Console | None = None) -> TuneReport:
    """Tune ``spec.model`` on ``spec.dataset`` (see the module docstring); returns the winner and every trial."""
    start = time.perf_counter()
    console = console or Console(stderr=True)
    model_spec = get_spec(spec.model)
    if spec.trials < 1:
        raise SeqbenchError(f"--trials must be at least 1, got {spec.trials}")
    home = data_home(spec.data_home).resolve()
    data = ensure_dataset(spec.dataset, home, console)
    cfg_cls = model_spec.load_class().config_cls
    fixed = sorted(set(spec.spaces) & set(spec.overrides))
    if fixed:
        raise SeqbenchError(f"'{fixed[0]}' has both --set (fixed) and --space (sampled); give one")
    # a setting fixed with --set is not sampled
    space = {k: v for k, v in search_space(cfg_cls, spec.spaces).items() if k not in spec.overrides}
    if not space:
        raise SeqbenchError(f"{spec.model} declares no search space; give one with --space key=SPEC "
                            "(e.g. lr=loguniform(1e-4,1e-2))")
    layers = model_layers(spec.model, spec.overrides, None, data.meta.get("run_defaults"))
    base = resolved_config(spec.model, layers)  # fixed settings that are wrong fail before Ray starts
    metric = PRIMARY_METRIC["generation" if base.get("task") == "generation" else "retrieval"]
    sid = search_id(spec, space, base, data.content_hash)
    folder = tuned_dir(home, data.name, spec.model)
    ray_root = folder / "ray"
    store = ModelStore()
    store_root = store.root.resolve()

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    start_ray(spec.address)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, model=spec.model, dataset=data.name, home=str(home), store_root=str(store_root),
                             base_layers=layers, seed=spec.seed, metric=metric),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    experiment = ray_root / sid
    resumed = tune.Tuner.can_restore(str(experiment))
    if resumed:
        console.print(f"[dim]resuming the tune in {experiment} (finished trials are kept)[/dim]")
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
    else:
        checks = max_checks(base)
        tuner = tune.Tuner(
            trainable,
            param_space={k: v.to_tune() for k, v in space.items()},
            tune_config=tune.TuneConfig(
                metric=SCORE, mode="max", num_samples=spec.trials,
                search_alg=OptunaSearch(seed=spec.seed),
                scheduler=ASHAScheduler(max_t=checks + 1, grace_period=min(spec.grace_checks, checks),
                                        reduction_factor=REDUCTION_FACTOR),
                max_concurrent_trials=spec.max_concurrent,
                time_budget_s=spec.budget_minutes * 60 if spec.budget_minutes else None),
            run_config=tune.RunConfig(name=sid, storage_path=str(ray_root), verbose=0,
                                      callbacks=[_Progress(spec.trials)]),
        )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables off (verbose=0): the progress lines say it
    fit_start = time.monotonic()
    results = tuner.fit()
    ended = results.num_terminated + results.num_errors
    budget_over = spec.budget_minutes is not None and time.monotonic() - fit_start >= spec.budget_minutes * 60
    if ended < spec.trials and not budget_over:  # Ctrl-C / SIGTERM: Tune saved its state and returned early
        raise SeqbenchError(f"the tune stopped with {ended} of {spec.trials} trials ended; run the same command "
                            f"again to resume it ({experiment})")
    trials = []
    for res in results:
        if res.config is None:  # a trial that never started
            continue
        sampled = {k: res.config[k] for k in space if k in res.config}
        ident = planned_identity(spec.model, [*layers, sampled], validation_only(data), spec.seed, code_version())
        frame = res.metrics_dataframe
        curve = [] if frame is None or SCORE not in frame else \
            [(int(s), float(v)) for s, v in zip(frame[STEP], frame[SCORE], strict=True)]
        status = "error" if res.error else "finished" if store.has(ident) else "stopped"
        trial_id = (res.metrics or {}).get("trial_id") or Path(res.path).name
        trials.append({"trial_id": str(trial_id), "config": sampled,
                       "status": status, "best": max((v for _, v in curve), default=None), "checks": len(curve),
                       "curve": curve, "identity": ident})
    scored = [t for t in trials if t["best"] is not None]
    if not scored:
        raise SeqbenchError(f"no trial of the tune in {experiment} reported a validation score (all failed?)")
    best = max(scored, key=lambda t: t["best"])
    layer = {**spec.overrides, **best["config"]}
    report = TuneReport(layer, best["best"], best["identity"], store.has(best["identity"]), trials, folder, resumed,
                        None, 0.0)
    search = {"search_id": sid, "model": spec.model, "dataset": data.name, "dataset_hash": data.content_hash,
              "seed": spec.seed, "trials": spec.trials, "budget_minutes": spec.budget_minutes,
              "space": _space_key(space), "fixed": spec.overrides, "valid_metric": metric,
              "scheduler": {"name": "ASHA", "max_t": max_checks(base) + 1, "grace_period": spec.grace_checks,
                            "reduction_factor": REDUCTION_FACTOR, "time_attr": "validation checks"},
              "searcher": {"name": "Optuna TPE", "seed": spec.seed}, "code_version": code_version(),
              "best": {"trial_id": best["trial_id"], "layer": layer, "valid": best["best"],
                       "identity": best["identity"], "stored": report.best_stored},
              "results": trials, "experiment": str(experiment)}
    write_json_atomic(search, folder / "search.json")
    write_json_atomic({"model": spec.model, "dataset": data.name, "dataset_hash": data.content_hash, "layer": layer,
                       "valid_metric": metric, "best_valid": best["best"], "seed": spec.seed,
                       "identity": best["identity"], "search_id": sid, "tuned_at": time.time()},
                      folder / "config.json")
    report.parent_run_id = _log(spec, data.name, data.content_hash, sid, search, trials)
    report.seconds = time.perf_counter() - start
    return report


def _log(spec: TuneSpec, dataset: str, dataset_hash: str, sid: str, search: dict, trials: list[dict]) -> str:
    """The parent run (found again by ``tune_id`` on a resumed tune) and one child run per trial not yet logged."""
    tracker = Tracker(spec.tracking_uri)
    client = tracker.mlflow.MlflowClient()
    exp = client.get_experiment_by_name(tracker.experiment).experiment_id
    found = client.search_runs([exp], record.filter_string(tune_id=sid, run_kind=record.TUNE_RUN))
    if found:
        parent = found[0].info.run_id
    else:
        parent = client.create_run(exp, run_name=f"tune/{dataset}/{spec.model}",
                                   tags=record.tune_tags(sid, dataset, spec.model, dataset_hash)).info.run_id
        for key, value in {"model": spec.model, "dataset": dataset, "trials": spec.trials, "seed": spec.seed,
                           **{f"space.{k}": v for k, v in search["space"].items()}}.items():
            client.log_param(parent, key, str(value))
    logged = {r.data.tags.get("trial_id") for r in
              client.search_runs([exp], record.filter_string(tune_id=sid, run_kind=record.TRIAL_RUN))}
    from mlflow.entities import Metric, Param

    for t in trials:
        if str(t["trial_id"]) in logged:
            continue
        run = client.create_run(exp, run_name=f"trial/{t['trial_id']}",
                                tags=record.trial_tags(sid, str(t["trial_id"]), parent, t["identity"], t["status"]))
        now = int(time.time() * 1000)
        key = f"valid_{search['valid_metric']}".replace("@", "_at_")
        client.log_batch(run.info.run_id,
                         metrics=[Metric(key, v, now, s) for s, v in t["curve"]],
                         params=[Param(f"{record.MODEL_CONFIG}{k}", str(v)) for k, v in t["config"].items()])
        client.set_terminated(run.info.run_id, "FAILED" if t["status"] == "error" else "FINISHED")
    client.log_dict(parent, search, record.SEARCH)
    client.log_metric(parent, "best_valid", float(search["best"]["valid"]))
    client.set_terminated(parent, "FINISHED")
    return parent
