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
  are not rerun; ASHA's rungs are kept with it, see :class:`_SchedulerState`).
* A winner ASHA stopped early is trained to its end after the search (:func:`_complete`), so its model is in the
  store for ``run --config tuned``.
* MLflow (written by the driver only): a parent run per tune, a child run per trial with its sampled settings and
  its validation curve.
"""

from __future__ import annotations

import copy
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
from seqbench.sweep import HPU, device_for, start_ray, threads_for
from seqbench.tracking import Tracker, code_version
from seqbench.train.loop import saved_checks

SCORE = "score"  # the validation metric of a check, as reported to Tune (maximised)
STEP = "step"  # the check's epoch (or step, for step-cadence models)
REDUCTION_FACTOR = 3  # ASHA keeps the best third of the trials at each rung
SCHEDULERS = ("asha", "fifo")  # asha: stop weak trials early; fifo: every trial runs to its end (a baseline)
SNAPSHOT_S = "1"  # Tune saves its experiment state at most this often (its default, 10 s+, loses more to a kill)


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
    hpus_per_trial: int = 0  # Intel Gaudi cards (Ray's HPU resource), whole cards only
    max_concurrent: int | None = None
    address: str | None = None
    tracking_uri: str | None = None
    data_home: Path | None = None
    grace_checks: int = 1  # validation checks every trial gets before ASHA may stop it
    scheduler: str = "asha"  # one of SCHEDULERS
    first_configs: list[dict[str, Any]] = field(default_factory=list)  # evaluated first (Optuna's enqueued points)
    defaults_first: bool = True  # without first_configs: the first trial is the model's defaults (its space's keys)


@dataclass
class TuneReport:
    best_layer: dict[str, Any]
    best_score: float
    best_identity: str
    best_stored: bool
    trials: list[dict[str, Any]]
    completed: dict[str, Any] | None  # the winner trained to its end after ASHA stopped it (None: not needed)
    folder: Path
    resumed: bool
    parent_run_id: str | None
    seconds: float


def _space_key(space: dict[str, Space]) -> dict[str, str]:
    return {k: str(v) for k, v in sorted(space.items())}


def first_configs(spec: TuneSpec, space: dict[str, Space], base: dict[str, Any]) -> list[dict[str, Any]]:
    """The configs evaluated before the searcher proposes: ``spec.first_configs``, else (``defaults_first``) the
    model's own values of the sampled settings, so the winner is never one the defaults beat on validation. A
    default outside its space is left to the searcher (its trial samples that key)."""
    if spec.first_configs or not spec.defaults_first:
        return list(spec.first_configs)
    defaults = {k: base[k] for k, s in space.items() if k in base and s.contains(base[k])}
    return [defaults] if defaults else []


def search_id(spec: TuneSpec, space: dict[str, Space], base: dict[str, Any], dataset_hash: str,
              first: list[dict[str, Any]]) -> str:
    """Same search, same id: rerunning the command restores that Tune experiment instead of starting another."""
    desc = {"model": spec.model, "dataset": dataset_hash, "trials": spec.trials, "seed": spec.seed,
            "space": _space_key(space), "base": base, "grace": spec.grace_checks, "code": code_version(),
            "scheduler": spec.scheduler, "first": first}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def max_checks(config: dict[str, Any]) -> int:
    """The most validation checks a trial can report (epoch-cadence models). ASHA's ``max_t`` is one more: a
    trial that reaches its last check must end on its own, so its trained model reaches the store (at ``max_t``
    Tune would stop it between that check and the store's write)."""
    epochs, every = config.get("max_epochs"), config.get("eval_every")
    if isinstance(epochs, int) and isinstance(every, int) and every > 0:
        return max(1, math.ceil(epochs / every))
    return 100


def trial_resources(spec: TuneSpec) -> dict[str, float]:
    """A trial's Ray resources: CPUs (also its torch threads), GPUs, and Gaudi cards as Ray's ``HPU`` resource
    (a trial's device follows its grant: ``device_for``)."""
    return {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial,
            **({HPU: spec.hpus_per_trial} if spec.hpus_per_trial else {})}


def _trial(sampled: dict[str, Any], *, model: str, dataset: str, home: str, store_root: str,
           base_layers: list[dict[str, Any]], seed: int, metric: str, code: str) -> None:
    """One Ray Tune trial: the planned config with ``sampled`` on top, trained on the validation-only dataset;
    every validation check goes to Tune. ``code``: the driver's code version (a commit during the tune must not
    give later trials other identities than the driver computes)."""
    import ray
    from ray import tune

    from seqbench.runner import train_or_reuse

    device, data, store = _worker(dataset, home, store_root)
    context = ray.get_runtime_context()  # where the trial runs: every report carries it, for the trial's run
    placed = record.placement_tags(context.get_node_id(), str(device), context.get_assigned_resources())
    layers = [*base_layers, dict(sampled)]
    ident = planned_identity(model, layers, data, seed, code)
    # Tune restarts a resumed trial's count of reports from zero (its iteration is ASHA's time): a fit that
    # resumes its checkpoint first reports the checks it skips, as a model taken from the store reports its curve
    if not store.has(ident):
        for step, value in saved_checks(store.checkpointer(ident)):
            tune.report({SCORE: value, STEP: step, **placed})

    def on_metric(ident: str, name: str, value: float, step: int) -> None:
        if name == f"valid_{metric}":
            tune.report({SCORE: float(value), STEP: int(step), **placed})

    got, _ = train_or_reuse(model, layers, data, data.histories("train"), seed, device, store, on_metric, code=code)
    if got.reused:  # taken from the store: its curve stands in for the checks
        for epoch, _loss, valid in got.fit.curve:
            if valid is not None:
                tune.report({SCORE: float(valid), STEP: int(epoch), **placed})


def _worker(dataset: str, home: str, store_root: str) -> tuple[Any, Any, ModelStore]:
    """A Ray worker's device and torch threads from its grant, the validation-only dataset and the store."""
    import ray
    import torch

    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(threads_for(assigned))
    device = resolve_device(device_for(assigned))
    return device, validation_only(load_dataset(dataset, Path(home))), ModelStore(Path(store_root))


def _complete(sampled: dict[str, Any], *, model: str, dataset: str, home: str, store_root: str,
              base_layers: list[dict[str, Any]], seed: int, code: str) -> dict[str, Any]:
    """The winner's training to its end (a Ray task with a trial's resources), when ASHA stopped it: the same
    training path as a trial, so it resumes the checkpoint the stopped trial left and its model is stored."""
    from seqbench.runner import train_or_reuse

    device, data, store = _worker(dataset, home, store_root)
    layers = [*base_layers, dict(sampled)]
    ident = planned_identity(model, layers, data, seed, code)
    resumed = saved_checks(store.checkpointer(ident))
    got, _ = train_or_reuse(model, layers, data, data.histories("train"), seed, device, store, code=code)
    return {"identity": got.identity, "final_valid": float(got.fit.best_valid), "best_epoch": got.fit.best_epoch,
            "epochs_run": got.fit.epochs_run, "resumed_from_check": len(resumed), "reused": got.reused}


class _SchedulerState(Callback):
    """Keeps the scheduler's state (ASHA's rungs) in Tune's experiment snapshot. Tune saves the searcher's and
    the callbacks' state there but not the scheduler's, so a restored ASHA would start with empty rungs and
    judge the remaining trials otherwise than an uninterrupted tune. The callback and the scheduler are pickled
    together in the experiment's ``tuner.pkl``, so after a restore this still holds the controller's scheduler."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return {"scheduler": copy.deepcopy(self.scheduler.__dict__)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.__dict__.update(state["scheduler"])


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
    if spec.scheduler not in SCHEDULERS:
        raise SeqbenchError(f"unknown --scheduler '{spec.scheduler}'; use {' or '.join(SCHEDULERS)}")
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
    first = first_configs(spec, space, base)
    sid = search_id(spec, space, base, data.content_hash, first)
    folder = tuned_dir(home, data.name, spec.model)
    ray_root = folder / "ray"
    store = ModelStore()
    store_root = store.root.resolve()

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    start_ray(spec.address)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, model=spec.model, dataset=data.name, home=str(home), store_root=str(store_root),
                             base_layers=layers, seed=spec.seed, metric=metric, code=code_version()),
        trial_resources(spec))
    experiment = ray_root / sid
    resumed = tune.Tuner.can_restore(str(experiment))
    checks = max_checks(base)
    if resumed:
        # ended trials (run out or stopped by ASHA: both TERMINATED) are kept; unfinished and failed ones run again
        console.print(f"[dim]resuming the tune in {experiment} (finished trials are kept)[/dim]")
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = FIFOScheduler() if spec.scheduler == "fifo" else \
            ASHAScheduler(max_t=checks + 1, grace_period=min(spec.grace_checks, checks),
                          reduction_factor=REDUCTION_FACTOR)
        tuner = tune.Tuner(
            trainable,
            param_space={k: v.to_tune() for k, v in space.items()},
            tune_config=tune.TuneConfig(
                metric=SCORE, mode="max", num_samples=spec.trials,
                search_alg=OptunaSearch(seed=spec.seed, points_to_evaluate=first or None),
                scheduler=scheduler,
                max_concurrent_trials=spec.max_concurrent,
                time_budget_s=spec.budget_minutes * 60 if spec.budget_minutes else None),
            run_config=tune.RunConfig(name=sid, storage_path=str(ray_root), verbose=0,
                                      callbacks=[_Progress(spec.trials), _SchedulerState(scheduler)]),
        )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables off (verbose=0): the progress lines say it
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", SNAPSHOT_S)
    fit_start = time.monotonic()
    results = tuner.fit()
    ended = results.num_terminated + results.num_errors
    budget_over = spec.budget_minutes is not None and time.monotonic() - fit_start >= spec.budget_minutes * 60
    if ended < spec.trials and not budget_over:  # Ctrl-C / SIGTERM: Tune saved its state and returned early
        # (Tune marks the trials it interrupts as ended in its results, not in its saved state: no count here)
        raise SeqbenchError(f"the tune stopped before its {spec.trials} trials ended; run the same command again to "
                            f"resume it ({experiment})")
    trials = []
    seen = validation_only(data)  # what the trials trained on (its identity is the full dataset's)
    for res in results:
        if res.config is None:  # a trial that never started
            continue
        sampled = {k: res.config[k] for k in space if k in res.config}
        ident = planned_identity(spec.model, [*layers, sampled], seen, spec.seed, code_version())
        frame = res.metrics_dataframe
        # a resumed trial reports its checks again: one point per step, the last one reported
        curve = [] if frame is None or SCORE not in frame else \
            sorted({int(s): float(v) for s, v in zip(frame[STEP], frame[SCORE], strict=True)}.items())
        status = "error" if res.error else "finished" if store.has(ident) else "stopped"
        metrics = res.metrics or {}
        trial_id = metrics.get("trial_id") or Path(res.path).name
        trials.append({"trial_id": str(trial_id), "config": sampled,
                       "status": status, "best": max((v for _, v in curve), default=None), "checks": len(curve),
                       "curve": curve, "identity": ident,
                       "placement": {k: str(metrics[k]) for k in record.PLACEMENT if k in metrics}})
    scored = [t for t in trials if t["best"] is not None]
    if not scored:
        raise SeqbenchError(f"no trial of the tune in {experiment} reported a validation score (all failed?)")
    best = max(scored, key=lambda t: t["best"])
    layer = {**spec.overrides, **best["config"]}
    completed = _completed_before(folder / "search.json", sid, best["identity"])
    if not store.has(best["identity"]):
        completed = _finish_winner(spec, best, layers, data.name, home, store_root, console)
    report = TuneReport(layer, best["best"], best["identity"], store.has(best["identity"]), trials, completed,
                        folder, resumed, None, 0.0)
    search = {"search_id": sid, "model": spec.model, "dataset": data.name, "dataset_hash": data.content_hash,
              "seed": spec.seed, "trials": spec.trials, "budget_minutes": spec.budget_minutes,
              "space": _space_key(space), "fixed": spec.overrides, "valid_metric": metric,
              "scheduler": {"name": "FIFO"} if spec.scheduler == "fifo" else
              {"name": "ASHA", "max_t": checks + 1, "grace_period": spec.grace_checks,
               "reduction_factor": REDUCTION_FACTOR, "time_attr": "validation checks"},
              "searcher": {"name": "Optuna TPE", "seed": spec.seed, "first": first}, "code_version": code_version(),
              "best": {"trial_id": best["trial_id"], "layer": layer, "valid": best["best"],
                       "identity": best["identity"], "stored": report.best_stored, "completed": completed},
              "results": trials, "experiment": str(experiment)}
    write_json_atomic(search, folder / "search.json")
    write_json_atomic({"model": spec.model, "dataset": data.name, "dataset_hash": data.content_hash, "layer": layer,
                       "valid_metric": metric, "best_valid": best["best"], "seed": spec.seed,
                       "identity": best["identity"], "search_id": sid, "tuned_at": time.time(),
                       "completed": completed},
                      folder / "config.json")
    report.parent_run_id = _log(spec, data.name, data.content_hash, sid, search, trials)
    report.seconds = time.perf_counter() - start
    return report


def ended_trials(experiment: Path) -> dict[str, str]:
    """Trial id -> status in Tune's last snapshot of the experiment (``experiment_state-*.json``; empty before the
    first): what a restore starts from. TERMINATED (ran out or stopped by ASHA) and ERROR trials are ended."""
    states = sorted(Path(experiment).glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    try:
        saved = json.loads(states[-1].read_text())
    except (OSError, json.JSONDecodeError):  # being replaced right now
        return {}
    trials = (json.loads(state) for state, _meta in saved["trial_data"])
    return {t["trial_id"]: t["status"] for t in trials if t["status"] in ("TERMINATED", "ERROR")}


def _completed_before(path: Path, sid: str, ident: str) -> dict[str, Any] | None:
    """What an earlier end of this search recorded of completing this winner (a rerun finds its model stored)."""
    if not path.is_file():
        return None
    before = json.loads(path.read_text())
    best = before.get("best") or {}
    return best.get("completed") if before.get("search_id") == sid and best.get("identity") == ident else None


def _finish_winner(spec: TuneSpec, best: dict[str, Any], layers: list[dict[str, Any]], dataset: str, home: Path,
                   store_root: Path, console: Console) -> dict[str, Any]:
    """Train the winner ASHA stopped to its end, in one Ray task with a trial's resources (:func:`_complete`).
    The winner stays the one the search chose by its best score; its final validation score is recorded beside."""
    import ray

    console.print(f"[dim]tune: the winner's model (trial {best['trial_id']}, {best['status']}) is not stored; "
                  "training it to its end[/dim]")
    asked = trial_resources(spec)  # the same resources as its trial, in ray.remote's terms
    task = ray.remote(num_cpus=asked.pop("cpu"), num_gpus=asked.pop("gpu"), resources=asked or None)(_complete)
    done = ray.get(task.remote(best["config"], model=spec.model, dataset=dataset, home=str(home),
                               store_root=str(store_root), base_layers=layers, seed=spec.seed, code=code_version()))
    if done["identity"] != best["identity"]:
        raise SeqbenchError(f"the completed winner has identity {done['identity']}, the trial {best['identity']}")
    return {"trial_status": best["status"], "chosen_valid": best["best"], "final_valid": done["final_valid"],
            "best_epoch": done["best_epoch"], "epochs_run": done["epochs_run"],
            "resumed_from_check": done["resumed_from_check"]}


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
                                tags=record.trial_tags(sid, str(t["trial_id"]), parent, t["identity"], t["status"],
                                                       t.get("placement")))
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
