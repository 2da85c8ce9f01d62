"""The one run planner: which dataset, which config layers, which trained-model identity.

`seqbench run`, `seqbench sweep` and every script assemble a run here, so the same model on the same dataset
with the same settings and seed trains the same config and gets the same identity whichever command asks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from seqbench.config import load_config_file, resolve, search_space
from seqbench.data.dataset import SeqDataset
from seqbench.data.embedded import DEFAULT_DATASET, ensure_prepared
from seqbench.data.store import load_dataset
from seqbench.errors import OptionError, UnknownNameError
from seqbench.eval.evaluator import TASKS
from seqbench.models import get_spec
from seqbench.models.store import histories_hash, identity
from seqbench.probes import probe_tasks

TUNED = "tuned"  # the named config layer `seqbench tune` writes
DEFAULT = "default"  # no named layer: the model's defaults (under the dataset's run defaults, a recipe, --set)
CONFIG_LAYERS = (DEFAULT, TUNED)  # what a run's ``config_layer`` tag and a study's ``config`` list name


def ensure_dataset(name: str | None, home: Path, console: Console | None = None) -> SeqDataset:
    """Load a prepared dataset; on-demand ones (quickstart, quickstart-control, ``syn-…``) are prepared first
    when missing or made by an older generator."""
    name = name or DEFAULT_DATASET
    ensure_prepared(name, home, (lambda msg: console.print(f"[dim]{msg}[/dim]")) if console else None)
    data = load_dataset(name, home)
    if console and data.meta.get("run_defaults"):
        shown = ", ".join(f"{k}={v}" for k, v in data.meta["run_defaults"].items())
        console.print(f"[dim]dataset '{name}' sets {shown} for models that have them (--set overrides)[/dim]")
    return data


def model_layers(model: str, overrides: dict[str, Any] | list[dict[str, Any]], config_file: Path | None,
                 dataset_defaults: dict[str, Any] | None = None, task: str = "retrieval",
                 recipe: str | None = None, tuned: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Config precedence: model defaults < the dataset's run_defaults (settings the model has) < a named
    training recipe (LLM models: every recipe-defining setting of ``models/llm/recipes.py``) < the tuned layer
    (``--config tuned``: :func:`tuned_layer`) < config file ([model] or [models.<name>] table) < --set (one
    table, or several applied in order: a study's ``set.<model>`` then ``set.<model>@<dataset>``); then the
    run's task for models that train for it (LLM models)."""
    file_cfg = load_config_file(None if is_tuned(config_file) else config_file)
    known = {f.name for f in dataclasses.fields(get_spec(model).load_class().config_cls)}
    explicit = overrides if isinstance(overrides, list) else [overrides]
    if any("task" in table for table in explicit):
        raise OptionError("the task is not a model setting: use `seqbench run --task retrieval|generation`")
    layers = [{k: v for k, v in (dataset_defaults or {}).items() if k in known}]
    if recipe is not None:
        layers.append(recipe_layer(model, recipe))
    if tuned:
        layers.append(dict(tuned))
    if isinstance(file_cfg.get("model"), dict):
        layers.append(file_cfg["model"])
    if isinstance(file_cfg.get("models"), dict) and isinstance(file_cfg["models"].get(model), dict):
        layers.append(file_cfg["models"][model])
    layers.extend(explicit)
    if "task" in known and task != "retrieval":  # retrieval is the default: identities stay as they were
        layers.append({"task": task})
    return layers


def recipe_layer(model: str, recipe: str) -> dict[str, Any]:
    """The settings of the named recipe for ``model``; models without recipes (CF, LM-based, pop) get none."""
    from seqbench.models.llm.recipes import RECIPES

    if recipe not in RECIPES:
        raise UnknownNameError("recipe", recipe, list(RECIPES))
    return dict(RECIPES[recipe].get(model, {}))


def is_tuned(config: Path | str | None) -> bool:
    """``--config tuned`` (or a study's ``config: tuned``) names the tuned layer, not a file."""
    return config is not None and str(config) == TUNED


def config_label(config: Path | str | None) -> str:
    """The config layer a run names: ``tuned`` for ``--config tuned``, else ``default`` (a config file is a
    layer of settings like ``--set``, not a named layer)."""
    return TUNED if is_tuned(config) else DEFAULT


@functools.cache  # asked per run by a study report's row filter
def tunable(model: str) -> bool:
    """Whether ``model`` declares a search space (pop has no settings: its tuned config is its default)."""
    return bool(search_space(get_spec(model).load_class().config_cls))


def model_config_layers(model: str, layers: list[str] | tuple[str, ...]) -> list[str]:
    """The config layers ``model`` gets of a study's ``config`` list: a model with nothing to tune (pop) has one
    config, so beside a default row its tuned row would repeat it; it keeps the tuned layer only when alone."""
    if TUNED in layers and DEFAULT in layers and not tunable(model):
        return [layer for layer in layers if layer != TUNED]
    return list(layers)


def tuned_dir(home: Path, dataset: str, model: str) -> Path:
    """Where `seqbench tune` keeps (model, dataset)'s winner (``config.json``), its search record
    (``search.json``) and Ray Tune's experiment folder (``ray/``, for resuming): beside the data it was tuned on."""
    return Path(home) / TUNED / dataset / model


def tuned_layer(home: Path, data: SeqDataset, model: str) -> dict[str, Any]:
    """The winning settings `seqbench tune` wrote for ``model`` on ``data``; raises when there are none or the
    dataset changed since (a tune on other data is not a tune of this one). A model with nothing to tune (no
    declared search space and no tune) gets an empty layer: its tuned config is its default."""
    path = tuned_dir(home, data.name, model) / "config.json"
    if not path.is_file() and not tunable(model):
        return {}
    if not path.is_file():
        raise OptionError(f"--config tuned: no tuned config for {model} on {data.name} ({path}); run "
                          f"`seqbench tune --model {model} --dataset {data.name}` first")
    saved = json.loads(path.read_text())
    if saved.get("dataset_hash") != data.content_hash:
        raise OptionError(f"--config tuned: {path} was tuned on another version of {data.name} "
                          f"(hash {saved.get('dataset_hash')}, now {data.content_hash}); tune again")
    return dict(saved["layer"])


def check_task(model: str, probes: list, task: str) -> None:
    """The model and every probe must work in ``task``: the model's declared tasks (``ModelSpec.generation``;
    models that rank any candidate set work in both: the CF models' HR@1 over the 20 title candidates is the
    generation reference)."""
    if task not in TASKS:
        raise OptionError(f"unknown task '{task}'; use {' or '.join(TASKS)}")
    model_tasks = get_spec(model).tasks
    if task not in model_tasks:
        raise OptionError(f"{model} does not support --task {task} (it supports: {', '.join(model_tasks)})")
    bad = [p.name for p in probes if task not in probe_tasks(p)]
    if bad:
        raise OptionError(f"probe(s) {', '.join(bad)} do not work in --task {task}; probes that do: "
                          + ", ".join(sorted(n for n, cls in _probe_classes().items() if task in probe_tasks(cls))))


def _probe_classes() -> dict[str, type]:
    from seqbench.probes import PROBES

    return PROBES


def resolved_config(model: str, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's config after all layers, without building the model (an LLM model would load its LLM)."""
    return dataclasses.asdict(resolve(get_spec(model).load_class().config_cls, *layers))


def planned_identity(model: str, layers: list[dict[str, Any]], data: SeqDataset, seed: int, code: str) -> str:
    """The trained-model identity a run of ``model`` with ``layers`` on ``data`` for ``seed`` will have."""
    return identity(model, resolved_config(model, layers), data.content_hash, histories_hash(data.histories("train")),
                    seed, code)
