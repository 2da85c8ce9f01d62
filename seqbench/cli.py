"""The `seqbench` command line (Typer + rich)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from seqbench.errors import OptionError, SeqbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True)
data_app = typer.Typer(no_args_is_help=True, help="Prepare, list and describe datasets.")
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)

DataHome = Annotated[Path | None, typer.Option("--data-home", envvar="SEQBENCH_DATA_HOME",
                                               help="Where prepared datasets live (default: ~/.seqbench/data).")]


def _version(value: bool) -> None:
    if value:
        from seqbench import __version__

        out.print(f"seqbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Does a recommender use the order of a user's history? Train, probe, test, track."""


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
    split: Annotated[str, typer.Option(help="'leave-last-out' (the paper's) or 'temporal' (a global time "
                                       "boundary, Klenitskiy et al. RecSys'24; docs/protocols.md).")]
    = "leave-last-out",
    boundary: Annotated[float, typer.Option(help="temporal: quantile of all timestamps after which events are "
                                            "test-period events.")] = 0.9,
    valid_users: Annotated[int, typer.Option(help="temporal: users held out of training for validation.")] = 500,
    split_seed: Annotated[int, typer.Option(help="temporal: seed of the validation users.")] = 0,
    ties: Annotated[str, typer.Option(help="Order of a user's events with equal timestamps: 'file' (as read) or "
                                      "'random' (seeded by --tie-seed).")] = "file",
    tie_seed: Annotated[int, typer.Option(help="--ties random: seed of the order.")] = 0,
    strict: Annotated[bool, typer.Option(help="Fail on the first malformed line instead of skipping it.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset of the same name.")] = False,
    user_col: Annotated[str, typer.Option(help="csv: user column.")] = "user_id",
    item_col: Annotated[str, typer.Option(help="csv: item column.")] = "item_id",
    time_col: Annotated[str, typer.Option(help="csv: timestamp column.")] = "timestamp",
    title_col: Annotated[str, typer.Option(help="csv: title column of the items table.")] = "title",
    item_key_col: Annotated[str | None, typer.Option(help="csv: item id column of the items table "
                                                     "(default: the same name as --item-col).")] = None,
    time_unit: Annotated[str, typer.Option(help="csv: s, ms or iso.")] = "s",
    sep: Annotated[str | None, typer.Option(help="csv: field separator (default: by extension).")] = None,
    order: Annotated[float, typer.Option(help="synthetic: share of steps that follow item transitions (0-1).")]
    = 0.0,
    users: Annotated[int, typer.Option(help="synthetic: number of users.")] = 2000,
    items: Annotated[int, typer.Option(help="synthetic: number of items.")] = 400,
    seed: Annotated[int, typer.Option(help="synthetic: generator seed.")] = 0,
    data_home: DataHome = None,
) -> None:
    """Read a source, filter, split (leave-last-out or temporal), draw the evaluation candidates, and store it."""
    from seqbench.data.pipeline import prepare_source
    from seqbench.data.preprocess import PrepareParams
    from seqbench.data.sources.options import SourceOptions
    from seqbench.data.store import data_home as resolve_home

    try:
        params = PrepareParams(k=k, kcore=kcore, sample_users=sample_users, sample_seed=sample_seed,
                               sample_stage=sample_stage, neg_seed=neg_seed, split=split, boundary=boundary,
                               valid_users=valid_users, split_seed=split_seed, ties=ties, tie_seed=tie_seed)
        opts = SourceOptions(strict=strict, meta=meta, user_col=user_col, item_col=item_col, time_col=time_col,
                             title_col=title_col, time_unit=time_unit, sep=sep, order=order, users=users,
                             items=items, seed=seed, item_key_col=item_key_col)
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


@data_app.command("rm")
def data_rm(name: Annotated[str, typer.Argument(help="Prepared dataset name.")], data_home: DataHome = None) -> None:
    """Delete a prepared dataset (its folder under the data home)."""
    from seqbench.data.store import data_home as resolve_home
    from seqbench.data.store import remove_dataset

    try:
        path = remove_dataset(name, resolve_home(data_home))
    except SeqbenchError as e:
        _fail(e)
    out.print(f"removed {path}", highlight=False)


@app.command("models")
def list_models(show: Annotated[str | None, typer.Option(help="Print every setting of this model: default, "
                                                         "allowed values, meaning.")] = None) -> None:
    """List registered models, one per line (or one model's settings with --show NAME)."""
    from seqbench.config import describe
    from seqbench.models import MODELS, get_spec

    if show is None:
        for spec in MODELS.values():
            out.print(f"{spec.name:<12} {spec.family:<9} {spec.summary}", highlight=False, soft_wrap=True)
        return
    try:
        spec = get_spec(show)
    except SeqbenchError as e:
        _fail(e)
    rows = describe(spec.load_class().config_cls)
    table = Table(title=f"{spec.name} ({spec.family}): {spec.summary}; change with --set key=value")
    for col in ("setting", "type", "default", "allowed", "search space", "meaning"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["type"], r["default"], r["allowed"], r["space"], r["help"])
    if rows:
        out.print(table)
    else:
        out.print(f"{spec.name} has no settings.", highlight=False)


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
    config: Annotated[Path | None, typer.Option(help="TOML/JSON/YAML file with a 'model' table, or 'tuned': the "
                                                "settings `seqbench tune` chose for this model and dataset.")]
    = None,
    output: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or hpu.")] = "auto",
    llm: Annotated[str | None, typer.Option(help="LLM-based models: smollm2-135m (default), tiny-random, a "
                                            "Hugging Face id or a local folder.")] = None,
    dtype: Annotated[str | None, typer.Option(help="LLM-based models: auto, bf16, fp32 or fp16; recformer: auto, "
                                              "bf16 or fp32 (auto = bf16 where the CPU has native bf16).")] = None,
    data_home: DataHome = None,
    retrain: Annotated[bool, typer.Option(help="Train even if the model store holds this trained model.")]
    = False,
    checkpoint_minutes: Annotated[float, typer.Option(help="Also checkpoint training at most this many "
                                                      "minutes apart, not only at validation checks.")]
    = 10.0,
    task: Annotated[str, typer.Option(help="retrieval (rank 1 + 99 candidates, NDCG@10) or generation (LLM4Rec "
                                      "models name a title among 1 + 19 listed candidates, HR@1; other models "
                                      "rank the same 20).")] = "retrieval",
    eval_: Annotated[str, typer.Option("--eval", help="Ranking protocol: sampled (target + its 99 persisted "
                                       "negatives, the paper's), full (all items, seen items kept) or full-unseen "
                                       "(all items but the user's seen ones); several comma-separated run every "
                                       "probe under each on the same trained model.")] = "sampled",
    recipe: Annotated[str | None, typer.Option(help="LLM models: a named training recipe (official, "
                                               "official-135m or cpu-proxy, docs/models.md); --set and --llm go "
                                               "on top.")] = None,
) -> None:
    """Train a model, apply probes, test the differences, log every (probe, protocol, seed) to MLflow."""
    from seqbench.config import parse_sets
    from seqbench.render import extra_lines, result_table, seed_table, seed_verdict, verdict
    from seqbench.runner import RunSpec, run

    try:
        overrides = parse_sets(set_)
        overrides.update({k: v for k, v in (("llm", llm), ("dtype", dtype)) if v is not None})
        spec = RunSpec(model=model, probes=[p.strip() for p in probe.split(",") if p.strip()], dataset=dataset,
                       seeds=_int_list(seeds) if seeds else [seed], overrides=overrides,
                       probe_options=parse_sets(probe_set), config_file=config, data_home=data_home,
                       tracking_uri=tracking_uri, device=device, output=output, retrain=retrain,
                       checkpoint_every_s=checkpoint_minutes * 60, task=task,
                       evals=[e.strip() for e in eval_.split(",") if e.strip()] or ["sampled"], recipe=recipe)
        result = run(spec, err)
    except SeqbenchError as e:
        _fail(e)
    for r in result["runs"]:
        out.print(result_table(r))
        for line in extra_lines(r):
            out.print(f"  {line}", highlight=False)
        out.print(verdict(r), highlight=False, soft_wrap=True)
        if r.get("reused"):
            out.print(f"  [dim]model reused from the store ({r['model_identity']}); fit figures are the original "
                      "ones (--retrain to train again)[/dim]", highlight=False)
    if result["holm"]:
        out.print(f"p-values are Holm-adjusted over the {len(spec.probes)} probes reported together.",
                  highlight=False)
    if result["seed_summary"]:
        out.print(seed_table(result["seed_summary"]))
        for key, s in result["seed_summary"].items():
            line = seed_verdict(key, s)
            if line:
                out.print(line, highlight=False, soft_wrap=True)
    if output:
        out.print(f"[dim]wrote {output}[/dim]")
    _print_tracking(result)


def _print_tracking(result: dict) -> None:
    """Where the runs went: ids to pass to `seqbench compare`, the experiment and the artifact folders."""
    t = result.get("tracking") or {}
    out.print(f"MLflow: experiment '{t.get('experiment')}' in {t.get('tracking_uri')}; artifacts under "
              f"{t.get('artifact_location')}", highlight=False, soft_wrap=True)
    for r in result["runs"]:
        protocol = f" ({r['eval']})" if r.get("eval", "sampled") != "sampled" else ""
        out.print(f"  run {r['mlflow_run_id']}  {r['model']}/{r['probe']}/seed{r['seed']}{protocol}", highlight=False,
                  soft_wrap=True)


@app.command("runs")
def runs_cmd(
    dataset: Annotated[str | None, typer.Option(help="Only runs on this dataset.")] = None,
    model: Annotated[str | None, typer.Option(help="Only runs of this model.")] = None,
    probe: Annotated[str | None, typer.Option(help="Only runs of this probe.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List runs in the tracking store, newest first: id, dataset, model, probe, seed, NDCG@10 of both
    conditions and p (Holm-adjusted where several probes ran together)."""
    from seqbench.runs import list_runs

    try:
        rows = list_runs(tracking_uri, dataset, model, probe)
    except SeqbenchError as e:
        _fail(e)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in rows]))
        return
    if not rows:
        out.print("no seqbench runs in this tracking store", highlight=False)
        return
    table = Table(title=f"{len(rows)} runs (any unique id prefix works in `seqbench compare`)")
    for col in ("run id", "dataset", "model", "probe", "eval", "seed", "NDCG@10 a", "NDCG@10 b", "p", "a / b"):
        right = col in ("seed", "NDCG@10 a", "NDCG@10 b", "p")
        table.add_column(col, justify="right" if right else "left", no_wrap=True)

    def num(v: float | None, f: str) -> str:
        return "-" if v is None else format(v, f)

    for r in rows:
        table.add_row(r.run_id, r.dataset, r.model, r.probe, r.protocol, r.seed, num(r.ndcg[0], ".4f"),
                      num(r.ndcg[1], ".4f"),
                      num(r.p_value, ".2g"), "/".join(r.conditions))
    (out if out.is_terminal else Console(width=200)).print(table)  # full ids in logs and pipes


@app.command("compare")
def compare_cmd(
    run_ids: Annotated[list[str], typer.Argument(help="MLflow run ids or unique prefixes (see `seqbench runs`): "
                                                 "the reference first, then the others.")],
    metric: Annotated[str, typer.Option(help="Per-user metric to compare.")] = "ndcg@10",
    condition: Annotated[str, typer.Option(help="Condition of each run (original, or a probe's other one).")]
    = "original",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    output: Annotated[Path | None, typer.Option(help="Write the comparison as JSON here.")] = None,
) -> None:
    """Compare models user by user across runs on the same dataset (paired Wilcoxon, Holm over runs)."""
    from seqbench.atomic import write_json_atomic
    from seqbench.compare import compare_runs
    from seqbench.render import comparison_table

    try:
        result = compare_runs(run_ids, metric, condition, tracking_uri)
    except SeqbenchError as e:
        _fail(e)
    out.print(comparison_table(result))
    if output:
        write_json_atomic(result, output)
        out.print(f"[dim]wrote {output}[/dim]")


@app.command("report")
def report_cmd(
    experiment: Annotated[str, typer.Option(help="MLflow experiment to read.")] = "seqbench",
    dataset: Annotated[list[str] | None, typer.Option(help="Only this dataset (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only this model (repeatable).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html or both.")] = "both",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.md / report.html (and figures/).")]
    = Path("report"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    split_hashes: Annotated[bool, typer.Option(help="Report runs of one dataset name with different dataset "
                                                    "hashes as separate datasets instead of refusing.")] = False,
    data_home: DataHome = None,
    eval_: Annotated[str | None, typer.Option("--eval", help="Ranking protocol the main sections read (sampled, "
                                              "full or full-unseen; default: sampled, or a study's first); the "
                                              "'Ranking protocols' section sets all of them side by side.")] = None,
    study: Annotated[str | None, typer.Option(help="A study (studies/NAME.yaml, or a path): its experiment, "
                                              "datasets, models and probes, and the views it lists.")] = None,
) -> None:
    """The paper's tables and figures from MLflow runs: Markdown and/or one self-contained HTML page."""
    from seqbench.data.store import data_home as resolve_home
    from seqbench.eval.evaluator import check_protocol
    from seqbench.report import write_report, write_study_report

    try:
        if eval_ is not None:
            check_protocol(eval_)
        if study is not None:
            if experiment != "seqbench" or dataset or model:
                raise OptionError("--study sets the experiment, datasets and models; drop --experiment, --dataset "
                                  "and --model")
            written = write_study_report(study, tracking_uri, out_dir, fmt, resolve_home(data_home), eval_)
        else:
            written = write_report(tracking_uri, out_dir, experiment, dataset, model, fmt, split_hashes,
                                   resolve_home(data_home), eval_ or "sampled")
    except SeqbenchError as e:
        _fail(e)
    for path in written:
        if path.suffix != ".png":
            out.print(f"wrote {path}")
    out.print(f"[dim]{sum(p.suffix == '.png' for p in written)} figures; browse the runs with seqbench ui"
              f"{' --tracking-uri ' + tracking_uri if tracking_uri else ''}[/dim]")


@app.command("sweep")
def sweep_cmd(
    grid: Annotated[Path, typer.Argument(help="Grid file (YAML/TOML/JSON): experiment, datasets, models, probes, "
                                         "seeds, optional set.<model> and probe_set.")],
    tracking_uri: Annotated[str | None, typer.Option(envvar="MLFLOW_TRACKING_URI",
                                                     help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    address: Annotated[str | None, typer.Option(envvar="RAY_ADDRESS", help="Ray cluster address (default: a "
                                                "local Ray started for this sweep).")] = None,
    max_parallel: Annotated[int | None, typer.Option(help="Most tasks running at once (default: all).")] = None,
    accelerator: Annotated[str, typer.Option(help="LLM models' Ray resource: cpu, gpu (num_gpus) or hpu "
                                             "(resources HPU).")] = "cpu",
    cpus_per_task: Annotated[float | None, typer.Option(help="Ray CPUs per task (also its torch threads); "
                                                       "default 1, with --offline every core.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the expanded grid and what is already done; run nothing.")]
    = False,
    offline: Annotated[Path | None, typer.Option(help="Run without Ray or MLflow (a machine that has neither, "
                                                 "docs/gpu.md): tasks one after another in this process, each "
                                                 "task's results into this folder; a rerun skips what it holds.")]
    = None,
    log_offline: Annotated[Path | None, typer.Option(help="Log the results an --offline run wrote to this folder "
                                                     "into the study's experiment; runs nothing.")] = None,
    checkpoint_minutes: Annotated[float, typer.Option(help="Also checkpoint training at most this many "
                                                      "minutes apart.")] = 10.0,
    data_home: DataHome = None,
    config: Annotated[str | None, typer.Option(help="'tuned': every (model, dataset) with the settings "
                                               "`seqbench tune` chose (as the grid key config: tuned); "
                                               "'default,tuned': both rows.")] = None,
) -> None:
    """Run a grid (datasets x models x probes x seeds) on Ray: trained models reused, a crashed sweep resumed,
    one MLflow parent run with a nested child run per grid point."""
    from seqbench.sweep import run_sweep

    if offline is not None or log_offline is not None:
        _sweep_offline(grid, offline, log_offline, dry_run=dry_run, tracking_uri=tracking_uri,
                       accelerator=accelerator, cpus=cpus_per_task, data_home=data_home,
                       checkpoint_minutes=checkpoint_minutes, config=config)
        return
    try:
        report = run_sweep(grid, tracking_uri=tracking_uri, address=address, max_parallel=max_parallel,
                           accelerator=accelerator, cpus_per_task=cpus_per_task or 1.0, home=data_home,
                           dry_run=dry_run, checkpoint_every_s=checkpoint_minutes * 60, console=err, config=config)
    except SeqbenchError as e:
        _fail(e)
    points = [(plan, p) for plan in report.plans for p in plan.points]
    if dry_run:
        out.print(f"{grid}: {len(points)} grid points in {len(report.plans)} tasks", highlight=False, soft_wrap=True)
        table = Table()
        for col in ("dataset", "model", "config", "settings", "seed", "probe", "eval", "trained model", "result"):
            table.add_column(col)
        for plan, p in points:
            trained = f"{'stored' if plan.stored else 'to train'} {plan.identity[:8]}"
            table.add_row(p.dataset, p.model, p.config, plan.settings_text, str(p.seed), p.probe, p.protocol, trained,
                          "done" if p.done else "to do")
        out.print(table)
        return
    skipped = len(points) - len(report.logged) - sum(len(plan.todo) for plan in report.plans)
    out.print(f"{len(report.logged)} grid points logged, {skipped} already done, {report.trained} models trained, "
              f"{len(report.failed)} tasks failed, {report.seconds:.1f} s"
              + (f"; parent run {report.parent_run_id}" if report.parent_run_id else ""), highlight=False)
    for line in report.failed:
        err.print(f"[red]failed[/red] {line}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


def _sweep_offline(grid: Path, offline: Path | None, log_offline: Path | None, *, dry_run: bool,
                   tracking_uri: str | None, accelerator: str, cpus: float | None, data_home: Path | None,
                   checkpoint_minutes: float, config: str | None) -> None:
    """`sweep --offline DIR` and `sweep --log-offline DIR` (seqbench/sweep_offline.py)."""
    from seqbench.sweep_offline import log_offline as log_results
    from seqbench.sweep_offline import run_offline

    if (offline is not None and log_offline is not None) or dry_run:
        err.print("[red]error[/red] give one of --offline and --log-offline, without --dry-run")
        raise typer.Exit(2)
    try:
        if offline is not None:
            done = run_offline(grid, offline, accelerator=accelerator, cpus=cpus, home=data_home,
                               checkpoint_every_s=checkpoint_minutes * 60, console=err, config=config)
            out.print(f"{len(done.ran)} tasks run, {done.already} already in {offline}, {done.seconds:.1f} s; log "
                      f"them where MLflow is: seqbench sweep {grid} --log-offline {offline}", highlight=False,
                      soft_wrap=True)
            return
        report, missing = log_results(grid, log_offline, tracking_uri=tracking_uri, home=data_home, console=err,
                                      config=config)
    except SeqbenchError as e:
        _fail(e)
    out.print(f"{len(report.logged)} grid points logged from {log_offline}, {report.trained} trained models"
              + (f"; parent run {report.parent_run_id}" if report.parent_run_id else ""), highlight=False)
    for label in missing:
        err.print(f"[yellow]not in {log_offline}[/yellow] {label}", highlight=False, soft_wrap=True)


def _trials_table(title: str, report) -> Table:
    table = Table(title=title + (" (resumed)" if report.resumed else ""))
    for col in ("trial", "status", "checks", "best valid", "settings"):
        table.add_column(col, overflow="fold")
    for t in sorted(report.trials, key=lambda t: -(t["best"] if t["best"] is not None else -1)):
        table.add_row(t["trial_id"], t["status"], str(t["checks"]), "-" if t["best"] is None else f"{t['best']:.4f}",
                      ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["config"].items()))
    return table


@app.command("tune")
def tune_cmd(
    model: Annotated[str | None, typer.Option(help="Model name (see `seqbench models`); with --study, only this "
                                              "model of the study.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Prepared dataset (default: synthetic, made on first use); "
                                                "with --study, only this dataset of the study.")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials (sampled configs) in all (default: the study's "
                                               "tune.trials, else 20).")] = None,
    budget_minutes: Annotated[float | None, typer.Option(help="Stop starting and running trials after this many "
                                                         "minutes (the best so far wins).")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed of every trial, and the searcher's seed "
                                             "(default 0).")] = None,
    space: Annotated[list[str] | None, typer.Option("--space", help="Search space of a setting, key=SPEC with SPEC "
                                                    "loguniform(lo,hi), uniform(lo,hi), int(lo,hi) or choice(a,b,...)"
                                                    " (repeatable; overrides the declared one).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Fixed model setting key=value (repeatable); "
                                                   "kept in the tuned layer.")] = None,
    study: Annotated[str | None, typer.Option(help="A study file (or studies/NAME.yaml): every (model, dataset) "
                                              "of it in turn with its tune table's budget and its space.<model> "
                                              "and set.<model> tables (--model / --dataset pick one pair).")]
    = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="Ray CPUs per trial (also its torch threads; "
                                                         "default 1).")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="Ray GPUs per trial (default 0).")] = None,
    hpus_per_trial: Annotated[int | None, typer.Option(help="Intel Gaudi cards per trial (Ray's HPU resource, "
                                                       "whole cards; default 0).")] = None,
    defaults_first: Annotated[bool | None, typer.Option("--defaults-first/--no-defaults-first",
                                                        help="Evaluate the model's own settings as the first "
                                                        "trial (default: yes), so the winner is never one its "
                                                        "defaults beat on validation.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Most trials running at once (default: as many as "
                                                       "the CPUs allow; 1 makes a tune repeat exactly).")] = None,
    scheduler: Annotated[str, typer.Option(help="asha: stop weak trials early; fifo: run every trial to its end "
                                           "(the baseline ASHA's savings are measured against).")] = "asha",
    address: Annotated[str | None, typer.Option(envvar="RAY_ADDRESS", help="Ray cluster address (default: a "
                                                "local Ray started for this tune).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(envvar="MLFLOW_TRACKING_URI",
                                                     help="MLflow tracking URI (default: sqlite mlflow.db).")]
    = None,
    data_home: DataHome = None,
) -> None:
    """Tune a model's settings on validation data (Ray Tune: Optuna proposes, ASHA stops weak trials early); the
    winner becomes the 'tuned' config layer that `run`/`sweep --config tuned` use. With --study, every (model,
    dataset) of the study with the same budget. Rerun after a kill to resume."""
    from seqbench.config import parse_sets, parse_spaces
    from seqbench.tune import TuneSpec, run_tune
    from seqbench.tune_study import tune_study

    budget = {k: v for k, v in (("trials", trials), ("budget_minutes", budget_minutes), ("seed", seed),
                                ("cpus_per_trial", cpus_per_trial), ("gpus_per_trial", gpus_per_trial),
                                ("hpus_per_trial", hpus_per_trial), ("defaults_first", defaults_first),
                                ("max_concurrent", max_concurrent)) if v is not None}
    common = {"scheduler": scheduler, "address": address, "tracking_uri": tracking_uri, "data_home": data_home}
    try:
        if study is None:
            if model is None:
                raise OptionError("give --model (one model) or --study (every model and dataset of a study)")
            spec = TuneSpec(model=model, dataset=dataset, spaces=parse_spaces(space), overrides=parse_sets(set_),
                            **budget, **common)
            outcomes = [(model, spec.dataset, run_tune(spec, err))]
        else:
            outcomes = [(o.model, o.dataset, o.report) for o in
                        tune_study(study, model=model, dataset=dataset, budget=budget, spaces=parse_spaces(space),
                                   overrides=parse_sets(set_), console=err, **common) if o.report is not None]
    except SeqbenchError as e:
        _fail(e)
    for name, ds, report in outcomes:
        out.print(_trials_table(f"{name}{f' on {ds}' if ds else ''}: {len(report.trials)} trials", report))
        out.print(f"best valid {report.best_score:.4f}: {report.best_layer}; written to "
                  f"{report.folder / 'config.json'} (search record: search.json); model {report.best_identity} "
                  f"{_winner_model(report)}"
                  f"; use it with `seqbench run --model {name} --config tuned`; MLflow parent run "
                  f"{report.parent_run_id}", highlight=False, soft_wrap=True)


def _winner_model(report) -> str:
    """Where the tuned winner's trained model is, for the tune's last line."""
    if report.completed:
        return (f"in the store (its trial {report.completed['trial_status']}, trained to its end after the "
                f"search: final valid {report.completed['final_valid']:.4f})")
    return "in the store" if report.best_stored else "not stored (the first run trains it)"


@app.command("ui")
def ui(
    tracking_uri: Annotated[str, typer.Option(help="MLflow backend store.")] = "sqlite:///mlflow.db",
    port: Annotated[int, typer.Option(help="Port on localhost.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the MLflow UI on the tracking store; Ctrl-C (or SIGTERM) stops the server and all its workers."""
    from seqbench.ui import serve

    raise typer.Exit(serve(tracking_uri, host, port, lambda line: out.print(line, highlight=False, soft_wrap=True)))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
