"""`seqbench report`: collect the runs, assemble tables and figures, write report.md and/or report.html."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from seqbench.atomic import write_atomic
from seqbench.errors import SeqbenchError, UnknownNameError
from seqbench.eval.evaluator import TASKS

from . import calibration, figures, generation, pattern, protocols, tables, tuning
from .aggregate import base_probe
from .collect import PROXY_NOTE, RunRecord, RunSource
from .document import Document, Figure, Section, Table
from .render import to_html, to_markdown

FORMATS = ("md", "html", "both")


@dataclass
class ViewInput:
    """What a view reads: the runs of the chosen protocol, every retrieval run, the generation runs."""

    source: RunSource
    records: list[RunRecord]
    every: list[RunRecord]
    generation: list[RunRecord]
    notes: list[str]
    data_home: Path | None
    proxies_in_verdict: bool = False  # a study's choice: proxy rows count in the paper-pattern verdict
    versus: str | None = None  # a study's reference model of the overall view (default: the best CF model)


def _order(v: ViewInput) -> Section:
    return Section("Order sensitivity (shuffle-infer, shuffle-train, cosine)",
                   tables=tables.order_tables(v.records) + tables.horizon_tables(v.records),
                   figures=figures.order_figures(v.records, v.source) + figures.cosine_figures(v.records)
                   + figures.horizon_figures(v.records))


def _power(v: ViewInput) -> Section:
    parts = calibration.power(v.records, v.source)
    return Section("Power (order strength x test users)", tables=[p for p in parts if isinstance(p, Table)],
                   figures=[p for p in parts if isinstance(p, Figure)])


# A study file picks its views by these names (``views:``); a report without a study shows DEFAULT_VIEWS.
VIEWS: dict[str, Callable[[ViewInput], Section]] = {
    "datasets": lambda v: Section("Datasets", tables=[tables.dataset_card(v.records, v.source, v.data_home)]),
    "overall": lambda v: Section("Overall performance", tables=tables.overall_tables(v.records, v.source, v.versus)),
    "order": _order,
    "groups": lambda v: Section("Group probes (transition, warm-cold, cross-domain)",
                                tables=tables.group_tables(v.records), figures=figures.group_figures(v.records)),
    "variants": lambda v: Section("Variants (ablations)", tables=tables.ablation_tables(v.records, v.source)),
    "protocols": lambda v: Section("Ranking protocols", tables=protocols.effect_tables(v.every)
                                   + protocols.agreement_tables(v.every)),
    "generation": lambda v: Section("Title generation (HR@1)",
                                    tables=generation.generation_tables(v.generation, v.source)),
    "paper-pattern": lambda v: Section("Paper pattern (shuffle-infer at the study's window, against pop)",
                                       tables=pattern.pattern_tables(v.records, v.source, v.proxies_in_verdict)),
    "tuning": lambda v: Section("Default vs tuned settings (shuffle-infer, the same tuning budget per model)",
                                tables=tuning.tuning_tables(v.records, v.source)),
    "false-positives": lambda v: Section("False positives (data without order)",
                                         tables=calibration.false_positive_tables(v.records)),
    "power": _power,
    "training": lambda v: Section("Training curves (LLM models)",
                                  figures=figures.training_figures(v.records, v.source)),
    "runs": lambda v: Section("Runs covered", text=[f"- {n}" for n in v.notes],
                              tables=[tables.runs_table(v.every + v.generation)]),
}
DEFAULT_VIEWS = ("datasets", "overall", "order", "groups", "variants", "protocols", "generation", "training", "runs")


def check_views(views: list[str]) -> None:
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise UnknownNameError("report view", unknown[0], list(VIEWS))


def build_document(source: RunSource, records: list[RunRecord], notes: list[str],
                   data_home: Path | None = None, protocol: str = "sampled",
                   views: tuple[str, ...] | list[str] = DEFAULT_VIEWS, title: str = "seqbench report",
                   proxies_in_verdict: bool = False, versus: str | None = None) -> Document:
    """The views read the retrieval runs of one ranking ``protocol``; "protocols" reads every retrieval run,
    "generation" the generation runs."""
    check_views(list(views))
    gen = [r for r in records if r.task == "generation"]
    every = [r for r in records if r.task != "generation"]
    records = [r for r in every if r.protocol == protocol]
    others = sorted({r.protocol for r in every} - {protocol})
    versions = sorted({r.code_version for r in every})
    hashes = sorted({(r.dataset, r.dataset_hash) for r in records})
    preamble = [
        f"Tracking store: `{source.tracking_uri}`, experiment `{source.experiment}`; {len(records)} runs. "
        f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
        f"Code versions: {', '.join(f'`{v}`' for v in versions)}.",
        "Dataset hashes: " + ", ".join(f"{d} `{h[:12]}`" for d, h in hashes[:12])
        + (f" and {len(hashes) - 12} more" if len(hashes) > 12 else "") + ".",
        f"Every row names its MLflow runs (id prefixes; full ids in the last section, Runs covered). Browse them with "
        f"`seqbench ui --tracking-uri {source.tracking_uri}`.",
        f"Ranking protocol of the sections before \"Ranking protocols\": `{protocol}`"
        + (f" (runs under {', '.join(f'`{p}`' for p in others)} appear in \"Ranking protocols\"; "
           f"`seqbench report --eval PROTOCOL` reads another)." if others else "."),
        *([PROXY_NOTE] if any(r.proxy for r in records) else []),
    ]
    given = ViewInput(source, records, every, gen, notes, data_home, proxies_in_verdict, versus)
    sections = [VIEWS[name](given) for name in views]
    for s in sections:
        if not s.tables and not s.figures and not s.text:
            s.text.append("No runs of this kind in the store.")
    return Document(title, preamble, sections)


def write_study_report(study: str | Path, tracking_uri: str | None, out: Path, fmt: str = "both",
                       data_home: Path | None = None, protocol: str | None = None) -> list[Path]:
    """The views a study file asks for, from the runs of its experiment that the study plans: its datasets,
    models, probes, seeds and config layers, and the settings its ``set`` tables give (a run of the same model
    with other settings, left in the experiment by an earlier version of the study, is not one of its rows)."""
    from seqbench.sweep import find_study, load_grid

    path = find_study(study)
    grid = load_grid(path)
    views = grid.views or list(DEFAULT_VIEWS)
    check_views(views)
    return write_report(tracking_uri, out, grid.experiment, grid.datasets, grid.models, fmt, data_home=data_home,
                        protocol=protocol or grid.evals[0], views=views, title=f"seqbench study: {path.stem}",
                        proxies_in_verdict=grid.proxies_in_verdict, keep=study_rows(grid), versus=grid.versus)


def study_rows(grid) -> Callable[[RunRecord], bool]:
    """Whether a run is one of the grid's rows: its probe, seed and config layer are the grid's, and its logged
    settings equal one of the grid's config rows of that (model, dataset) on every setting the rows give, the
    grid's recipe included (a `recipe: cpu-proxy` study does not take in another recipe's run of its model)."""
    from seqbench.planner import model_config_layers, model_layers, resolved_config
    from seqbench.sweep import set_rows

    wanted: dict[tuple[str, str], list[dict[str, str]]] = {}

    def rows(model: str, dataset: str) -> list[dict[str, str]]:
        if (model, dataset) not in wanted:  # settings as MLflow logs them: the resolved value's str
            out = []
            for tables in set_rows(grid.sets, model, dataset):  # the planner's layers, less the dataset's defaults
                layers = model_layers(model, tables, None, recipe=grid.recipe)
                given = {k for t in layers for k in t}
                resolved = resolved_config(model, layers)
                out.append({k: str(resolved[k]) for k in given})
            wanted[(model, dataset)] = out
        return wanted[(model, dataset)]

    def keep(r: RunRecord) -> bool:
        if base_probe(r.probe) not in grid.probes or r.seed not in grid.seeds or \
                r.config_layer not in model_config_layers(r.model, grid.config):
            return False
        return any(all(r.config.get(k) == v for k, v in row.items()) for row in rows(r.model, r.dataset))

    return keep


def write_report(tracking_uri: str | None, out: Path, experiment: str = "seqbench", datasets: list[str] | None = None,
                 models: list[str] | None = None, fmt: str = "both", split_hashes: bool = False,
                 data_home: Path | None = None, protocol: str = "sampled",
                 views: tuple[str, ...] | list[str] = DEFAULT_VIEWS, title: str = "seqbench report",
                 proxies_in_verdict: bool = False, keep: Callable[[RunRecord], bool] | None = None,
                 versus: str | None = None) -> list[Path]:
    """Write the report files into ``out``; returns their paths. Markdown gets its PNGs in ``out/figures``.
    ``keep``: which runs count (a study's rows, :func:`study_rows`); ``versus``: the overall view's reference model."""
    if fmt not in FORMATS:
        raise SeqbenchError(f"unknown format '{fmt}'; valid formats: {', '.join(FORMATS)}")
    with RunSource(tracking_uri, experiment) as source:
        records, notes = source.collect(datasets, models, split_hashes, tasks=TASKS, keep=keep)
        if not records:
            wanted = "; ".join(f"{k} {', '.join(v)}" for k, v in (("dataset", datasets), ("model", models)) if v)
            raise SeqbenchError(f"no finished seqbench runs in experiment '{experiment}' at {tracking_uri}"
                                + (f" for {wanted}" if wanted else ""))
        if protocol not in {r.protocol for r in records}:
            raise SeqbenchError(f"no runs ranked under --eval {protocol} in experiment '{experiment}'; it has: "
                                f"{', '.join(sorted({r.protocol for r in records}))}")
        doc = build_document(source, records, notes, data_home, protocol, views, title, proxies_in_verdict, versus)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt in ("md", "both"):
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        for s in doc.sections:
            for f in s.figures:
                write_atomic(fig_dir / f"{f.name}.png", lambda p, data=f.png: p.write_bytes(data))
                written.append(fig_dir / f"{f.name}.png")
        write_atomic(out / "report.md", lambda p: p.write_text(to_markdown(doc), encoding="utf-8"))
        written.append(out / "report.md")
    if fmt in ("html", "both"):
        write_atomic(out / "report.html", lambda p: p.write_text(to_html(doc), encoding="utf-8"))
        written.append(out / "report.html")
    return written
