"""The `seqbench` command line (Typer + rich)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from seqbench.errors import SeqbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Does a recommender use the order of a user's history? Train, probe, test, track.")
data_app = typer.Typer(no_args_is_help=True, help="Prepare, list and describe datasets.")
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)

DataHome = Annotated[Path | None, typer.Option("--data-home", envvar="SEQBENCH_DATA_HOME",
                                               help="Where prepared datasets live (default: ~/.seqbench/data).")]


def _fail(e: SeqbenchError) -> None:
    err.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code)


@data_app.command("prepare")
def data_prepare(
    kind: Annotated[str, typer.Argument(help="Source format: recbole, movielens, amazon2023, csv, synthetic.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the source kind).")] = None,
    source: Annotated[Path | None, typer.Option(help="File or folder to read (not needed for synthetic).")] = None,
    meta: Annotated[Path | None, typer.Option(help="Item metadata file (titles), where the format has one.")] = None,
    k: Annotated[int, typer.Option(help="k-core threshold for users and items.")] = 5,
    kcore: Annotated[str, typer.Option(help="'iterative' (until stable) or 'single' (the paper's one pass).")]
    = "iterative",
    sample_users: Annotated[float, typer.Option(help="Fraction of users kept (seeded).")] = 1.0,
    sample_stage: Annotated[str, typer.Option(help="Sample users 'before' k-core filtering, or 'after' it "
                                              "(whole histories kept, no second k-core).")] = "before",
    sample_seed: Annotated[int, typer.Option(help="Seed of the user sample.")] = 0,
    neg_seed: Annotated[int, typer.Option(help="Seed of the persisted evaluation negatives.")] = 0,
    strict: Annotated[bool, typer.Option(help="Fail on the first malformed line instead of skipping it.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset of the same name.")] = False,
    user_col: Annotated[str, typer.Option(help="csv: user column.")] = "user_id",
    item_col: Annotated[str, typer.Option(help="csv: item column.")] = "item_id",
    time_col: Annotated[str, typer.Option(help="csv: timestamp column.")] = "timestamp",
    title_col: Annotated[str, typer.Option(help="csv: title column of the items table.")] = "title",
    time_unit: Annotated[str, typer.Option(help="csv: s, ms or iso.")] = "s",
    sep: Annotated[str | None, typer.Option(help="csv: field separator (default: by extension).")] = None,
    order: Annotated[float, typer.Option(help="synthetic: share of steps that follow item transitions (0-1).")]
    = 0.0,
    users: Annotated[int, typer.Option(help="synthetic: number of users.")] = 2000,
    items: Annotated[int, typer.Option(help="synthetic: number of items.")] = 400,
    seed: Annotated[int, typer.Option(help="synthetic: generator seed.")] = 0,
    data_home: DataHome = None,
) -> None:
    """Read a source, filter, split leave-last-out, draw the evaluation candidates, and store it."""
    from seqbench.data.pipeline import prepare_source
    from seqbench.data.preprocess import PrepareParams
    from seqbench.data.sources.options import SourceOptions
    from seqbench.data.store import data_home as resolve_home

    try:
        params = PrepareParams(k=k, kcore=kcore, sample_users=sample_users, sample_seed=sample_seed,
                               sample_stage=sample_stage, neg_seed=neg_seed)
        opts = SourceOptions(strict=strict, meta=meta, user_col=user_col, item_col=item_col, time_col=time_col,
                             title_col=title_col, time_unit=time_unit, sep=sep, order=order, users=users,
                             items=items, seed=seed)
        with err.status(f"preparing {kind} data ..."):
            path, report = prepare_source(kind, source, name or kind, resolve_home(data_home), params, opts,
                                          overwrite)
    except SeqbenchError as e:
        _fail(e)
    out.print(f"[green]prepared[/green] {path}")
    _print_counts(report)


def _print_counts(counts: dict) -> None:
    table = Table(show_header=False, box=None)
    for key, value in counts.items():
        if not isinstance(value, list | dict):
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out.print(table)


@data_app.command("list")
def data_list(data_home: DataHome = None) -> None:
    """List prepared datasets."""
    from seqbench.data.store import data_home as resolve_home
    from seqbench.data.store import list_datasets

    home = resolve_home(data_home)
    names = list_datasets(home)
    if not names:
        out.print(f"no datasets in {home}; try `seqbench data prepare synthetic`")
        return
    table = Table(title=str(home))
    for col in ("name", "source", "users", "items", "interactions", "hash"):
        table.add_column(col)
    for n in names:
        meta = json.loads((home / n / "meta.json").read_text())
        c = meta.get("counts", {})
        table.add_row(n, meta.get("source", {}).get("kind", "?"), f"{c.get('users', 0):,}", f"{c.get('items', 0):,}",
                      f"{c.get('interactions', 0):,}", meta.get("content_hash", "")[:12])
    out.print(table)


@data_app.command("stats")
def data_stats(name: Annotated[str, typer.Argument(help="Prepared dataset name.")], data_home: DataHome = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Describe a prepared dataset: sizes, sequence lengths, density, titles."""
    from seqbench.data.stats import dataset_stats
    from seqbench.data.store import data_home as resolve_home
    from seqbench.data.store import load_dataset

    try:
        stats = dataset_stats(load_dataset(name, resolve_home(data_home)))
    except SeqbenchError as e:
        _fail(e)
    if as_json:
        out.print_json(json.dumps(stats))
    else:
        _print_counts(stats)


@app.command("models")
def list_models() -> None:
    """List registered models, one per line."""
    from seqbench.models import MODELS

    for spec in MODELS.values():
        out.print(f"{spec.name:<12} {spec.family:<9} {spec.summary}", highlight=False, soft_wrap=True)


@app.command("probes")
def list_probes() -> None:
    """List registered probes, one per line."""
    from seqbench.probes import PROBES

    for name, cls in PROBES.items():
        out.print(f"{name:<14} {cls.summary}", highlight=False, soft_wrap=True)
        for key, text in getattr(cls, "option_help", {}).items():  # what --probe-set accepts for it
            out.print(f"{'':<14}   --probe-set {key}=…: {text}", highlight=False, soft_wrap=True)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SeqbenchError(f"--seeds expects comma-separated integers, got '{text}'") from None


@app.command("run")
def run_cmd(
    model: Annotated[str, typer.Option(help="Model name (see `seqbench models`).")] = "sasrec",
    probe: Annotated[str, typer.Option(help="Probe name, or several comma-separated (Holm-corrected).")]
    = "shuffle-infer",
    dataset: Annotated[str | None, typer.Option(help="Prepared dataset (default: synthetic, made on first use).")]
    = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    seeds: Annotated[str | None, typer.Option(help="Repeat over seeds, e.g. 0,1,2 (overrides --seed).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Model setting key=value (repeatable).")] = None,
    probe_set: Annotated[list[str] | None, typer.Option("--probe-set", help="Probe option key=value, "
                                                        "e.g. target=NAME for cross-domain.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML/JSON/YAML file with a 'model' table.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or hpu.")] = "auto",
    llm: Annotated[str | None, typer.Option(help="LLM-based models: smollm2-135m (default), tiny-random, a "
                                            "Hugging Face id or a local folder.")] = None,
    dtype: Annotated[str | None, typer.Option(help="LLM-based models: auto, bf16, fp32 or fp16.")] = None,
    data_home: DataHome = None,
) -> None:
    """Train a model, apply probes, test the differences, log every (probe, seed) to MLflow."""
    from seqbench.config import parse_sets
    from seqbench.render import extra_lines, result_table, seed_table, verdict
    from seqbench.runner import RunSpec, run

    try:
        overrides = parse_sets(set_)
        overrides.update({k: v for k, v in (("llm", llm), ("dtype", dtype)) if v is not None})
        spec = RunSpec(model=model, probes=[p.strip() for p in probe.split(",") if p.strip()], dataset=dataset,
                       seeds=_int_list(seeds) if seeds else [seed], overrides=overrides,
                       probe_options=parse_sets(probe_set), config_file=config, data_home=data_home,
                       tracking_uri=tracking_uri, device=device, output=output)
        result = run(spec, err)
    except SeqbenchError as e:
        _fail(e)
    for r in result["runs"]:
        out.print(result_table(r))
        for line in extra_lines(r):
            out.print(f"  {line}", highlight=False)
        out.print(verdict(r), highlight=False, soft_wrap=True)
    if result["holm"]:
        out.print(f"p-values are Holm-adjusted over the {len(spec.probes)} probes reported together.",
                  highlight=False)
    if result["seed_summary"]:
        out.print(seed_table(result["seed_summary"]))
    if output:
        out.print(f"[dim]wrote {output}[/dim]")


@app.command("compare")
def compare_cmd(
    run_ids: Annotated[list[str], typer.Argument(help="MLflow run ids: the reference first, then the others.")],
    metric: Annotated[str, typer.Option(help="Per-user metric to compare.")] = "ndcg@10",
    condition: Annotated[str, typer.Option(help="Condition of each run (original, or a probe's other one).")]
    = "original",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    output: Annotated[Path | None, typer.Option(help="Write the comparison as JSON here.")] = None,
) -> None:
    """Compare models user by user across runs on the same dataset (paired Wilcoxon, Holm over runs)."""
    from seqbench.compare import compare_runs
    from seqbench.render import comparison_table
    from seqbench.runner import write_json_atomic

    try:
        result = compare_runs(run_ids, metric, condition, tracking_uri)
    except SeqbenchError as e:
        _fail(e)
    out.print(comparison_table(result))
    if output:
        write_json_atomic(result, output)
        out.print(f"[dim]wrote {output}[/dim]")


@app.command("ui")
def ui(
    tracking_uri: Annotated[str, typer.Option(help="MLflow backend store.")] = "sqlite:///mlflow.db",
    port: Annotated[int, typer.Option(help="Port on localhost.")] = 5000,
) -> None:
    """Open the MLflow UI on the tracking store to compare runs."""
    raise typer.Exit(subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
                                      "--host", "127.0.0.1", "--port", str(port)]))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
