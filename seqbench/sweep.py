"""`seqbench sweep GRID.yaml`: datasets x models x seeds x probes on Ray workers, resumable, tracked once.

* One Ray task per (dataset, model, seed) trains the model (or takes it from the trained-model store) and
  runs all of that model's probes on it, so training is shared between probes.
* A result's identity is (trained-model identity, probe, probe options). Before submitting anything the driver
  reads which results the sweep's experiment already holds (finished child runs tagged ``result_id``); a
  task whose points are all there is not submitted. Runs a killed driver left unfinished are deleted and
  redone, so a rerun completes only what is missing and nothing is logged twice.
* Every MLflow write goes through the driver (tasks return results; live training metrics reach the driver
  through a Ray queue). One writer means the sqlite store never sees concurrent writers ("database is
  locked") and a result is logged exactly once; a shared ``mlflow server`` works the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from seqbench import record
from seqbench.config import load_config_file, search_space
from seqbench.context import resolve_device
from seqbench.data.dataset import SeqDataset
from seqbench.data.embedded import on_demand
from seqbench.data.store import data_home, list_datasets
from seqbench.errors import SeqbenchError, UnknownNameError
from seqbench.eval.evaluator import check_protocol
from seqbench.models import MODELS, get_spec
from seqbench.models.store import ModelStore
from seqbench.planner import (
    CONFIG_LAYERS,
    DEFAULT,
    ensure_dataset,
    is_tuned,
    model_config_layers,
    model_layers,
    planned_identity,
    recipe_layer,
    resolved_config,
    tuned_layer,
)
from seqbench.probes import PROBES, get_probe, validate_probe_options
from seqbench.runner import RunSpec, SeedPass, log_result, result_dict, seed_pass
from seqbench.space import Space
from seqbench.space import parse as parse_space
from seqbench.tracking import Tracker, code_version
from seqbench.tracking_live import LiveCurves

GRID_KEYS = {"experiment", "datasets", "models", "probes", "seeds", "set", "probe_set", "eval", "views",
             "proxies_in_verdict", "recipe", "config", "space", "tune", "versus"}
# a study's ``tune`` table: the budget `seqbench tune --study` gives every (model, dataset), as TuneSpec fields
TUNE_KEYS: dict[str, type] = {"trials": int, "seed": int, "max_concurrent": int, "cpus_per_trial": float,
                              "gpus_per_trial": float, "hpus_per_trial": int, "budget_minutes": float,
                              "grace_checks": int, "defaults_first": bool}
STUDIES = Path("studies")  # `--study NAME` means studies/NAME.yaml under the working directory
ACCELERATORS = ("cpu", "gpu", "hpu")
HPU = "HPU"  # Ray's resource of Intel Gaudi cards (whole cards only; docs/gaudi.md)
LOCAL_RAY = "local"  # ray.init's address for "start a new local instance"
# A node's environment may name the torch device of the Ray tasks and Tune trials that run on it, whatever Ray
# granted; Ray still places them by the resources they ask for. The simulated-cluster test (tests/test_cluster.py)
# advertises a GPU that is not there and sets it to cpu on that node.
DEVICE_ENV = "SEQBENCH_DEVICE"


@dataclass(frozen=True)
class Grid:
    experiment: str
    datasets: list[str]
    models: list[str]
    probes: list[str]
    seeds: list[int]
    # per-model config overrides: set.<model> is one table, or a list of tables (one config row each);
    # set.<model>@<dataset> is one table over each of them on that dataset (:func:`set_rows`)
    sets: dict[str, dict[str, Any] | list[dict[str, Any]]] = field(default_factory=dict)
    # options for every probe (as --probe-set); a study may give a list of tables: each probe then runs once per
    # distinct set of the options it reads
    probe_sets: list[dict[str, str]] = field(default_factory=lambda: [{}])
    evals: list[str] = field(default_factory=lambda: ["sampled"])  # ranking protocols (as --eval)
    views: list[str] = field(default_factory=list)  # what `seqbench report --study` shows (empty: every view)
    proxies_in_verdict: bool = False  # the paper-pattern view counts rows trained with a non-official recipe
    recipe: str | None = None  # a named training recipe for the LLM models (under `set`)
    # config layers, each a row of every (model, dataset): default (none) and/or tuned (`seqbench tune`'s winner,
    # under `set`)
    config: list[str] = field(default_factory=lambda: [DEFAULT])
    spaces: dict[str, dict[str, Space]] = field(default_factory=dict)  # per-model search spaces (`tune --study`)
    tune: dict[str, Any] = field(default_factory=dict)  # the budget of `tune --study` (TUNE_KEYS)
    versus: str | None = None  # the overall view tests every model against this one (default: the best CF model)

    @property
    def sweep_id(self) -> str:
        """Same grid, same id: a rerun continues the same MLflow parent run."""
        keys = ["experiment", "datasets", "models", "probes", "seeds", "sets"]
        if self.evals != ["sampled"]:  # grids written before protocols existed keep their id
            keys.append("evals")
        fields = {k: getattr(self, k) for k in keys}
        fields["probe_set"] = self.probe_sets[0] if len(self.probe_sets) == 1 else self.probe_sets
        if self.recipe is not None:
            fields["recipe"] = self.recipe
        if self.config != [DEFAULT]:  # grids without it keep their id; `config: tuned` keeps its own
            fields["config"] = self.config[0] if len(self.config) == 1 else self.config
        desc = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(desc.encode()).hexdigest()[:16]


def _names(raw: dict, key: str, path: Path, kind: type = str) -> list:
    value = raw.get(key)
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool)
                                                          for v in value):
        raise SeqbenchError(f"{path}: '{key}' must be a non-empty list of {kind.__name__}s, got {value!r}")
    return value


RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_ranges(name: str) -> list[str]:
    """``syn-order0-u1000-i300-s{0..19}`` -> the 20 names with s0 … s19 (each ``{a..b}``, inclusive)."""
    m = RANGE.search(name)
    if m is None:
        return [name]
    lo, hi = int(m[1]), int(m[2])
    if hi < lo:
        raise SeqbenchError(f"empty range '{m[0]}' in '{name}'")
    return [n for i in range(lo, hi + 1) for n in expand_ranges(name[:m.start()] + str(i) + name[m.end():])]


def load_grid(path: Path) -> Grid:
    """Read and check a grid file (YAML, TOML or JSON); every error names the file and the key."""
    path = Path(path)
    raw = load_config_file(path)
    if not isinstance(raw, dict):
        raise SeqbenchError(f"{path}: a grid file must be a mapping of {', '.join(sorted(GRID_KEYS))}")
    unknown = sorted(set(raw) - GRID_KEYS)
    if unknown:
        raise SeqbenchError(f"{path}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(GRID_KEYS))}")
    models, probes = _names(raw, "models", path), _names(raw, "probes", path)
    for m in models:
        if m not in MODELS:
            raise UnknownNameError("model", m, list(MODELS))
    for p in probes:
        if p not in PROBES:
            raise UnknownNameError("probe", p, list(PROBES))
    recipe = raw.get("recipe")
    if recipe is not None:
        try:
            recipe_layer(models[0], str(recipe))
        except SeqbenchError as e:
            raise type(e)(f"{path}: 'recipe': {e}") from e
    probe_sets = raw.get("probe_set") or {}
    probe_sets = probe_sets if isinstance(probe_sets, list) else [probe_sets]
    if not probe_sets or not all(isinstance(t, dict) for t in probe_sets):
        raise SeqbenchError(f"{path}: 'probe_set' must be a table of key = value, or a list of such tables, got "
                            f"{raw.get('probe_set')!r}")
    probe_sets = [{k: str(v) for k, v in t.items()} for t in probe_sets]
    for table in probe_sets:
        try:  # unknown keys or bad values fail before anything runs, as in `seqbench run`
            validate_probe_options([get_probe(p) for p in probes], table)
        except SeqbenchError as e:
            raise type(e)(f"{path}: 'probe_set': {e}") from e
    evals = _names(raw, "eval", path) if "eval" in raw else ["sampled"]
    for protocol in evals:
        try:
            check_protocol(protocol)
        except SeqbenchError as e:
            raise type(e)(f"{path}: 'eval': {e}") from e
    experiment = raw.get("experiment", "seqbench")
    if not isinstance(experiment, str) or not experiment:
        raise SeqbenchError(f"{path}: 'experiment' must be a non-empty string, got {experiment!r}")
    try:
        datasets = [n for d in _names(raw, "datasets", path) for n in expand_ranges(d)]
    except SeqbenchError as e:
        raise SeqbenchError(f"{path}: 'datasets': {e}") from e
    views = _names(raw, "views", path) if "views" in raw else []
    proxies = raw.get("proxies_in_verdict", False)
    if not isinstance(proxies, bool):
        raise SeqbenchError(f"{path}: 'proxies_in_verdict' must be true or false, got {proxies!r}")
    spaces = _spaces(raw.get("space") or {}, models, path)
    config = config_layers(_names(raw, "config", path), str(path)) if "config" in raw else [DEFAULT]
    versus = raw.get("versus")
    if versus is not None and versus not in models:
        raise SeqbenchError(f"{path}: 'versus' must name one of the study's models ({', '.join(models)}), got "
                            f"{versus!r}")
    return Grid(experiment, datasets, models, probes, _names(raw, "seeds", path, int),
                _sets(raw.get("set") or {}, models, datasets, path), probe_sets, evals, views,
                proxies, None if recipe is None else str(recipe), config, spaces, _tune(raw.get("tune"), path), versus)


def config_layers(names: list[str], where: str) -> list[str]:
    """A study's ``config`` (or ``sweep --config``): config layers, each once."""
    for name in names:
        if name not in CONFIG_LAYERS:
            raise SeqbenchError(f"{where}: 'config' names config layers ({', '.join(CONFIG_LAYERS)}), got {name!r}")
    if len(set(names)) < len(names):
        raise SeqbenchError(f"{where}: 'config' names a layer twice: {names}")
    return list(names)


def _tune(raw: Any, path: Path) -> dict[str, Any]:
    """A study's ``tune`` table (``docs/tuning.md``): the same budget for every (model, dataset)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SeqbenchError(f"{path}: 'tune' must be a table of {', '.join(TUNE_KEYS)}, got {raw!r}")
    out = {}
    for key, value in raw.items():
        if key not in TUNE_KEYS:
            raise SeqbenchError(f"{path}: unknown key 'tune.{key}'; valid keys: {', '.join(TUNE_KEYS)}")
        kind = TUNE_KEYS[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise SeqbenchError(f"{path}: 'tune.{key}' must be true or false, got {value!r}")
            out[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or kind is int and not isinstance(value, int):
            raise SeqbenchError(f"{path}: 'tune.{key}' must be {'a whole number' if kind is int else 'a number'}, "
                                f"got {value!r}")
        out[key] = kind(value)
    return out


def _sets(raw: Any, models: list[str], datasets: list[str], path: Path) -> dict[str, Any]:
    """A grid's ``set`` table, checked: ``<model>`` -> a table of settings, or a list of tables (one config row
    each, ``{}`` = the defaults); ``<model>@<dataset>`` -> one table layered over each of that model's rows on
    that dataset. A one-table list is stored as the table, so it plans (and ids) like the table."""
    if not isinstance(raw, dict):
        raise SeqbenchError(f"{path}: 'set' must map model names to tables of settings, got {raw!r}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        model, at, dataset = str(key).partition("@")
        if model not in models:
            raise SeqbenchError(f"{path}: 'set.{key}': model '{model}' is not in 'models' ({', '.join(models)})")
        if at and dataset not in datasets:
            raise SeqbenchError(f"{path}: 'set.{key}': dataset '{dataset}' is not in 'datasets' "
                                f"({', '.join(datasets)})")
        tables = value if isinstance(value, list) and not at else [value]
        if not tables or not all(isinstance(t, dict) for t in tables):
            kind = (f"one table of settings (it applies over each config of 'set.{model}')" if at else
                    "a table of settings, or a non-empty list of tables (one config each)")
            raise SeqbenchError(f"{path}: 'set.{key}' must be {kind}, got {value!r}")
        if len({json.dumps(t, sort_keys=True, default=str) for t in tables}) < len(tables):
            raise SeqbenchError(f"{path}: 'set.{key}': the same config is listed twice")
        for table in tables:
            try:
                resolved_config(model, [table])  # unknown or ill-typed settings fail here, naming the key
            except SeqbenchError as e:
                raise SeqbenchError(f"{path}: 'set.{key}': {e}") from e
        out[str(key)] = [dict(t) for t in tables] if len(tables) > 1 else dict(tables[0])
    return out


def set_rows(sets: dict[str, Any], model: str, dataset: str) -> list[list[dict[str, Any]]]:
    """The explicit settings of each config row of ``model`` on ``dataset``, as tables applied in order:
    ``set.<model>`` (one row, or one per table of its list) with ``set.<model>@<dataset>`` over each."""
    base = sets.get(model, {})
    extra = sets.get(f"{model}@{dataset}")
    return [[row, *([extra] if extra else [])] for row in (base if isinstance(base, list) else [base])]


def one_row(grid: Grid, model: str, dataset: str, path: Path) -> dict[str, Any]:
    """The grid's settings for a single config of ``model`` on ``dataset`` (``seqbench tune --study``), as one
    table; a model with several configs in ``set`` is an error (pass that config's settings with ``--set``)."""
    rows = set_rows(grid.sets, model, dataset)
    if len(rows) > 1:
        raise SeqbenchError(f"{path}: 'set.{model}' lists {len(rows)} configs; tune one of them with --set")
    return {k: v for table in rows[0] for k, v in table.items()}


def _spaces(raw: Any, models: list[str], path: Path) -> dict[str, dict[str, Space]]:
    """A study's ``space`` table: model -> setting -> SPEC (``docs/tuning.md``), each checked like ``--space``."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise SeqbenchError(f"{path}: 'space' must map model names to tables of setting = SPEC, got {raw!r}")
    out: dict[str, dict[str, Space]] = {}
    for m, table in raw.items():
        if m not in models:
            raise SeqbenchError(f"{path}: 'space.{m}': model '{m}' is not in 'models' ({', '.join(models)})")
        try:
            parsed = {k: parse_space(str(v), k) for k, v in table.items()}
            search_space(get_spec(m).load_class().config_cls, parsed)
        except SeqbenchError as e:
            raise SeqbenchError(f"{path}: 'space.{m}': {e}") from e
        out[m] = parsed
    return out


def find_study(name: str | Path) -> Path:
    """A study file: a path as given, else ``studies/<name>.yaml`` (or .yml, .toml, .json)."""
    path = Path(name)
    if path.is_file():
        return path
    for suffix in (".yaml", ".yml", ".toml", ".json"):
        if (STUDIES / f"{name}{suffix}").is_file():
            return STUDIES / f"{name}{suffix}"
    known = sorted(p.stem for p in STUDIES.glob("*.*")) if STUDIES.is_dir() else []
    raise UnknownNameError("study", str(name), known)


def result_identity(model_identity: str, probe: str, probe_options: dict[str, str], protocol: str = "sampled",
                    config: str = DEFAULT) -> str:
    """A grid point's identity. The config layer is part of it: a tuned row whose settings equal the default's
    (same trained model) is still its own row, logged under its own label."""
    fields: dict[str, Any] = {"model": model_identity, "probe": probe, "options": probe_options}
    if protocol != "sampled":  # results logged before protocols existed keep their identity
        fields["eval"] = protocol
    if config != DEFAULT:  # default rows keep the identity they had before config layers existed
        fields["config"] = config
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Point:
    dataset: str
    model: str
    seed: int
    probe: str
    result_id: str
    done: bool = False
    protocol: str = "sampled"
    options: dict[str, str] = field(default_factory=dict)  # the probe options this point runs with
    config: str = DEFAULT  # the config layer of its row (default / tuned)


@dataclass
class TaskPlan:
    """One Ray task: a (dataset, model, seed, trained model) and its grid points (one per probe and config layer:
    config layers whose settings coincide share the task, so the model trains once and each row is logged)."""

    dataset: str
    model: str
    seed: int
    layers: list[dict[str, Any]]
    identity: str
    stored: bool  # the trained model is already in the store
    points: list[Point]
    settings: dict[str, Any] = field(default_factory=dict)  # the grid's explicit settings for this config row

    @property
    def settings_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())

    @property
    def label(self) -> str:
        """dataset/model/seed, with the row's settings when the grid gives any (several configs of a model)."""
        shown = self.settings_text
        return f"{self.dataset}/{self.model}" + (f" ({shown})" if shown else "") + f"/seed{self.seed}"

    @property
    def todo(self) -> list[Point]:
        return [p for p in self.points if not p.done]


def _probe_runs(grid: Grid) -> list[tuple[str, dict[str, str]]]:
    return RunSpec(probes=grid.probes, probe_option_sets=grid.probe_sets).probe_runs()


def expand(grid: Grid, datasets: dict[str, SeqDataset], store: ModelStore, code: str | None = None,
           home: Path | None = None) -> list[TaskPlan]:
    """The grid as tasks, each with its trained-model identity and its points' result identities (``home``: where
    a ``config: tuned`` grid finds the tuned layers)."""
    code = code or code_version()
    plans: dict[tuple[str, str, int, str], TaskPlan] = {}
    for name in grid.datasets:
        data = datasets[name]
        for model in grid.models:
            for config in model_config_layers(model, grid.config):
                # the same layers as `seqbench run --set …` (the dataset's run defaults under the grid's settings)
                tuned = tuned_layer(data_home(home), data, model) if is_tuned(config) else None
                rows: dict[str, str] = {}  # identity -> label of the config row that planned it, under this layer
                for tables in set_rows(grid.sets, model, name):
                    layers = model_layers(model, tables, None, data.meta.get("run_defaults"), recipe=grid.recipe,
                                          tuned=tuned)
                    settings = {k: v for t in tables for k, v in t.items()}  # shown by --dry-run and in errors
                    for seed in grid.seeds:
                        ident = planned_identity(model, layers, data, seed, code)
                        row = TaskPlan(name, model, seed, layers, ident, store.has(ident), [], settings)
                        _check_distinct(rows, row)
                        plan = plans.setdefault((name, model, seed, ident), row)
                        plan.points += [Point(name, model, seed, p, result_identity(ident, p, options, e, config),
                                              protocol=e, options=options, config=config)
                                        for e in grid.evals for p, options in _probe_runs(grid)]
    return list(plans.values())


def _check_distinct(rows: dict[str, str], row: TaskPlan) -> None:
    """Two config rows of ``set`` that resolve to the same trained model would log the same results twice (two
    config layers may share one: default and tuned rows with equal settings share the task)."""
    if rows.setdefault(row.identity, row.label) != row.label:
        raise SeqbenchError(f"set.{row.model}: {rows[row.identity]} and {row.label} resolve to the same config (the "
                            f"same trained model); drop one")


# -- Ray resources ------------------------------------------------------------------------------------------
def task_resources(model: str, accelerator: str, cpus: float) -> dict[str, Any]:
    """Ray options of one task: every task takes CPUs; a model that declares ``needs_accelerator`` (the LLM
    models, RECFORMER) also takes one accelerator, a GPU (``num_gpus``) or a Gaudi card (Ray's ``HPU``
    resource)."""
    if accelerator not in ACCELERATORS:
        raise SeqbenchError(f"unknown accelerator '{accelerator}'; use {', '.join(ACCELERATORS)}")
    opts: dict[str, Any] = {"num_cpus": cpus}
    if get_spec(model).needs_accelerator:
        if accelerator == "gpu":
            opts["num_gpus"] = 1
        elif accelerator == "hpu":
            opts["resources"] = {HPU: 1}
    return opts


def start_ray(address: str | None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a new local Ray with this machine's CPUs.

    ``ray.init()`` without an address would join the newest Ray already running on the machine (another sweep's
    or tune's, or a test's) and then refuse ``num_cpus``; ``address="local"`` always starts a fresh one."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or LOCAL_RAY
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address == LOCAL_RAY:
        kwargs["num_cpus"] = os.cpu_count()  # explicit: Ray's own guess can exceed a container's share
    ray.init(address=address, **kwargs)


def device_for(assigned: dict[str, float]) -> str:
    """The torch device a task uses, from what Ray granted it (not from what the node happens to have), unless
    the node's ``SEQBENCH_DEVICE`` names one."""
    if os.environ.get(DEVICE_ENV):
        return os.environ[DEVICE_ENV]
    if assigned.get(HPU, 0) > 0:
        return "hpu"
    if assigned.get("GPU", 0) > 0:
        return "cuda"
    return "cpu"


def threads_for(assigned: dict[str, float]) -> int:
    """Torch threads = CPUs granted (at least 1), so parallel tasks do not fight over the same cores."""
    return max(1, int(assigned.get("CPU", 1)))


def _run_task(spec: RunSpec, layers: list[dict[str, Any]], seed: int, home: str, store_root: str,
              queue: Any, plan_identity: str) -> SeedPass:
    """Body of a Ray task: device and threads from the grant, then the same seed pass as `seqbench run`; the
    result says where it ran (node, device, grant)."""
    import ray
    import torch

    from seqbench.data.store import load_dataset

    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(threads_for(assigned))
    device = resolve_device(device_for(assigned))
    data = load_dataset(spec.dataset, Path(home))

    def live(ident: str, name: str, value: float, step: int) -> None:
        queue.put((plan_identity, ident, name, value, step))

    sp = seed_pass(spec, data, layers, seed, device, Path(home), ModelStore(Path(store_root)), None, live)
    placed = record.placement_tags(ray.get_runtime_context().get_node_id(), str(device), assigned)
    return dataclasses.replace(sp, placement=placed)


# -- MLflow bookkeeping (driver only) ----------------------------------------------------------------------
def parent_run(tracker: Tracker, grid: Grid, grid_path: Path) -> str:
    """The sweep's parent run: found by ``sweep_id`` (a rerun continues it), else created."""
    client = tracker.mlflow.MlflowClient()
    exp = client.get_experiment_by_name(grid.experiment).experiment_id
    found = client.search_runs([exp], record.filter_string(sweep_id=grid.sweep_id, run_kind=record.SWEEP_RUN))
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(exp, run_name=f"sweep/{grid_path.stem}",
                            tags=record.sweep_tags(grid.sweep_id, str(grid_path)))
    client.log_dict(run.info.run_id, {k: v for k, v in grid.__dict__.items()}, record.GRID)
    return run.info.run_id


def finished_results(tracker: Tracker, experiment: str, delete_unfinished: bool = False) -> set[str]:
    """Result ids with a finished run in ``experiment``; runs a killed driver left open are deleted first
    (when asked) so their grid points are redone and logged once."""
    client = tracker.mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return set()
    done: set[str] = set()
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], record.filter_string(run_kind=record.PROBE_RUN),
                                  max_results=1000, page_token=token)
        for r in page:
            rid = r.data.tags.get("result_id")
            if rid is None:
                continue
            if r.info.status == "FINISHED":
                done.add(rid)
            elif delete_unfinished:
                client.delete_run(r.info.run_id)
        token = page.token
        if not token:
            return done


@dataclass
class StudyPlan:
    """A study file read and planned: its grid, data home, datasets, trained-model store and tasks."""

    grid: Grid
    home: Path
    datasets: dict[str, SeqDataset]
    store: ModelStore
    plans: list[TaskPlan]


def plan_study(grid_path: Path, home: Path | None, console: Console, config: str | None = None) -> StudyPlan:
    """Read ``grid_path`` (``config`` overrides its ``config`` key), make its on-demand datasets and plan its
    tasks: the one planning step of `seqbench sweep`, its ``--offline`` run and its ``--log-offline``."""
    grid = load_grid(grid_path)
    if config is not None:
        layers = config_layers([c.strip() for c in config.split(",") if c.strip()], "--config")
        grid = dataclasses.replace(grid, config=layers)
    home = data_home(home)
    for name in grid.datasets:
        if name not in list_datasets(home) and not on_demand(name):
            raise UnknownNameError("dataset", name, list_datasets(home))
    datasets = {name: ensure_dataset(name, home, console) for name in grid.datasets}
    store = ModelStore()
    return StudyPlan(grid, home, datasets, store, expand(grid, datasets, store, home=home))


def task_spec(grid: Grid, plan: TaskPlan, accelerator: str, checkpoint_every_s: float,
              tracking_uri: str | None = None) -> RunSpec:
    """The run a task makes: its model on its dataset and seed, with the grid's probes and protocols."""
    return RunSpec(model=plan.model, probes=grid.probes, dataset=plan.dataset, seeds=[plan.seed],
                   probe_option_sets=grid.probe_sets, tracking_uri=tracking_uri, device=accelerator,
                   checkpoint_every_s=checkpoint_every_s, evals=grid.evals)


def mark_done(plans: list[TaskPlan], done: set[str]) -> None:
    """Mark the points whose result identity is in ``done`` (what the experiment already holds)."""
    for plan in plans:
        for p in plan.points:
            p.done = p.result_id in done


@dataclass
class SweepReport:
    plans: list[TaskPlan]
    logged: list[dict] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    trained: int = 0  # tasks whose model was trained (not taken from the store)
    seconds: float = 0.0
    parent_run_id: str | None = None


def run_sweep(grid_path: Path, *, tracking_uri: str | None = None, address: str | None = None,
              max_parallel: int | None = None, accelerator: str = "cpu", cpus_per_task: float = 1.0,
              home: Path | None = None, dry_run: bool = False, retries: int = 3,
              checkpoint_every_s: float = 0.0, console: Console | None = None,
              config: str | None = None) -> SweepReport:
    """Run (or with ``dry_run`` only plan) the grid in ``grid_path``; see the module docstring. ``config``
    (``tuned``, or ``default,tuned``) overrides the grid's ``config`` key."""
    start = time.perf_counter()
    study = plan_study(grid_path, home, console or Console(stderr=True), config)
    grid, home, datasets, store, plans = study.grid, study.home, study.datasets, study.store, study.plans
    tracker = Tracker(tracking_uri, experiment=grid.experiment)
    mark_done(plans, finished_results(tracker, grid.experiment, delete_unfinished=not dry_run))
    report = SweepReport(plans)
    todo = [p for p in plans if p.todo]
    if dry_run or not todo:
        report.seconds = time.perf_counter() - start
        return report
    for plan in todo:
        task_resources(plan.model, accelerator, cpus_per_task)  # bad accelerator fails before Ray starts

    import ray
    from ray.util.queue import Empty, Queue

    start_ray(address)
    queue = Queue(actor_options={"num_cpus": 0})
    remote = ray.remote(_run_task)
    parent = parent_run(tracker, grid, Path(grid_path))
    report.parent_run_id = parent
    limit = max_parallel or len(todo)
    waiting, running = list(todo), {}
    live = LiveCurves(tracker, experiment=grid.experiment, parent_run_id=parent)
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                plan = waiting.pop(0)
                spec = task_spec(grid, plan, accelerator, checkpoint_every_s, tracking_uri)
                opts = task_resources(plan.model, accelerator, cpus_per_task)
                live.label(plan.identity, dataset=plan.dataset, model=plan.model, seed=plan.seed)
                ref = remote.options(max_retries=retries, **opts).remote(spec, plan.layers, plan.seed, str(home),
                                                                          str(store.root), queue, plan.identity)
                running[ref] = (plan, spec)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            _drain(queue, live, Empty)
            live.flush_due()
            for ref in ready:
                plan, spec = running.pop(ref)
                try:
                    sp = ray.get(ref)
                except Exception as e:  # the task failed after its retries: report it, keep the others going
                    report.failed.append(f"{plan.label}: {e}")
                    _finish_task(live, plan.identity, "FAILED")
                    continue
                _drain(queue, live, Empty)
                _finish_task(live, plan.identity)
                report.trained += not sp.reused
                log_points(tracker, grid, plan, spec, sp, datasets[plan.dataset], parent, report)
    finally:
        live.flush()
        status = "FINISHED" if not report.failed and not (waiting or running) else "FAILED"
        tracker.mlflow.MlflowClient().set_terminated(parent, status=status)
    report.seconds = time.perf_counter() - start
    return report


def _drain(queue: Any, live: LiveCurves, empty: type) -> None:
    """Live training metrics from the tasks into their training runs. A model a probe trains (shuffle-train)
    has its own identity; its run is labelled like its task's with ``role=probe-retrain``."""
    while True:
        try:
            owner, ident, name, value, step = queue.get_nowait()
        except empty:
            return
        if ident not in live.labels:
            live.label(ident, **live.labels.get(owner, {}), role="probe-retrain", task_identity=owner)
        live.add(ident, name, value, step)


def _finish_task(live: LiveCurves, plan_identity: str, status: str = "FINISHED") -> None:
    for ident, labels in list(live.labels.items()):
        if ident == plan_identity or labels.get("task_identity") == plan_identity:
            live.finish(ident, status)


def log_points(tracker: Tracker, grid: Grid, plan: TaskPlan, spec: RunSpec, sp: SeedPass, data: SeqDataset,
               parent: str, report: SweepReport) -> None:
    """One nested child run per grid point not yet logged (a point logged before a crash is skipped)."""
    if sp.identity != plan.identity:
        raise SeqbenchError(f"task {plan.label} trained identity {sp.identity}, "
                            f"the driver planned {plan.identity} (different code versions on driver and worker?)")
    def key(probe: str, protocol: str, options: dict) -> tuple[str, str, str]:
        return probe, protocol, json.dumps(options, sort_keys=True)

    for res in sp.results:  # one result serves every config layer whose row has this trained model
        for point in plan.points:
            if point.done or key(point.probe, point.protocol, point.options) != \
                    key(res.probe, res.protocol, res.probe_stats.get("options", {})):
                continue
            out = result_dict(data, plan.model, plan.seed, res, sp.fit, config=point.config)
            out.update(reused=sp.reused, model_identity=sp.identity, result_id=point.result_id, **sp.recipe_fields)
            tags = {**record.reuse_tags(sp.reused, sp.identity), **sp.recipe_tags, "result_id": point.result_id,
                    **sp.placement, "sweep_id": grid.sweep_id, "mlflow.parentRunId": parent,
                    record.CONFIG_LAYER: point.config}
            out["mlflow_run_id"] = log_result(tracker, spec, data, sp.config, plan.seed, sp.fit, res, out, sp.steps,
                                              tags)
            point.done = True
            report.logged.append(out)
