"""`seqbench report`: collect the runs, assemble tables and figures, write report.md and/or report.html."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from seqbench.atomic import write_atomic
from seqbench.errors import SeqbenchError

from . import figures, protocols, tables
from .collect import PROXY_NOTE, RunRecord, RunSource
from .document import Document, Section
from .render import to_html, to_markdown

FORMATS = ("md", "html", "both")


def build_document(source: RunSource, records: list[RunRecord], notes: list[str],
                   data_home: Path | None = None, protocol: str = "sampled") -> Document:
    """The sections read the runs of one ranking ``protocol``; "Ranking protocols" reads them all."""
    every = records
    records = [r for r in every if r.protocol == protocol]
    others = sorted({r.protocol for r in every} - {protocol})
    versions = sorted({r.code_version for r in every})
    hashes = sorted({(r.dataset, r.dataset_hash) for r in records})
    preamble = [
        f"Tracking store: `{source.tracking_uri}`, experiment `{source.experiment}`; {len(records)} runs. "
        f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
        f"Code versions: {', '.join(f'`{v}`' for v in versions)}.",
        "Dataset hashes: " + ", ".join(f"{d} `{h[:12]}`" for d, h in hashes) + ".",
        f"Every row names its MLflow runs (id prefixes; full ids in the last section, Runs covered). Browse them with "
        f"`seqbench ui --tracking-uri {source.tracking_uri}`.",
        f"Ranking protocol of the sections before \"Ranking protocols\": `{protocol}`"
        + (f" (runs under {', '.join(f'`{p}`' for p in others)} appear in \"Ranking protocols\"; "
           f"`seqbench report --eval PROTOCOL` reads another)." if others else "."),
        *([PROXY_NOTE] if any(r.proxy for r in records) else []),
    ]
    sections = [
        Section("Datasets", tables=[tables.dataset_card(records, source, data_home)]),
        Section("Overall performance", tables=tables.overall_tables(records, source)),
        Section("Order sensitivity (shuffle-infer, shuffle-train, cosine)", tables=tables.order_tables(records),
                figures=figures.order_figures(records, source) + figures.cosine_figures(records)
                + figures.horizon_figures(records)),
        Section("Group probes (transition, warm-cold, cross-domain)", tables=tables.group_tables(records),
                figures=figures.group_figures(records)),
        Section("Variants (ablations)", tables=tables.ablation_tables(records, source)),
        Section("Ranking protocols", tables=protocols.effect_tables(every) + protocols.agreement_tables(every)),
        Section("Training curves (LLM models)", figures=figures.training_figures(records, source)),
        Section("Runs covered", text=[f"- {n}" for n in notes], tables=[tables.runs_table(every)]),
    ]
    for s in sections:
        if not s.tables and not s.figures and not s.text:
            s.text.append("No runs of this kind in the store.")
    return Document("seqbench report", preamble, sections)


def write_report(tracking_uri: str | None, out: Path, experiment: str = "seqbench", datasets: list[str] | None = None,
                 models: list[str] | None = None, fmt: str = "both", split_hashes: bool = False,
                 data_home: Path | None = None, protocol: str = "sampled") -> list[Path]:
    """Write the report files into ``out``; returns their paths. Markdown gets its PNGs in ``out/figures``."""
    if fmt not in FORMATS:
        raise SeqbenchError(f"unknown format '{fmt}'; valid formats: {', '.join(FORMATS)}")
    with RunSource(tracking_uri, experiment) as source:
        records, notes = source.collect(datasets, models, split_hashes)
        if not records:
            wanted = "; ".join(f"{k} {', '.join(v)}" for k, v in (("dataset", datasets), ("model", models)) if v)
            raise SeqbenchError(f"no finished seqbench runs in experiment '{experiment}' at {tracking_uri}"
                                + (f" for {wanted}" if wanted else ""))
        if protocol not in {r.protocol for r in records}:
            raise SeqbenchError(f"no runs ranked under --eval {protocol} in experiment '{experiment}'; it has: "
                                f"{', '.join(sorted({r.protocol for r in records}))}")
        doc = build_document(source, records, notes, data_home, protocol)
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
