"""The MLflow record of seqbench: every tag, param and artifact name, written and read through this module.

A *result run* holds one (dataset, model, probe, seed, protocol): params (the run's settings, flattened),
tags (what `seqbench runs`, `compare`, `report` and a sweep's resume filter on), metrics, and the artifacts
below. Two other kinds of run hold no result (``run_kind``): a sweep's parent run and a live training curve.
Runs logged before a tag existed read as its documented default (``protocol``: sampled, conditions: original
and probed), so older stores stay readable.
"""

from __future__ import annotations

from typing import Any

from seqbench.planner import DEFAULT

# artifacts of a result run
RESULT = "result.json"  # the result dict of `seqbench run --output`
PER_USER = "per_user_metrics.parquet"  # condition, user, one column per metric
CONFIG = "resolved_config.json"  # the run spec, the model's resolved config, the dataset's meta
FIT = "fit_report.json"
GENERATIONS = "generations.parquet"  # title generation: each decoded answer and its readings
GRID = "grid.json"  # a sweep's parent run: the grid it ran
SEARCH = "search.json"  # a tune's parent run: the search record (every trial's settings and best score)

# params prefixes (the run's settings are logged flattened: model_config.d, probe_options.window, ...)
MODEL_CONFIG = "model_config."
PROBE_OPTIONS = "probe_options."

# run kinds (tag ``run_kind``)
PROBE_RUN, TRAIN_RUN, SWEEP_RUN = "probe", "train", "sweep"
TUNE_RUN, TRIAL_RUN = "tune", "trial"  # `seqbench tune`: a parent run per tune, a child run per trial
NOT_RESULTS = (TRAIN_RUN, SWEEP_RUN, TUNE_RUN, TRIAL_RUN)

# the names a result run is found by; they are params and tags (older runs have some only as params)
IDENTITY = ("dataset", "model", "probe", "seed")
DEFAULT_PROTOCOL = "sampled"
NODE = "ray_node_id"  # the Ray node a sweep task or a tune trial ran on
DEFAULT_CONDITIONS = ("original", "probed")  # runs logged before the `conditions` tag were paired probes
# tag naming the run's config layer: default (none) or tuned (`seqbench tune`'s winner); untagged runs read default
CONFIG_LAYER = "config_layer"


def result_tags(*, dataset: str, model: str, family: str, probe: str, seed: int, task: str, protocol: str,
                split: str, conditions: tuple[str, str] | list[str], dataset_hash: str, code_version: str,
                recipe: str | None = None, config_layer: str = DEFAULT, **extra: str) -> dict[str, str]:
    """Every tag of a result run (``extra``: a sweep's result_id, sweep_id and parent; the store's reuse)."""
    tags = {"run_kind": PROBE_RUN, "dataset": dataset, "model": model, "family": family, "probe": probe,
            "seed": str(seed), "task": task, "eval_protocol": protocol, "split": split,
            "conditions": ",".join(conditions), "dataset_hash": dataset_hash, "code_version": code_version,
            CONFIG_LAYER: config_layer}
    if recipe is not None:  # LLM models only (models/llm/recipes.py)
        tags["recipe"] = recipe
    return {**tags, **{k: str(v) for k, v in extra.items()}}


def reuse_tags(reused: bool, model_identity: str) -> dict[str, str]:
    """Whether a result run's model came from the trained-model store (its fit figures are the original's)."""
    return {"reused": "true" if reused else "false", "model_identity": model_identity}


def train_tags(model_identity: str, labels: dict[str, Any]) -> dict[str, str]:
    """Tags of a live training-curve run."""
    return {"run_kind": TRAIN_RUN, "model_identity": model_identity, **{k: str(v) for k, v in labels.items()}}


PLACEMENT = (NODE, "torch_device", "ray_resources")


def placement_tags(node_id: str, device: str, granted: dict[str, float]) -> dict[str, str]:
    """Where a sweep task or a tune trial ran: its Ray node, its torch device and the resources Ray granted it."""
    return dict(zip(PLACEMENT, (node_id, device, ",".join(f"{k}={v:g}" for k, v in sorted(granted.items()))),
                    strict=True))


def sweep_tags(sweep_id: str, grid_file: str) -> dict[str, str]:
    return {"run_kind": SWEEP_RUN, "sweep_id": sweep_id, "grid_file": grid_file}


def tune_tags(tune_id: str, dataset: str, model: str, dataset_hash: str) -> dict[str, str]:
    """Tags of a tune's parent run (``tune_id``: the (model, dataset, search) it tunes; a resumed tune finds it)."""
    return {"run_kind": TUNE_RUN, "tune_id": tune_id, "dataset": dataset, "model": model,
            "dataset_hash": dataset_hash}


def trial_tags(tune_id: str, trial_id: str, parent: str, model_identity: str, status: str,
               placement: dict[str, str] | None = None) -> dict[str, str]:
    """Tags of one trial's child run; ``trial_status``: finished (ran to its end or early stop), stopped (by the
    scheduler) or error; ``placement``: :func:`placement_tags` of the worker that ran it, as it reported them."""
    return {"run_kind": TRIAL_RUN, "tune_id": tune_id, "trial_id": trial_id, "mlflow.parentRunId": parent,
            "model_identity": model_identity, "trial_status": status, **(placement or {})}


# -- reading ------------------------------------------------------------------------------------------------
def is_result(run) -> bool:
    """False for a sweep's parent run and a live training curve."""
    return run.data.tags.get("run_kind") not in NOT_RESULTS


def field(run, name: str, default: str | None = None) -> str | None:
    """An identity field (dataset, model, probe, seed, task, family): param first, then tag."""
    return run.data.params.get(name, run.data.tags.get(name, default))


def protocol(run) -> str:
    return run.data.tags.get("eval_protocol", DEFAULT_PROTOCOL)


def dataset_hash(run) -> str:
    return run.data.tags.get("dataset_hash", "")


def code_version(run) -> str:
    return run.data.tags.get("code_version", "?")


def config_layer(run) -> str:
    return run.data.tags.get(CONFIG_LAYER, DEFAULT)


def recipe(run) -> str | None:
    return run.data.tags.get("recipe")


def conditions(run) -> tuple[str, str]:
    tagged = run.data.tags.get("conditions", "")
    if tagged.count(",") == 1:
        a, b = tagged.split(",")
        return a, b
    return DEFAULT_CONDITIONS


def prefixed(run, prefix: str) -> dict[str, str]:
    """The params under ``prefix`` (MODEL_CONFIG, PROBE_OPTIONS), prefix removed."""
    return {k[len(prefix):]: v for k, v in run.data.params.items() if k.startswith(prefix)}


def filter_string(**tags: str | None) -> str:
    """An MLflow search filter on tags (values must not contain a quote)."""
    return " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items() if v)
