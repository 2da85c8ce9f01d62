"""`seqbench tune --study NAME`: every (model, dataset) of a study tuned with the same budget, one pair after another.

The budget (trials, seed, concurrency, resources) is declared once, in the study's ``tune`` table; options given on
the command line override it for every pair. Each pair is one :func:`seqbench.tune.run_tune` with the study's
``space.<model>`` and ``set.<model>`` tables, so a pair already tuned with the same search restores its finished Tune
experiment (no trial runs again) instead of tuning anew. Models without a search space (pop) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from seqbench.errors import SeqbenchError
from seqbench.planner import tunable
from seqbench.space import Space
from seqbench.sweep import TUNE_KEYS, find_study, load_grid, one_row
from seqbench.tune import TuneReport, TuneSpec, run_tune


@dataclass
class PairOutcome:
    """One (model, dataset) of the study: its tune, or why it was skipped."""

    model: str
    dataset: str
    report: TuneReport | None
    skipped: str | None = None


def study_specs(study: str | Path, *, model: str | None = None, dataset: str | None = None,
                budget: dict[str, Any] | None = None, spaces: dict[str, Space] | None = None,
                overrides: dict[str, Any] | None = None, **common: Any) -> tuple[list[TuneSpec], list[PairOutcome]]:
    """The TuneSpecs of the study's pairs (restricted to ``model`` / ``dataset`` when given), with the study's
    ``tune`` table under ``budget`` (the command line's values); and the pairs skipped, with the reason.
    ``spaces`` / ``overrides`` (``--space`` / ``--set``, with ``model`` only) go over the study's tables of that
    model. ``common``: TuneSpec fields every pair shares (address, tracking_uri, data_home)."""
    path = find_study(study)
    grid = load_grid(path)
    for name, given, known in (("model", model, grid.models), ("dataset", dataset, grid.datasets)):
        if given is not None and given not in known:
            raise SeqbenchError(f"{path}: --{name} {given} is not one of the study's {name}s ({', '.join(known)})")
    if (spaces or overrides) and model is None:
        raise SeqbenchError("--space and --set with --study apply to one model: add --model, or put them in the "
                            "study's space.<model> / set.<model> tables")
    unknown = sorted(set(budget or {}) - set(TUNE_KEYS))
    if unknown:
        raise SeqbenchError(f"unknown tune budget key '{unknown[0]}'; valid: {', '.join(TUNE_KEYS)}")
    settings = {**grid.tune, **{k: v for k, v in (budget or {}).items() if v is not None}}
    specs, skipped = [], []
    for ds in grid.datasets if dataset is None else [dataset]:
        for m in grid.models if model is None else [model]:
            if not tunable(m) and not grid.spaces.get(m):
                skipped.append(PairOutcome(m, ds, None, f"{m} declares no search space (nothing to tune)"))
                continue
            specs.append(TuneSpec(model=m, dataset=ds, spaces={**grid.spaces.get(m, {}), **(spaces or {})},
                                  overrides={**one_row(grid, m, ds, path), **(overrides or {})}, **settings, **common))
    return specs, skipped


def tune_study(study: str | Path, *, console: Console | None = None, **options: Any) -> list[PairOutcome]:
    """Tune every pair of the study in turn (``options``: as :func:`study_specs`); progress names the pair."""
    console = console or Console(stderr=True)
    specs, skipped = study_specs(study, **options)
    for s in skipped:
        console.print(f"[dim]skipping {s.model} on {s.dataset}: {s.skipped}[/dim]", highlight=False, soft_wrap=True)
    outcomes = list(skipped)
    for i, spec in enumerate(specs, 1):
        console.print(f"[bold]tune {i}/{len(specs)}: {spec.model} on {spec.dataset}[/bold] ({spec.trials} trials, "
                      f"seed {spec.seed})", highlight=False, soft_wrap=True)
        report = run_tune(spec, console)
        if report.resumed:
            console.print(f"[dim]{spec.model} on {spec.dataset}: the same search ran before; its ended trials were "
                          f"restored, not rerun ({report.seconds:.1f} s)[/dim]", highlight=False, soft_wrap=True)
        outcomes.append(PairOutcome(spec.model, spec.dataset, report))
    return outcomes
